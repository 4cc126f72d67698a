"""The studio's door: every request passes a Host check, an Origin check and a login before it
reaches the page or Gradio's API.

Gradio's own `auth=` guards its page and most of its API, but leaves routes open
(`/gradio_api/cancel`, `/gradio_api/stream/…`, `/gradio_api/reset`, `/gradio_api/run-history/…`),
so the login sits in front of the whole app instead: without the session cookie a browser is
sent to `/login` and anything else gets a 401. The Host check (Starlette's TrustedHostMiddleware)
stops DNS rebinding: a page on `evil.example` that resolves to 127.0.0.1 still sends
`Host: evil.example`. A request whose `Origin` is another site is refused before anything runs,
so no other origin is ever echoed in `access-control-allow-origin`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import os
import secrets
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ..errors import UserError
from ..ports import LOOPBACK, WILDCARD, allowed_hosts  # noqa: F401 (the studio's names)

PASSWORD_ENV = "IDTUNE_STUDIO_PASSWORD"
MIN_PASSWORD = 8  # characters a chosen password needs
LOGIN_PATH = "/login"
FAILED_LOGIN_PAUSE_S = 1.0  # a wrong password waits this long (guessing gets slow)
MAX_FORM = 4096  # bytes of a login form


def read_password(password_file: Path | None) -> tuple[str, str | None]:
    """(password, where it came from): `--password-file` (its first line), else
    IDTUNE_STUDIO_PASSWORD, else a new random one (where: None, the caller shows it once)."""
    if password_file is not None:
        try:
            lines = Path(password_file).read_text("utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            why = getattr(e, "strerror", None) or type(e).__name__
            raise UserError(f"--password-file {password_file}: cannot read it ({why})") from None
        password, where = (lines[0].strip() if lines else ""), f"--password-file {password_file}"
    elif os.environ.get(PASSWORD_ENV):
        password, where = os.environ[PASSWORD_ENV].strip(), PASSWORD_ENV
    else:
        return secrets.token_urlsafe(24), None
    if len(password) < MIN_PASSWORD:
        raise UserError(f"{where}: a password needs at least {MIN_PASSWORD} characters")
    return password, where


def protect(app, password: str, hosts: list[str], extra_origins: list[str] = ()) -> None:
    """Put the door in front of `app` (a FastAPI app, before it serves): Host check first, then
    Origin, then the login."""
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    app.add_middleware(Login, password=password)
    app.add_middleware(SameOrigin, extra=[h.lower() for h in extra_origins])
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts, www_redirect=False)


def _host_of(netloc: str) -> tuple[str, str | None] | None:
    from starlette._utils import parse_host_header

    parsed = parse_host_header(netloc)
    return (parsed.host.lower(), parsed.port) if parsed else None


class SameOrigin:
    """Refuse (403) a request whose Origin header is not the studio's own address (the Host it
    was sent to) nor one of the `--allow-host` names; a request without Origin passes (a
    browser sends one with every cross-origin request and every POST)."""

    def __init__(self, app, extra: list[str] = ()):
        self.app, self.extra = app, list(extra)

    async def __call__(self, scope, receive, send):
        from starlette.datastructures import Headers
        from starlette.responses import PlainTextResponse

        if scope["type"] in ("http", "websocket"):
            headers = Headers(scope=scope)
            origin = headers.get("origin")
            if origin is not None and not self.allowed(origin, headers.get("host", "")):
                response = PlainTextResponse("cross-origin request refused", status_code=403)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def allowed(self, origin: str, host: str) -> bool:
        """Whether `origin` is this studio's own, or a name given with --allow-host."""
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https"):
            return False  # "null" (a sandboxed frame, a file:// page), anything odd
        got, own = _host_of(parts.netloc), _host_of(host)
        if got is None:
            return False
        return got == own or got[0] in self.extra


class Login:
    """Nothing passes without the session cookie that a right password at `/login` sets.

    Sessions live in this process (a restart logs everyone out); the cookie is HttpOnly and
    SameSite=Strict, named after the port so studios on one host keep apart."""

    def __init__(self, app, password: str):
        self.app = app
        self.password = password.encode()
        self.sessions: set[str] = set()  # sha256 of each session token

    @staticmethod
    def cookie_name(scope) -> str:
        server = scope.get("server") or ("", "")
        return f"idtune-studio-{server[1]}"

    def logged_in(self, scope) -> bool:
        from starlette.requests import HTTPConnection

        token = HTTPConnection(scope).cookies.get(self.cookie_name(scope), "")
        return bool(token) and hashlib.sha256(token.encode()).hexdigest() in self.sessions

    async def __call__(self, scope, receive, send):
        from starlette.responses import JSONResponse, RedirectResponse

        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)  # lifespan
            return
        if scope["type"] == "http" and scope["path"] == LOGIN_PATH:
            await self.login(scope, receive, send)
            return
        if self.logged_in(scope):
            await self.app(scope, receive, send)
            return
        accept = dict(scope.get("headers") or []).get(b"accept", b"")
        page = scope["type"] == "http" and scope["method"] in ("GET", "HEAD")
        if page and b"text/html" in accept:
            response = RedirectResponse(LOGIN_PATH, status_code=303)
        else:
            response = JSONResponse({"detail": "log in first (POST /login)"}, status_code=401)
        await response(scope, receive, send)

    async def login(self, scope, receive, send):
        from starlette.requests import Request
        from starlette.responses import HTMLResponse, RedirectResponse

        request = Request(scope, receive)
        if request.method != "POST":
            await HTMLResponse(_page(""))(scope, receive, send)
            return
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM:
                await HTMLResponse(_page("that form is too long"), 413)(scope, receive, send)
                return
        given = (parse_qs(body.decode("utf-8", "replace")).get("password") or [""])[0]
        if not hmac.compare_digest(given.encode(), self.password):
            await asyncio.sleep(FAILED_LOGIN_PAUSE_S)
            await HTMLResponse(_page("wrong password"), 401)(scope, receive, send)
            return
        token = secrets.token_urlsafe(32)
        self.sessions.add(hashlib.sha256(token.encode()).hexdigest())
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            self.cookie_name(scope), token, httponly=True, samesite="strict", path="/"
        )
        await response(scope, receive, send)


def _page(problem: str) -> str:
    """The login form (no script, nothing loaded from elsewhere)."""
    note = f'<p id="login-error" role="alert">⚠️ {html.escape(problem)}</p>' if problem else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>idtune studio · log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem}}
input{{font-size:1rem;padding:.4rem;width:100%;box-sizing:border-box}}
button{{margin-top:.8rem;font-size:1rem;padding:.4rem 1.2rem}}</style></head>
<body><h1>idtune studio</h1>{note}
<form method="post" action="{LOGIN_PATH}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" autofocus>
<button id="login" type="submit">Log in</button></form>
<p>The password is the one in <code>{PASSWORD_ENV}</code> or in the file given with
<code>--password-file</code>; with neither, the studio printed one in its terminal when it
started.</p></body></html>
"""
