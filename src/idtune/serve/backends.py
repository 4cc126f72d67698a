"""Other engines behind idtune's web chat and API: start vLLM's, LMDeploy's or llama.cpp's
OpenAI server, wait for it, and let idtune talk to it (`RemoteEngine`).

llama.cpp (`llama-server` on a GGUF, CPU) runs in the tests. vLLM and LMDeploy are untested here
(no GPU on CI): their command lines are checked in tests, the proxy is run against idtune's own
server and llama-server, and those backends themselves run only on a GPU machine.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..errors import UserError
from .engine import Delta, Done, Failed, Messages, Params, RequestError, Stream

VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
# idtune's named templates → LMDeploy's built-in chat template names.
LMDEPLOY_TEMPLATES = {"internlm2_chat": "internlm2", "qwen2": "qwen", "llama3": "llama3"}
PACKAGES = {"vllm": "vllm", "lmdeploy": "lmdeploy"}


def adapter_rank(adapter: str | Path) -> int:
    """The largest LoRA rank in an adapter's `adapter_config.json` (`r` and `rank_pattern`)."""
    cfg = json.loads((Path(adapter) / "adapter_config.json").read_text())
    ranks = [int(cfg.get("r") or 8), *(int(v) for v in (cfg.get("rank_pattern") or {}).values())]
    return max(ranks)


def vllm_max_lora_rank(rank: int) -> int:
    """The smallest `--max-lora-rank` vLLM accepts that holds `rank`."""
    for allowed in VLLM_LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise UserError(f"LoRA rank {rank} is above vLLM's largest --max-lora-rank (512); merge first")


def server_argv(
    backend: str,
    base: str,
    *,
    name: str,
    port: int,
    adapter: str | None = None,
    adapters: dict[str, str] | None = None,
    host: str = "127.0.0.1",
    template: str | None = None,
    chat_template: str | None = None,
    rank: int | None = None,
    trust_remote_code: bool = False,
) -> list[str]:
    """vLLM's or LMDeploy's OpenAI server for the base model: the default adapter as LoRA module
    NAME (else the model as NAME), each named adapter as a module of its own, as `--adapter
    NAME=DIR` asked. vLLM takes the chat template as a file (`chat_template`), LMDeploy by its
    own name for idtune's named `template`."""
    modules = ({name: adapter} if adapter else {}) | dict(adapters or {})
    pairs = [f"{n}={d}" for n, d in modules.items()]
    if backend == "lmdeploy":
        argv = ["lmdeploy", "serve", "api_server", base, "--backend", "pytorch"]
        argv += ["--server-name", host, "--server-port", str(port)]
        argv += [] if adapter else ["--model-name", name]
        argv += ["--adapters", *pairs] if modules else []
        if template in LMDEPLOY_TEMPLATES:
            argv += ["--chat-template", LMDEPLOY_TEMPLATES[template]]
        return argv
    argv = ["vllm", "serve", base, "--host", host, "--port", str(port)]
    argv += [] if adapter else ["--served-model-name", name]
    if modules:
        r = rank if rank is not None else max(adapter_rank(d) for d in modules.values())
        argv += ["--enable-lora", "--lora-modules", *pairs]
        argv += ["--max-lora-rank", str(vllm_max_lora_rank(r))]
        if len(modules) > 1:
            argv += ["--max-loras", str(len(modules))]
    if chat_template:
        argv += ["--chat-template", chat_template]
    if trust_remote_code:
        argv.append("--trust-remote-code")
    return argv


def llamacpp_argv(
    gguf: str | Path, *, name: str, port: int, host: str = "127.0.0.1", amx: bool | None = None
) -> list[str]:
    """`llama-server` on one GGUF file, served as NAME, with the GGUF's own Jinja chat template.

    On a CPU with AMX (`amx` None: this machine's), weights are not repacked: llama.cpp's AMX
    matmul segfaults at load on some of them (ggml-org/llama.cpp#20824, seen here on a Xeon).
    """
    argv = ["llama-server", "-m", str(gguf), "--host", host, "--port", str(port)]
    argv += ["--alias", name, "--jinja"]
    if cpu_has_amx() if amx is None else amx:
        argv.append("--no-repack")
    return argv


def cpu_has_amx() -> bool:
    """Whether this CPU reports AMX (Linux's /proc/cpuinfo flags; False elsewhere)."""
    try:
        return " amx_int8" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def require(backend: str) -> list[str]:
    """The backend's command prefix, or a one-line UserError when it is not installed."""
    if backend == "llamacpp":
        from .. import llamacpp

        return [str(llamacpp.tool("llama-server"))]
    if backend not in PACKAGES:
        raise UserError(f"unknown backend {backend!r}: transformers, llamacpp, vllm or lmdeploy")
    exe = Path(sys.executable).parent / backend
    if exe.is_file():
        return [str(exe)]
    if shutil.which(backend):
        return [backend]
    if importlib.util.find_spec(PACKAGES[backend]) is None:
        raise UserError(
            f"--backend {backend}: {backend} is not installed (`pip install {backend}`, on a GPU "
            "machine); or use --backend transformers"
        )
    raise UserError(f"--backend {backend}: the `{backend}` command is not on PATH")


def wait_ready(url: str, proc: subprocess.Popen | None, timeout: float, log: Path | None = None):
    """Poll `url` (the backend's /v1/models) until it answers 200; fail if the process dies."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace").splitlines()[-5:] if log and log.exists() else []
            raise UserError(f"the backend exited with code {proc.returncode}: " + " | ".join(tail))
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise UserError(f"the backend did not answer {url} within {timeout:.0f} s")


def start(
    backend: str,
    argv: Sequence[str],
    port: int,
    log: Path,
    timeout: float = 900,
) -> subprocess.Popen:
    """Launch the backend's server (output to `log`) and wait until it lists its models."""
    cmd = require(backend) + list(argv[1:])
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"starting {backend}: {' '.join(cmd)} (log: {log})", file=sys.stderr)
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_ready(f"http://127.0.0.1:{port}/v1/models", proc, timeout, log)
    except BaseException:
        proc.terminate()
        raise
    return proc


# Request fields RemoteEngine does not pass through to the backend (refused by name).
REMOTE_REFUSED = {
    "tools": "tool calls are not passed through to the scale backend by idtune's proxy",
    "logprobs": "log-probabilities are not passed through to the scale backend by idtune's proxy",
    "top_logprobs": "log-probabilities are not passed through to the scale backend",
}
FORWARDED = ("max_tokens", "temperature", "top_p", "seed", "response_format")


@dataclass(eq=False)
class RemoteEngine:
    """An engine that forwards each request to an OpenAI-compatible server, streaming."""

    base_url: str
    served_name: str  # the backend's name for the default model
    model_id: str
    title: str | None = None  # None: model_id
    system: str | None = None
    adapters: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    workdir: Path | None = None  # the backend's log (and an exported GGUF): removed on shutdown
    refused_fields: ClassVar[dict[str, str]] = REMOTE_REFUSED

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self.title = self.title or self.model_id
        self.adapters = list(self.adapters)

    def served_models(self) -> list[str]:
        """The default model's name, then each named adapter's."""
        return [self.model_id, *(a for a in self.adapters if a != self.model_id)]

    def adapter_for(self, model: str) -> str | None:
        """The backend's name for a request's `model` (None: not served)."""
        if model == self.model_id:
            return self.served_name
        return model if model in self.adapters else None

    def health(self) -> dict[str, Any]:
        """ok while the backend process is alive."""
        alive = self.proc is None or self.proc.poll() is None
        return {
            "status": "ok" if alive else "stopped",
            "model": self.model_id,
            "backend": self.base_url,
        }

    def submit(self, messages: Messages, params: Params, tools: list | None = None) -> Stream:
        """Start streaming a chat completion from the backend in the caller's event loop."""
        from ..generate import with_system

        return self._start(
            "chat/completions", {"messages": with_system(messages, self.system)}, params
        )

    def submit_text(self, prompt: str, params: Params) -> Stream:
        """Start streaming a plain completion from the backend."""
        return self._start("completions", {"prompt": prompt}, params)

    def _start(self, route: str, body: dict[str, Any], params: Params) -> Stream:
        import asyncio

        if self.proc is not None and self.proc.poll() is not None:
            raise RequestError("the backend has stopped", 503, "engine_unavailable")
        body |= {
            "model": params.adapter or self.served_name,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        for key in FORWARDED:
            if getattr(params, key) is not None:
                body[key] = getattr(params, key)
        for key in ("presence_penalty", "frequency_penalty", "min_tokens"):
            if getattr(params, key):
                body[key] = getattr(params, key)
        if params.stop:
            body["stop"] = params.stop
        if params.logit_bias:
            body["logit_bias"] = {str(k): v for k, v in params.logit_bias.items()}
        stream = Stream()
        task = asyncio.get_running_loop().create_task(self._pump(route, body, stream))
        stream.on_cancel = task.cancel  # closing the connection aborts the backend's request
        return stream

    async def _pump(self, route: str, body: dict[str, Any], stream: Stream) -> None:
        import httpx

        reason, usage = "stop", {}
        try:
            async with httpx.AsyncClient(timeout=httpx.Timeout(600, connect=10)) as client:
                url = f"{self.base_url}/v1/{route}"
                async with client.stream("POST", url, json=body) as resp:
                    if resp.status_code != 200:
                        text = (await resp.aread()).decode(errors="replace")
                        status = resp.status_code if 400 <= resp.status_code < 500 else 502
                        stream.put(
                            Failed(f"backend answered {resp.status_code}: {text[:300]}", status)
                        )
                        return
                    async for line in resp.aiter_lines():
                        if not line.startswith("data:") or line.strip() == "data: [DONE]":
                            continue
                        chunk = json.loads(line[5:])
                        usage = chunk.get("usage") or usage
                        for choice in chunk.get("choices") or []:
                            text = (choice.get("delta") or {}).get("content") or choice.get("text")
                            if text:
                                stream.put(Delta(text))
                            reason = choice.get("finish_reason") or reason
        except httpx.HTTPError as e:
            stream.put(Failed(f"backend unreachable: {e}", 503))
            return
        prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
        stream.put(Done(reason, prompt, completion))
