"""`idtune serve`: load the model (or start a scale backend), build the app, run uvicorn.

One FastAPI app on one port: the OpenAI-compatible API under `/v1`, `/health`, and the Gradio
web chat at `/`, all on the same engine.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..ports import WILDCARD, allowed_hosts, bind, free_port
from .engine import ChatEngine, Engine

BACKENDS = ("transformers", "llamacpp", "vllm", "lmdeploy")


def model_id_for(spec: str | Path, info: Any = None) -> str:
    """The id clients send as `model`: the assistant's name as a slug, else the model's name."""
    if info is not None and getattr(info, "identity", None) is not None:
        slug = re.sub(r"[^\w.-]+", "-", info.identity.name.strip()).strip("-").lower()
        if slug:
            return slug
    return Path(str(spec).rstrip("/")).name or str(spec)


def parse_adapters(specs: list[str] | None) -> tuple[Path | None, dict[str, Path]]:
    """`--adapter DIR` (the default model's adapter) and `--adapter NAME=DIR` (named ones)."""
    default, named = None, {}
    for spec in specs or []:
        name, eq, path = spec.partition("=")
        if not eq:
            if default is not None:
                raise UserError(f"--adapter {spec}: only one adapter without NAME=; name the rest")
            default = Path(spec)
            continue
        if not re.fullmatch(r"[\w.:-]+", name):
            raise UserError(f"--adapter {spec}: NAME may hold letters, digits and . _ : -")
        if name in named:
            raise UserError(f"--adapter {spec}: the name {name!r} is given twice")
        directory = Path(path)
        if not (directory / "adapter_config.json").is_file():
            raise UserError(f"--adapter {spec}: {directory} has no adapter_config.json")
        named[name] = directory
    return default, named


def load_engine(
    model: str,
    *,
    adapter: Path | None = None,
    adapters: dict[str, Path] | None = None,
    served_model_name: str | None = None,
    system: str | None = None,
    template: str | None = None,
    trust_remote_code: bool = False,
    backend: str = "transformers",
    **engine_kw: Any,
) -> Any:
    """Load MODEL_OR_RUN (base + adapter, unmerged) and any named adapters into one engine.

    One base model stays in memory; each named adapter is a PEFT adapter on it, picked per
    request by `model` (several adapters share one batch). Another `backend` (llamacpp, vllm,
    lmdeploy) is started as a server of its own on loopback, and the engine proxies to it.
    """
    from .. import models, runinfo

    if backend != "transformers":
        return _remote_engine(
            backend, model, adapter, adapters, served_model_name, system, template,
            trust_remote_code,
        )  # fmt: skip
    loaded = models.load(model, adapter, template=template, trust_remote_code=trust_remote_code)
    info = loaded.info
    if system is None and info is not None:
        system = info.system_prompt
    model_id = served_model_name or model_id_for(model, info)
    title, description = model_id_for(model), None
    if info is not None and info.identity:
        title = info.identity.name
        description = f"Made by {info.identity.author} · model `{model_id}` · API at `/v1`"
    net = loaded.model
    default = "default" if loaded.source.adapter else None
    names: dict[str, str] = {}
    systems: dict[str, str | None] = {}
    for k, (name, directory) in enumerate((adapters or {}).items()):
        peft_name = f"adapter{k}"
        if hasattr(net, "get_base_model"):  # already a PeftModel (transformers' own
            net.load_adapter(str(directory), adapter_name=peft_name)  # load_adapter differs)
        else:
            from peft import PeftModel

            net = PeftModel.from_pretrained(net, str(directory), adapter_name=peft_name)
            net.eval()
        net.set_adapter(default or "adapter0")
        names[name] = peft_name
        own = runinfo.read_info(directory)
        systems[peft_name] = own.system_prompt if own is not None else None
    return Engine(
        net,
        loaded.tokenizer,
        model_id=model_id,
        title=title,
        description=description,
        aliases={str(model), title},
        system=system,
        systems=systems,
        template=loaded.template,
        adapters=names,
        default_adapter=default,
        **engine_kw,
    )


def _remote_engine(
    backend: str,
    model: str,
    adapter: Path | None,
    adapters: dict[str, Path] | None,
    served_model_name: str | None,
    system: str | None,
    template: str | None,
    trust_remote_code: bool,
):
    """Start llama.cpp, vLLM or LMDeploy for MODEL (+ adapters); an engine that proxies to it."""
    from .. import models
    from ..data import templates
    from . import backends

    if backend == "llamacpp":
        if adapter or adapters:
            raise UserError("--backend llamacpp serves one GGUF: merge or export it, no --adapter")
        if template:
            raise UserError("--prompt-template: not with --backend llamacpp (the GGUF's own "
                            "template is used; a run's template goes into its export)")  # fmt: skip
    backends.require(backend)  # one clear line before anything is loaded
    if backend == "llamacpp":
        return llamacpp_engine(
            model, served_model_name=served_model_name, system=system,
            trust_remote_code=trust_remote_code,
        )  # fmt: skip
    src = models.locate(model, adapter, template=template, trust_remote_code=trust_remote_code)
    info, tmpl, trc = src.info, src.template, src.trust_remote_code
    model_id = served_model_name or model_id_for(model, info)
    named = {name: str(path) for name, path in (adapters or {}).items()}

    port = free_port()
    with scratch_dir(f"idtune-{backend}-") as work:  # removed if the server never starts
        chat_template = None
        if backend == "vllm" and tmpl:  # vLLM takes the template as a file
            chat_template = str(work / "chat_template.jinja")
            Path(chat_template).write_text(templates.get(tmpl))
        argv = backends.server_argv(
            backend, src.base, name=model_id, port=port, adapter=src.adapter, adapters=named,
            template=tmpl, chat_template=chat_template, trust_remote_code=trc,
        )  # fmt: skip
        proc = backends.start(backend, argv, port, work / "backend.log")
    if system is None and info is not None:
        # the backend renders the base template: name the identity as the run's template does
        # (untested: vLLM / LMDeploy need a GPU)
        system = info.system_prompt or models.own_system_prompt(info)
    return _proxy(port, model_id, info, system, proc, work, list(named))


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory for a backend server, removed when what uses it fails."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield work
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _proxy(port: int, model_id: str, info, system, proc, work: Path, adapters=()):
    """The engine in front of a backend server started on loopback `port`."""
    from . import backends

    title = info.identity.name if info is not None and info.identity else model_id
    return backends.RemoteEngine(
        f"http://127.0.0.1:{port}", model_id, model_id=model_id, title=title, system=system,
        adapters=list(adapters), proc=proc, workdir=work,
    )  # fmt: skip


def llamacpp_engine(
    model: str,
    *,
    served_model_name: str | None = None,
    system: str | None = None,
    trust_remote_code: bool = False,
):
    """llama-server on MODEL if it is a .gguf, else on a q8_0 GGUF exported from it first."""
    import subprocess

    from .. import runinfo
    from . import backends

    info = runinfo.read_info(Path(model)) if Path(model).is_dir() else None
    with scratch_dir("idtune-llamacpp-") as work:  # removed if the server never starts
        gguf = Path(model)
        if gguf.suffix != ".gguf":  # `idtune export gguf` (a verb of its own) in a subprocess
            cmd = [sys.executable, "-m", "idtune.cli", "export", "gguf", model, str(work / "gguf")]
            cmd += ["--trust-remote-code"] if trust_remote_code else []
            if subprocess.run(cmd).returncode != 0:
                raise UserError(f"{model}: `idtune export gguf` failed (its message is above)")
            gguf = work / "gguf" / "model-q8_0.gguf"
        elif not gguf.is_file():
            raise UserError(f"{model}: no such GGUF file")
        model_id = served_model_name or model_id_for(model, info)
        port = free_port()
        argv = backends.llamacpp_argv(gguf, name=model_id, port=port)
        proc = backends.start("llamacpp", argv, port, work / "backend.log")
        if system is None and info is not None:
            system = info.system_prompt
        return _proxy(port, model_id, info, system, proc, work)


LOGIN_USER = "idtune"  # the web chat's login: this user name and the API key


def build_app(
    engine: ChatEngine,
    *,
    api_key: str | None = None,
    ui: bool = True,
    host: str = "127.0.0.1",
    port: int = 7860,
    allow_hosts: list[str] | tuple[str, ...] = (),
):
    """The API app with the web chat mounted at `/` (login with the API key when one is set).

    Requests whose Host header is not a loopback name, `host` or one of `allow_hosts` get a 400
    (DNS rebinding: a page on evil.example resolved to 127.0.0.1 still sends that Host); bound
    to a wildcard address with no `allow_hosts`, every Host is answered (the names other
    machines use are unknown: a hosted app's, a container's)."""
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    from .api import build_api

    app = build_api(engine, api_key=api_key)
    if host not in WILDCARD or allow_hosts:
        hosts = allowed_hosts(host, allow_hosts)
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts, www_redirect=False)
    if ui:
        import gradio as gr

        from .ui import build_ui

        def auth(user: str, password: str) -> bool:
            key = (api_key or "").encode()
            same_user = hmac.compare_digest(user.encode(), LOGIN_USER.encode())
            return same_user & hmac.compare_digest(password.encode(), key)

        gr.mount_gradio_app(
            app,
            build_ui(engine, url=f"http://{shown_host(host)}:{port}", keyed=bool(api_key)),
            path="/",
            server_name=host,
            server_port=port,
            auth=auth if api_key else None,
            auth_message=f"User name: {LOGIN_USER} · password: the server's API key"
            if api_key
            else None,
            footer_links=["gradio", "settings"],
        )
    return app


def shown_host(host: str) -> str:
    """The address to print for a bind address (a wildcard is reachable as localhost)."""
    return "localhost" if host in ("0.0.0.0", "::", "") else host


def read_api_key(key_file: Path | None) -> str | None:
    """The bearer key: `--api-key-file` (first line), else `IDTUNE_API_KEY`, else none."""
    if key_file is not None:
        try:
            key = key_file.read_text().strip().splitlines()[0].strip()
        except (OSError, UnicodeDecodeError, IndexError) as e:
            reason = "empty" if isinstance(e, IndexError) else type(e).__name__
            raise UserError(f"--api-key-file {key_file}: cannot read a key ({reason})") from None
        if not key:
            raise UserError(f"--api-key-file {key_file}: the first line is empty")
        return key
    return os.environ.get("IDTUNE_API_KEY") or None


def serve(
    model: str,
    *,
    adapter: Path | None = None,
    adapters: list[str] | None = None,
    served_model_name: str | None = None,
    host: str = "127.0.0.1",
    port: int = 7860,
    api_key: str | None = None,
    api_key_file: Path | None = None,
    backend: str = "transformers",
    system: str | None = None,
    template: str | None = None,
    trust_remote_code: bool = False,
    max_batch: int = 64,
    max_tokens_in_flight: int = 65536,
    allow_hosts: list[str] | tuple[str, ...] = (),
) -> None:
    """Serve MODEL_OR_RUN until interrupted: web chat at `/`, OpenAI API at `/v1`.

    `adapter` is MODEL's own adapter, `adapters` the CLI's `--adapter` values; `api_key` (from
    Python, e.g. a deployed app's environment) wins over `api_key_file` and IDTUNE_API_KEY.
    """
    import uvicorn

    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}: {', '.join(BACKENDS)}")
    api_key = api_key or read_api_key(api_key_file)
    allowed_hosts(host, allow_hosts)  # a bad --allow-host: one line before the port and the load
    default, named = parse_adapters([*([str(adapter)] if adapter else []), *(adapters or [])])
    sock = bind(host, port)  # before minutes of loading, not after
    opts = dict(
        adapter=default,
        adapters=named,
        served_model_name=served_model_name,
        system=system,
        template=template,
        trust_remote_code=trust_remote_code,
    )
    if backend == "transformers":
        opts.update(max_batch=max_batch, max_tokens_in_flight=max_tokens_in_flight)
    try:
        engine = load_engine(model, backend=backend, **opts)
    except BaseException:
        sock.close()
        raise
    app = build_app(engine, api_key=api_key, host=host, port=port, allow_hosts=allow_hosts)
    shown = shown_host(host)
    names = ", ".join(repr(n) for n in getattr(engine, "served_models", lambda: [])()) or repr(
        engine.model_id
    )
    print(
        f"idtune: serving {names} — web chat http://{shown}:{port}/ · "
        f"API http://{shown}:{port}/v1" + (" (bearer key required)" if api_key else ""),
        file=sys.stderr,
    )
    config = uvicorn.Config(
        app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        shutdown(engine)
        sock.close()


def shutdown(engine: Any) -> None:
    """Close an engine: idtune's own, or a backend server (terminated, its work dir removed)."""
    if hasattr(engine, "close"):
        engine.close()
    proc = getattr(engine, "proc", None)
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except Exception:
            proc.kill()
    workdir = getattr(engine, "workdir", None)
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)


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
