"""`idtune studio`: the whole path in a browser, each step a thin shell over the CLI's own code.

`runs.py` reads runs from disk, `jobs.py` runs `idtune VERB …` as processes that outlive the
studio, `steps.py` is what each button does, `talk.py` the side-by-side chat, `app.py` the page,
`guard.py` the door (login, Host and Origin checks), `confine.py` keeps every path inside RUNS.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def build_app(
    runs: Path,
    *,
    password: str,
    host: str = "127.0.0.1",
    allow_hosts: list[str] | tuple[str, ...] = (),
):
    """The studio as an ASGI app (FastAPI with the Gradio page at `/`), behind its login and
    its Host / Origin checks. Gradio keeps what the browser uploads in RUNS/.studio/uploads
    (GRADIO_TEMP_DIR, which it reads for this whole process)."""
    import gradio as gr
    from fastapi import FastAPI

    from . import confine, guard
    from .app import build

    hosts = guard.allowed_hosts(host, allow_hosts)
    Path(runs).mkdir(parents=True, exist_ok=True)
    uploads = confine.uploads_dir(runs)
    uploads.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(uploads)
    app = gr.mount_gradio_app(FastAPI(), build(runs), path="/", footer_links=["gradio"])
    extra = guard.allowed_hosts("", allow_hosts)[len(guard.LOOPBACK) :]
    guard.protect(app, password, hosts, extra)
    return app


def serve(
    host: str = "127.0.0.1",
    port: int = 7860,
    runs: Path = Path("runs"),
    password_file: Path | None = None,
    allow_hosts: list[str] | tuple[str, ...] = (),
) -> None:
    """Serve the studio for the runs under `runs` until interrupted (jobs keep running)."""
    import uvicorn

    from ..ports import bind
    from . import guard

    password, where = guard.read_password(password_file)
    guard.allowed_hosts(host, allow_hosts)  # a bad --allow-host: one line before the port
    sock = bind(host, port)
    app = build_app(runs, password=password, host=host, allow_hosts=allow_hosts)
    shown = "localhost" if host in guard.WILDCARD else host
    print(
        f"idtune studio: http://{shown}:{port}/ · runs in {Path(runs).resolve()}",
        file=sys.stderr,
        flush=True,
    )
    if where is None:  # printed this once, to this terminal only (as Jupyter shows its token)
        print(
            f"  password: {password}  (made for this start; set {guard.PASSWORD_ENV} or pass "
            "--password-file to choose one)",
            file=sys.stderr,
            flush=True,
        )
    else:
        print(f"  log in with the password from {where}", file=sys.stderr, flush=True)
    if host in guard.WILDCARD and not allow_hosts:
        print(
            "  listening on every address, answering only loopback names: "
            "--allow-host NAME for the name other machines use",
            file=sys.stderr,
            flush=True,
        )
    config = uvicorn.Config(app, host=host, port=port, log_level="warning")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
