"""`idtune train` on several processes, GPUs or machines: accelerate's launcher does it.

`plan()` turns the flags into one `accelerate launch` command with a launch config shipped in
`launch/` (`ddp.yaml`, `deepspeed.yaml` with `deepspeed_zero2.json` / `deepspeed_zero3.json` or
the user's own DeepSpeed JSON; `--fsdp` starts the processes as `ddp.yaml` does and tells them,
through `parallel.FSDP_ENV`, to shard with idtune's own FSDP2), after refusing, with one line and
before any process starts, what cannot work. `run()` starts it with the workers' stderr sent
to a log file; a failing worker records its error (`recording_errors`), and the user sees the
first error of the first failing rank as one line instead of a torchrun traceback.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError
from .recipes import TrainConfig

CONFIGS = Path(__file__).parent / "launch"
DEEPSPEED_NAMES = {
    "zero2": "deepspeed_zero2",
    "zero3": "deepspeed_zero3",
    "deepspeed_zero2": "deepspeed_zero2",
    "deepspeed_zero3": "deepspeed_zero3",
}
ERRORS_ENV = "IDTUNE_LAUNCH_ERRORS"  # where workers record their error (set by `run`)


@dataclass
class Launch:
    """How a distributed run is started: what it will be, and the launcher's arguments."""

    engine: str  # ddp | deepspeed_zero{1,2,3} | fsdp2
    world_size: int
    args: list[str] = field(default_factory=list)  # `accelerate launch` options
    env: dict[str, str] = field(default_factory=dict)  # for the workers' environment


@dataclass
class Options:
    """The launch flags of `idtune train`."""

    deepspeed: str | None = None  # zero2 | zero3 | deepspeed_zero2 | deepspeed_zero3 | FILE.json
    fsdp: bool = False
    gpus: int | None = None  # processes on this machine (default: its GPUs, or 1)
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str | None = None
    master_port: int | None = None  # None: a free port (one machine) or 29500

    def wanted(self) -> bool:
        """True when these flags ask for a launch rather than training in this process."""
        return bool(self.deepspeed or self.fsdp or (self.gpus or 1) > 1 or self.nnodes > 1)


def plan(cfg: TrainConfig, opts: Options, port: int) -> Launch:
    """Check the flags against the machine and the recipe; the launch they describe."""
    import torch

    deepspeed, fsdp, gpus, nnodes = opts.deepspeed, opts.fsdp, opts.gpus, opts.nnodes
    node_rank, master_addr = opts.node_rank, opts.master_addr
    cuda = torch.cuda.is_available()
    if deepspeed and fsdp:
        raise UserError("--deepspeed and --fsdp: choose one")
    if gpus is not None and gpus < 1:
        raise UserError(f"--gpus {gpus}: must be at least 1")
    if nnodes < 1 or not 0 <= node_rank < nnodes:
        raise UserError(f"--node-rank {node_rank}: must be between 0 and --nnodes - 1")
    if nnodes > 1 and not master_addr:
        raise UserError(f"--nnodes {nnodes} needs --master-addr (the address of node 0)")
    if not 0 < port < 65536:
        raise UserError(f"--master-port {port}: not a port number")
    per_node = gpus or (torch.cuda.device_count() if cuda else 1)
    if cuda and per_node > torch.cuda.device_count():
        raise UserError(f"--gpus {per_node}: this machine has {torch.cuda.device_count()} GPUs")
    world = per_node * nnodes
    if cfg.method == "qlora" and not cuda:
        raise UserError("method qlora needs a CUDA GPU (bitsandbytes 4-bit); use lora on CPU")
    launch = Launch("ddp", world)
    if fsdp:
        if cfg.method == "qlora":
            raise UserError(_QUANT_STORAGE.format(engine="--fsdp"))
        from .parallel import FSDP_ENV

        ddp = ["--config_file", str(CONFIGS / "ddp.yaml")]
        launch = Launch("fsdp2", world, ddp, {FSDP_ENV: "1"})
    elif deepspeed:
        launch = _deepspeed(cfg, deepspeed, world, cuda)
    else:
        launch.args = ["--config_file", str(CONFIGS / "ddp.yaml")]
    precision = "bf16" if launch.engine.startswith("deepspeed") and _bf16_weights(cfg) else "no"
    launch.args += [
        "--num_processes", str(world), "--num_machines", str(nnodes),
        "--machine_rank", str(node_rank), "--main_process_ip", master_addr or "127.0.0.1",
        "--main_process_port", str(port), "--mixed_precision", precision,
        "--dynamo_backend", "no",
    ]  # fmt: skip
    return launch


_QUANT_STORAGE = (
    "method qlora with {engine} is not supported: sharding 4-bit weights needs a "
    "bnb_4bit_quant_storage matching the compute dtype, which idtune does not set; "
    "use --deepspeed zero2 (the tutorial's choice) or method lora"
)


def _deepspeed(cfg: TrainConfig, name: str, world: int, cuda: bool) -> Launch:
    """The DeepSpeed launch: a shipped config by name, or the user's own JSON, checked."""
    if importlib.util.find_spec("deepspeed") is None:
        raise UserError("--deepspeed needs the deepspeed package: pip install deepspeed")
    if name in DEEPSPEED_NAMES:
        path = CONFIGS / f"{DEEPSPEED_NAMES[name]}.json"
    elif name.endswith(".json"):
        path = Path(name)
        if not path.is_file():
            raise UserError(f"--deepspeed {name}: no such file")
    else:
        raise UserError(
            f"--deepspeed {name!r}: choose zero2, zero3, deepspeed_zero2, deepspeed_zero3 "
            "or a DeepSpeed .json file"
        )
    try:
        conf = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    if not isinstance(conf, dict):
        raise UserError(f"{path}: a DeepSpeed config must be a JSON object")
    zero = conf.get("zero_optimization")
    stage = zero.get("stage") if isinstance(zero, dict) else None
    if stage not in (1, 2, 3):
        raise UserError(f"{path}: key 'zero_optimization.stage' must be 1, 2 or 3")
    for key in ("optimizer", "scheduler"):
        if key in conf:
            raise UserError(
                f"{path}: remove key {key!r}: idtune passes AdamW and its warmup + cosine "
                "schedule (lr, warmup_ratio from the recipe)"
            )
    ga = conf.get("gradient_accumulation_steps", "auto")
    if ga != "auto" and ga != cfg.grad_accum:
        raise UserError(
            f"{path}: key 'gradient_accumulation_steps' is {ga} but the recipe's grad_accum is "
            f'{cfg.grad_accum}; set it to "auto" or --set grad_accum={ga}'
        )
    if isinstance(conf.get("compile"), dict) and conf["compile"].get("deepcompile"):
        raise UserError(f"{path}: remove key 'compile.deepcompile': DeepCompile does not train "
                        "idtune's models yet (DeepSpeed 0.19.8 on an H100 compiled again for the "
                        "next batch of packed rows: 1 step in 200 s; BENCHMARKS.md)")  # fmt: skip
    if stage == 3 and cfg.method == "qlora":
        raise UserError(_QUANT_STORAGE.format(engine="ZeRO-3"))
    if not cuda and world > 1:
        raise UserError(
            "--deepspeed without CUDA runs one process only (accelerate sets up DeepSpeed's "
            "process group on GPUs); drop --gpus/--nnodes or use them without --deepspeed"
        )
    args = ["--config_file", str(CONFIGS / "deepspeed.yaml"), "--deepspeed_config_file", str(path)]
    return Launch(f"deepspeed_zero{stage}", world, args)


def _bf16_weights(cfg: TrainConfig) -> bool:
    """True when DeepSpeed trains in its bf16 mode (bf16 weights for compute, fp32 master
    weights and AdamW state in its optimizer): on a bf16 GPU for LoRA/QLoRA (bf16 weights
    already) and for full fine-tunes, whose fp32 weights it casts (no autocast then)."""
    import torch

    if cfg.dtype not in ("auto", "bf16"):
        return False
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def run(launch: Launch, worker: list[str]) -> None:
    """Start `accelerate launch … -m idtune.cli WORKER…`; a failure becomes one UserError line."""
    errors = Path(tempfile.mkdtemp(prefix="idtune-launch-"))
    log = errors / "workers.log"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *launch.args]
    cmd += ["-m", "idtune.cli", *worker]
    env = {**os.environ, **launch.env, ERRORS_ENV: str(errors), "PYTHONUNBUFFERED": "1"}
    with log.open("w") as fh:
        rc = subprocess.call(cmd, env=env, stderr=fh)
    if rc == 0:
        shutil.rmtree(errors, ignore_errors=True)
        return
    first = first_error(errors)
    if first is None:
        raise UserError(f"distributed training failed (exit code {rc}); see {log}", exit_code=1)
    if first["user_error"]:
        raise UserError(first["message"], exit_code=first["exit_code"])
    raise UserError(f"rank {first['rank']}: {first['message']} (log: {log})", exit_code=1)


def first_error(errors: Path) -> dict | None:
    """The error recorded first (earliest, then lowest rank) by the workers of a launch."""
    found = [json.loads(p.read_text()) for p in errors.glob("rank-*.json")]
    return min(found, key=lambda e: (e["time"], e["rank"])) if found else None


@contextmanager
def recording_errors() -> Iterator[None]:
    """In a launched worker, record the exception that ends it (for `run` to report)."""
    where = os.environ.get(ERRORS_ENV)
    try:
        yield
    except Exception as e:
        if where:
            rank = int(os.environ.get("RANK", "0"))
            user = isinstance(e, UserError)
            text = " ".join(str(e).split()) or type(e).__name__
            record = {
                "time": time.time(),
                "rank": rank,
                "user_error": user,
                "exit_code": e.exit_code if user else 1,
                "message": text if user else f"{type(e).__name__}: {text}"[:500],
            }
            tmp = Path(where) / f".rank-{rank}.json"
            tmp.write_text(json.dumps(record))
            tmp.rename(Path(where) / f"rank-{rank}.json")
        raise
