"""`idtune studio`: the whole path in a browser, each step a thin shell over the CLI's own code.

`runs.py` reads runs from disk, `jobs.py` runs `idtune VERB …` as processes that outlive the
studio, `steps.py` is what each button does, `talk.py` the side-by-side chat, `app.py` the page.
"""

from __future__ import annotations

import sys
from pathlib import Path


def build_app(runs: Path):
    """The studio as an ASGI app (FastAPI with the Gradio page at `/`)."""
    import gradio as gr
    from fastapi import FastAPI

    from .app import build

    Path(runs).mkdir(parents=True, exist_ok=True)
    return gr.mount_gradio_app(FastAPI(), build(runs), path="/", footer_links=["gradio"])


def serve(host: str = "127.0.0.1", port: int = 7860, runs: Path = Path("runs")) -> None:
    """Serve the studio for the runs under `runs` until interrupted (jobs keep running)."""
    import uvicorn

    from ..ports import bind

    sock = bind(host, port)
    app = build_app(runs)
    shown = "localhost" if host in ("0.0.0.0", "::", "") else host
    print(
        f"idtune studio: http://{shown}:{port}/ · runs in {Path(runs).resolve()}",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn.Config(app, host=host, port=port, log_level="warning")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
