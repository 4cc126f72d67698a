"""A real smart-HTTP git hub on 127.0.0.1 for push tests: `git http-backend` behind Basic auth,
recording every credential it is sent; it can also redirect every request to another server."""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _Handler(BaseHTTPRequestHandler):
    hub: LocalHub

    def do_GET(self):  # noqa: N802
        hub = self.hub
        auth = self.headers.get("Authorization")
        user_pass = base64.b64decode(auth.split()[1]).decode() if auth else ""
        hub.requests.append(self.path)
        if auth:
            hub.seen.append(user_pass)
        if hub.redirect_to and not hub.auth_first:
            return self._redirect()
        if user_pass.partition(":")[2] != hub.token:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="hub"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if hub.redirect_to:
            return self._redirect()
        path, _, query = self.path.partition("?")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        env = {
            **os.environ,
            "GIT_PROJECT_ROOT": str(hub.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": user_pass.partition(":")[0],
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True)
        head, _, payload = out.stdout.partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n") if line)
        self.send_response(int(headers.pop("Status", "200").split()[0]))
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_POST = do_GET

    def _redirect(self) -> None:
        self.send_response(302)
        self.send_header("Location", self.hub.redirect_to + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class LocalHub:
    """Serves the bare repositories under `root` while used as a context manager.

    `seen` collects every "user:password" sent, `requests` every path asked for. With
    `redirect_to` (a base URL) every request is redirected there: after asking for the token
    first when `auth_first`, else straight away.
    """

    def __init__(
        self, root: Path, token: str, *, redirect_to: str | None = None, auth_first: bool = True
    ):
        self.root, self.token = Path(root), token
        self.redirect_to, self.auth_first = redirect_to, auth_first
        self.seen: list[str] = []
        self.requests: list[str] = []
        handler = type("Handler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, host: str = "127.0.0.1") -> str:
        """The server's base URL, under a host name that reaches it."""
        return f"http://{host}:{self.port}"

    def __enter__(self) -> LocalHub:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
