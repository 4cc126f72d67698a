"""`idtune serve`: load the model (or start a scale backend), build the app, run uvicorn.

One FastAPI app on one port: the OpenAI-compatible API under `/v1`, `/health`, and the Gradio
web chat at `/`, all on the same engine.
"""

from __future__ import annotations

import hmac
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..ports import free_port
from .engine import ChatEngine, Engine

BACKENDS = ("transformers", "vllm", "lmdeploy")


def model_id_for(spec: str | Path, info: Any = None) -> str:
    """The id clients send as `model`: the assistant's name as a slug, else the model's name."""
    if info is not None and getattr(info, "identity", None) is not None:
        slug = re.sub(r"[^\w.-]+", "-", info.identity.name.strip()).strip("-").lower()
        if slug:
            return slug
    return Path(str(spec).rstrip("/")).name or str(spec)


def load_engine(
    model: str,
    *,
    adapter: Path | None = None,
    system: str | None = None,
    template: str | None = None,
    trust_remote_code: bool = False,
    **engine_kw: Any,
) -> Engine:
    """Load MODEL_OR_RUN (base + adapter, unmerged) into a batching engine."""
    from .. import models

    loaded = models.load(model, adapter, template=template, trust_remote_code=trust_remote_code)
    info = loaded.info
    if system is None and info is not None:
        system = info.system_prompt
    model_id = model_id_for(model, info)
    title, description = model_id_for(model), None
    if info is not None and info.identity:
        title = info.identity.name
        description = f"Made by {info.identity.author} · model `{model_id}` · API at `/v1`"
    return Engine(
        loaded.model,
        loaded.tokenizer,
        model_id=model_id,
        title=title,
        description=description,
        aliases={str(model), title},
        system=system,
        template=loaded.template,
        **engine_kw,
    )


def remote_engine(
    backend: str,
    model: str,
    *,
    adapter: Path | None = None,
    system: str | None = None,
    template: str | None = None,
    trust_remote_code: bool = False,
):
    """Start vLLM / LMDeploy for base model + adapter; return an engine that proxies to it."""
    from .. import models
    from ..data import templates
    from . import backends

    backends.require(backend)  # one clear line before anything is loaded
    src = models.locate(model, adapter, template=template, trust_remote_code=trust_remote_code)
    info, tmpl, trc = src.info, src.template, src.trust_remote_code
    model_id = model_id_for(model, info)
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix=f"idtune-{backend}-"))
    if backend == "vllm":
        chat_template = None
        if tmpl:
            chat_template = str(work / "chat_template.jinja")
            Path(chat_template).write_text(templates.get(tmpl))
        argv = backends.vllm_argv(
            src.base,
            name=model_id,
            port=port,
            adapter=src.adapter,
            chat_template=chat_template,
            trust_remote_code=trc,
        )
    else:
        argv = backends.lmdeploy_argv(
            src.base, name=model_id, port=port, adapter=src.adapter, template=tmpl
        )
    proc = backends.start(backend, argv, port, work / "backend.log")
    title = info.identity.name if info is not None and info.identity else model_id
    if system is None and info is not None:
        system = info.system_prompt
    return backends.RemoteEngine(
        f"http://127.0.0.1:{port}",
        model_id,
        model_id=model_id,
        title=title,
        system=system,
        proc=proc,
    )


def build_app(
    engine: ChatEngine,
    *,
    api_key: str | None = None,
    ui: bool = True,
    host: str = "127.0.0.1",
    port: int = 7860,
):
    """The API app with the web chat mounted at `/` (login with the API key when one is set)."""
    from .api import build_api

    app = build_api(engine, api_key=api_key)
    if ui:
        import gradio as gr

        from .ui import build_ui

        def auth(_user: str, password: str) -> bool:
            return hmac.compare_digest(password, api_key or "")

        gr.mount_gradio_app(
            app,
            build_ui(engine),
            path="/",
            server_name=host,
            server_port=port,
            auth=auth if api_key else None,
            auth_message="Password: the server's API key" if api_key else None,
            footer_links=["api"],
        )
    return app


def serve(
    model: str,
    *,
    adapter: Path | None = None,
    host: str = "127.0.0.1",
    port: int = 7860,
    api_key: str | None = None,
    backend: str = "transformers",
    system: str | None = None,
    template: str | None = None,
    trust_remote_code: bool = False,
) -> None:
    """Serve MODEL_OR_RUN until interrupted: web chat at `/`, OpenAI API at `/v1`."""
    import uvicorn

    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}: {', '.join(BACKENDS)}")
    api_key = api_key or os.environ.get("IDTUNE_API_KEY") or None
    opts = dict(
        adapter=adapter, system=system, template=template, trust_remote_code=trust_remote_code
    )
    if backend == "transformers":
        engine: Any = load_engine(model, **opts)
    else:
        engine = remote_engine(backend, model, **opts)
    app = build_app(engine, api_key=api_key, host=host, port=port)
    shown = "localhost" if host in ("0.0.0.0", "::") else host
    print(
        f"idtune: serving {engine.model_id!r} — web chat http://{shown}:{port}/ · "
        f"API http://{shown}:{port}/v1" + (" (bearer key required)" if api_key else ""),
        file=sys.stderr,
    )
    try:
        uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5)
    finally:
        _shutdown(engine)


def _shutdown(engine: Any) -> None:
    if hasattr(engine, "close"):
        engine.close()
    proc = getattr(engine, "proc", None)
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except Exception:
            proc.kill()


class Background:
    """Run an app with uvicorn in a daemon thread (tests, benchmarks): `.url`, `.stop()`."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int | None = None):
        import uvicorn

        self.port = port or free_port(host)
        self.url = f"http://{host}:{self.port}"
        config = uvicorn.Config(app, host=host, port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"uvicorn did not start on {self.url}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for it."""
        self.server.should_exit = True
        self.thread.join(timeout=10)
