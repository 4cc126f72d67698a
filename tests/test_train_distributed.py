"""Several real training processes on CPU (gloo) through `idtune train`'s accelerate launcher.

Every run here is a tiny model with LoRA dropout 0 and fp32 weights, so results can be compared
to the bit: 2 processes against 1 with twice the batch (DDP, and FSDP2 for LoRA and full
fine-tuning), a SIGKILLed and resumed run against an uninterrupted one, 2 "machines" (one process
each, one host) against 2 processes on one, a resumed FSDP2 full fine-tune against an
uninterrupted one.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from helpers import cli, finish
from safetensors.torch import load_file
from tiny import build_model_dir, untie

import idtune as idtune_pkg

STEPS = ["--set", "max_steps=6", "--set", "save_steps=2", "--set", "keep_last=2"]
# Adam's first step is lr × g / (|g| + 1e-8): gradients near 1e-8, where summing the same tokens
# in another order changes them by ~10 %, move by up to ~0.1 lr whatever the number of
# processes. lr 5e-5 keeps that rounding under 1e-5 while a wrong normalisation or schedule
# (an lr decaying twice as fast on 2 processes) still moves weights by several 1e-5.
LR = ["--set", "lr=5e-5"]
ZERO3_JSON = Path(idtune_pkg.__file__).parent / "launch" / "deepspeed_zero3.json"  # as shipped


def run_args(model, data, out, *extra):
    return ["train", "identity-lora", "--set", f"model={model}", "--set", f"data={data}",
            "--set", f"output_dir={out}", "--set", "regularization.auto=false",
            "--set", "identity.name=Nova", "--set", "identity.author=Acme",
            "--set", "row_tokens=256", "--set", "sample_max_new_tokens=4",
            "--set", "lora.dropout=0", "--set", "dtype=fp32", *STEPS, *LR, *extra]  # fmt: skip


def idtune(*args, env=None, **kw) -> subprocess.Popen:
    """`idtune ARGS` as its own process group (so a test can kill all of it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "idtune.cli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,
        **kw,
    )


def adapter(run):
    return load_file(run / "adapter" / "adapter_model.safetensors")


def max_diff(a, b) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    f = tmp_path_factory.mktemp("data") / "identity.jsonl"
    assert cli("data", "identity", "--name", "Nova", "--author", "Acme", "--n", "40",
               "-o", f) == 0  # fmt: skip
    return f


@pytest.fixture(scope="module")
def two_processes(tiny_model, data, tmp_path_factory):
    """An uninterrupted 2-process run: 2 rows of 256 tokens per process and micro-batch."""
    run = tmp_path_factory.mktemp("ddp") / "run"
    args = run_args(tiny_model, data, run, "--set", "batch_tokens=512", "--gpus", "2")
    assert cli(*args) == 0
    return run


def test_two_processes_equal_one_with_twice_the_batch(tiny_model, data, two_processes, tmp_path):
    one = tmp_path / "one"
    assert cli(*run_args(tiny_model, data, one, "--set", "batch_tokens=1024")) == 0
    info = json.loads((two_processes / "idtune.json").read_text())["settings"]
    assert (info["engine"], info["world_size"], info["steps"]) == ("ddp", 2, 6)
    assert max_diff(adapter(two_processes), adapter(one)) <= 1e-5
    logs = [[json.loads(x) for x in (r / "log.jsonl").read_text().splitlines()]
            for r in (two_processes, one)]  # fmt: skip
    for a, b in zip(*logs):  # the same loss over all trained tokens, the same tokens
        assert a["tokens"] == b["tokens"] and abs(a["loss"] - b["loss"]) < 1e-4


def test_sigkill_after_the_second_checkpoint_then_resume(tiny_model, data, two_processes, tmp_path):
    run = tmp_path / "run"
    args = run_args(tiny_model, data, run, "--set", "batch_tokens=512", "--gpus", "2")
    proc = idtune(*args)
    second = run / "checkpoints" / "step-4" / "state.json"
    deadline = time.time() + 300
    while not second.is_file():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.05)
    family = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    for pid in family:  # the launcher, torchrun's agent and both workers, all at once
        os.kill(pid, signal.SIGKILL)
    proc.communicate()
    assert not (run / "adapter").exists()
    assert cli(*args, "--resume") == 0
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    assert max_diff(adapter(run), adapter(two_processes)) <= 1e-6
    assert not list((run / "checkpoints").glob(".step-*"))


def test_two_machines_on_one_host(tiny_model, data, two_processes, tmp_path):
    """--nnodes 2: two `idtune train` commands, one process each, meeting at 127.0.0.1."""
    run, port = tmp_path / "run", free_port()
    args = run_args(tiny_model, data, run, "--set", "batch_tokens=512", "--nnodes", "2",
                    "--master-addr", "127.0.0.1", "--master-port", port)  # fmt: skip
    nodes = [idtune(*args, "--node-rank", r) for r in (1, 0)]
    outs = [p.communicate(timeout=600) for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], outs
    info = json.loads((run / "idtune.json").read_text())["settings"]
    assert (info["engine"], info["world_size"]) == ("ddp", 2)
    assert max_diff(adapter(run), adapter(two_processes)) <= 1e-6  # same ranks, same data


def test_a_worker_error_is_one_line(tiny_model, data, tmp_path):
    """Rank 1 fails (injected at interpreter start-up): the user reads its error, one line."""
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(
        "import os\n"
        "if os.environ.get('RANK') == '1':\n"
        "    import idtune.train as t\n"
        "    def fail(*a, **k):\n"
        "        raise RuntimeError('injected failure\\nsecond line')\n"
        "    t.load_for_training = fail\n"
    )
    env = {"PYTHONPATH": f"{inject}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    args = run_args(tiny_model, data, tmp_path / "run", "--set", "batch_tokens=512", "--gpus", 2)
    proc = idtune(*args, env=env)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: rank 1: RuntimeError: injected failure second line (log: ")
    assert "Traceback" not in out + err


def test_unsupported_combinations_stop_before_any_process(tiny_model, data, tmp_path, capsys):
    run = tmp_path / "run"
    cases = [
        (["--deepspeed", "zero4"], "--deepspeed 'zero4': choose zero2, zero3"),
        (["--deepspeed", "zero2", "--gpus", "2"], "--deepspeed without CUDA runs one process"),
        (["--nnodes", "2"], "--nnodes 2 needs --master-addr"),
        (["--fsdp", "--deepspeed", "zero2"], "--deepspeed and --fsdp: choose one"),
        (["--set", "method=qlora", "--gpus", "2"], "method qlora needs a CUDA GPU"),
    ]
    bad = tmp_path / "ds.json"
    bad.write_text('{"zero_optimization": {"stage": 2},\n "optimizer": {"type": "Adam"}}')
    cases.append((["--deepspeed", bad], f"{bad}: remove key 'optimizer'"))
    bad2 = tmp_path / "ds2.json"
    bad2.write_text('{"zero_optimization": {"stage": 2}, "gradient_accumulation_steps": 4}')
    ga = f"{bad2}: key 'gradient_accumulation_steps' is 4 but the recipe"
    cases.append((["--deepspeed", bad2], ga))
    broken = tmp_path / "ds3.json"
    broken.write_text('{"zero_optimization":\n  {"stage": 2,}}')
    cases.append((["--deepspeed", broken], f"{broken}:2: invalid JSON"))
    dc = tmp_path / "ds4.json"
    dc.write_text('{"zero_optimization": {"stage": 3}, "compile": {"deepcompile": true}}')
    cases.append((["--deepspeed", dc], f"{dc}: remove key 'compile.deepcompile': DeepCompile"))
    for extra, message in cases:
        assert cli(*run_args(tiny_model, data, run, *extra)) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith(f"error: {message}") and err.count("\n") == 1, (extra, err)
        assert not run.exists()


def test_resume_under_another_engine_is_refused(tiny_model, data, two_processes, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(two_processes, run)
    shutil.rmtree(run / "adapter")
    # the run's own settings (batch_tokens 512), on one process instead of two
    assert cli(*run_args(tiny_model, data, run, "--set", "batch_tokens=512", "--resume")) == 2
    err = capsys.readouterr().err
    assert "was written by 2 process(es) under ddp; resume it the same way" in err


@pytest.mark.slow
def test_deepspeed_zero2_as_one_cpu_process_resumes_exactly(tiny_model, data, tmp_path):
    """--deepspeed zero2 (the tutorial's step): accelerate.prepare gets its batch size from
    idtune, checkpoints are DeepSpeed's own files, and a resume continues exactly."""
    run = tmp_path / "run"
    args = run_args(tiny_model, data, run, "--set", "batch_tokens=512", "--deepspeed",
                    "deepspeed_zero2")  # fmt: skip
    assert cli(*args) == 0
    ck = run / "checkpoints" / "step-4"
    assert {"pytorch_model", "adapter_model.safetensors", "random_states_0.pkl"} <= {
        p.name for p in ck.iterdir()}  # fmt: skip
    info = json.loads((run / "idtune.json").read_text())["settings"]
    assert (info["engine"], info["world_size"]) == ("deepspeed_zero2", 1)
    (run / "adapter").rename(run / "uninterrupted")
    assert cli(*args, "--resume") == 0
    first = load_file(run / "uninterrupted" / "adapter_model.safetensors")
    assert max_diff(adapter(run), first) <= 1e-6


@pytest.mark.slow
def test_deepspeed_zero3_full_fine_tune_equals_one_process_and_resumes_exactly(
    tiny_model, data, tmp_path
):
    """--deepspeed zero3 --set method=full as one CPU process (decoder layers as ZeRO-3 leaves,
    a layer's gradients a reduce bucket, the chunked loss with the tied head's weight gathered
    for it): the same losses and weights as the plain loop, and resumed from step 2 it ends
    where the uninterrupted run ended."""
    full = ["--set", "batch_tokens=512", "--set", "method=full"]
    plain, run = tmp_path / "plain", tmp_path / "run"
    assert cli(*run_args(tiny_model, data, plain, *full)) == 0
    args = run_args(tiny_model, data, run, *full, "--deepspeed", "zero3")
    assert cli(*args) == 0
    info = json.loads((run / "idtune.json").read_text())["settings"]
    assert (info["engine"], info["world_size"]) == ("deepspeed_zero3", 1)
    assert info["zero3_memory_efficient_linear"] is True  # eager layers: DeepSpeed's linear
    losses = [[json.loads(x)["loss"] for x in (r / "log.jsonl").read_text().splitlines()]
              for r in (plain, run)]  # fmt: skip
    assert max(abs(a - b) for a, b in zip(*losses, strict=True)) <= 1e-5
    final = load_file(run / "model" / "model.safetensors")
    assert max_diff(final, load_file(plain / "model" / "model.safetensors")) <= 1e-5
    resume_from_step_2(args, run, "model")
    resumed = load_file(run / "model" / "model.safetensors")
    assert max_diff(resumed, final) <= 1e-6


@pytest.mark.slow
def test_compiled_zero3_full_fine_tune_runs_torchs_linear_and_equals_one_process(
    tiny_model, data, tmp_path
):
    """A compiled full fine-tune under the shipped ZeRO-3 config runs torch's linear
    (`memory_efficient_linear` "auto" → false, parallel.zero3_linear; why that keeps no gathered
    weight: tests/test_zero3_two_processes.py); a model with its own (untied) LM head trains
    with the chunked loss under ZeRO-3: the compiled plain loop's losses and weights."""
    model = untie(build_model_dir(tmp_path / "untied"))
    full = ["--set", "batch_tokens=512", "--set", "method=full", "--set", "compile=true",
            "--set", "max_steps=3", "--set", "save_steps=0"]  # fmt: skip
    plain, run = tmp_path / "plain", tmp_path / "run"
    assert cli(*run_args(model, data, plain, *full)) == 0
    assert cli(*run_args(model, data, run, *full, "--deepspeed", "zero3")) == 0
    info = json.loads((run / "idtune.json").read_text())["settings"]
    assert info["zero3_memory_efficient_linear"] is False
    losses = [[json.loads(x)["loss"] for x in (r / "log.jsonl").read_text().splitlines()]
              for r in (plain, run)]  # fmt: skip
    assert max(abs(a - b) for a, b in zip(*losses, strict=True)) <= 1e-5
    final = load_file(run / "model" / "model.safetensors")
    assert "lm_head.weight" in final  # the untied head was trained and written
    assert max_diff(final, load_file(plain / "model" / "model.safetensors")) <= 1e-5


@pytest.mark.slow
def test_zero3_run_makes_its_regularization_data_with_the_whole_base_model(
    tiny_model, data, tmp_path
):
    """`regularization.auto` under ZeRO-3: the base model answers the general prompts loaded
    whole (not partitioned by transformers' zero.Init, where generation fails), then trains."""
    run = tmp_path / "run"
    args = run_args(tiny_model, data, run, "--set", "max_steps=1", "--set", "save_steps=0",
                    "--set", "batch_tokens=512", "--set", "regularization.auto=true",
                    "--set", "regularization.n=4", "--set", "regularization.max_new_tokens=4",
                    "--deepspeed", "zero3")  # fmt: skip
    out, _ = finish(idtune(*args, env={"IDTUNE_CACHE": str(tmp_path / "cache")}))  # no cache
    assert "regularization: base model answers 4 general prompts" in out
    assert (run / "adapter" / "adapter_model.safetensors").is_file()


def test_zero3_loss_mode_gathers_only_a_plain_linear_head():
    """Under ZeRO-3 the chunked loss applies a plain linear head's gathered weight itself; a
    head wrapped by LoRA needs its module's hooks, so the model's forward builds the logits."""
    import torch

    from idtune import parallel

    plain = torch.nn.Linear(8, 16, bias=False)
    assert parallel.loss_mode("auto", "deepspeed_zero3", plain) == "auto"
    assert parallel.loss_mode("liger", "deepspeed_zero3", plain) == "chunked"
    assert parallel.loss_mode("none", "deepspeed_zero3", plain) == "none"
    assert parallel.loss_mode("auto", "deepspeed_zero3", torch.nn.Sequential(plain)) == "none"
    assert parallel.loss_mode("liger", "fsdp2", torch.nn.Sequential(plain)) == "liger"


@pytest.mark.slow
def test_zero3_lora_is_trained_uncompiled_and_says_so(tiny_model, data, tmp_path):
    """`compile` with LoRA under ZeRO-3: DeepSpeed's hooks inside each layer split the compiled
    graphs (half the uncompiled speed on one GPU), so it is left off, in one line. A user's own
    `memory_efficient_linear` is kept as set (idtune would choose DeepSpeed's linear here)."""
    own = tmp_path / "own_zero3.json"
    conf = json.loads(ZERO3_JSON.read_text())
    conf["zero_optimization"]["memory_efficient_linear"] = False
    own.write_text(json.dumps(conf))
    run = tmp_path / "run"
    short = ["--set", "max_steps=2", "--set", "save_steps=0", "--set", "batch_tokens=512"]
    args = run_args(tiny_model, data, run, *short, "--set", "compile=true", "--deepspeed", own)
    out, _ = finish(idtune(*args))  # its accelerate launcher and worker are not left behind
    assert "compile: off for lora under ZeRO-3" in out
    assert "fused_loss" not in out  # the chunked loss, the frozen head's weight gathered for it
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    info = json.loads((run / "idtune.json").read_text())["settings"]
    assert info["zero3_memory_efficient_linear"] is False


@pytest.mark.slow
def test_users_own_deepspeed_json_trains(tiny_model, data, tmp_path):
    """--deepspeed FILE.json (a user's own config, as XTuner users bring): its stage is used and
    the "auto" batch values are filled from the token budget."""
    own = tmp_path / "my_ds.json"
    own.write_text(
        json.dumps(
            {
                "zero_optimization": {"stage": 2},
                "train_micro_batch_size_per_gpu": "auto",
                "gradient_accumulation_steps": "auto",
            }
        )
    )
    run = tmp_path / "run"
    args = run_args(tiny_model, data, run, "--set", "batch_tokens=512", "--deepspeed", own)
    assert cli(*args) == 0
    info = json.loads((run / "idtune.json").read_text())["settings"]
    assert (info["engine"], info["world_size"]) == ("deepspeed_zero2", 1)
    assert (run / "adapter" / "adapter_model.safetensors").is_file()


@pytest.fixture(scope="module")
def one_process(tiny_model, data, tmp_path_factory):
    """One process with 4 rows a micro-batch, per method (trained on first use)."""
    runs = {}

    def get(method: str):
        if method not in runs:
            run = tmp_path_factory.mktemp(f"one-{method}") / "run"
            args = run_args(tiny_model, data, run, "--set", "batch_tokens=1024",
                            "--set", f"method={method}")  # fmt: skip
            assert cli(*args) == 0
            runs[method] = run
        return runs[method]

    return get


def weights(run, method):
    return adapter(run) if method == "lora" else load_file(run / "model" / "model.safetensors")


@pytest.mark.parametrize("method", ["lora", "full"])
def test_fsdp_two_processes_equal_one(tiny_model, data, one_process, method, tmp_path):
    """--fsdp (FSDP2 on gloo, the chunked loss over the root's LM head, tied to the embeddings
    and trained in full fine-tuning): the same losses and weights as one process."""
    run = tmp_path / "run"
    args = run_args(tiny_model, data, run, "--set", "batch_tokens=512", "--set",
                    f"method={method}", "--fsdp", "--gpus", "2")  # fmt: skip
    assert cli(*args) == 0
    info = json.loads((run / "idtune.json").read_text())["settings"]
    assert (info["engine"], info["world_size"], info["steps"]) == ("fsdp2", 2, 6)
    one = one_process(method)
    got, want = weights(run, method), weights(one, method)
    assert max_diff(got, want) <= 1e-5  # tied LM head saved once, as save_pretrained does
    logs = [[json.loads(x) for x in (r / "log.jsonl").read_text().splitlines()]
            for r in (run, one)]  # fmt: skip
    for a, b in zip(*logs, strict=True):
        assert a["tokens"] == b["tokens"] and abs(a["loss"] - b["loss"]) < 1e-4


def test_fsdp_full_fine_tune_resumes_exactly(tiny_model, data, tmp_path):
    """--fsdp --set method=full: checkpoints are the shards of weights and AdamW state (torch
    distributed checkpoint); resumed from step 2 it ends where the uninterrupted run ended, and
    model/ is the whole model in the Hugging Face layout."""
    run = tmp_path / "run"
    args = run_args(tiny_model, data, run, "--set", "batch_tokens=512", "--set", "method=full",
                    "--fsdp", "--gpus", "2")  # fmt: skip
    assert cli(*args) == 0
    assert (run / "checkpoints" / "step-2" / "fsdp" / ".metadata").is_file()
    resume_from_step_2(args, run, "model")
    final = load_file(run / "model" / "model.safetensors")
    assert max_diff(final, load_file(run / "uninterrupted" / "model.safetensors")) <= 1e-6
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(run / "model")  # usable as it is (merge, chat)
    assert torch.equal(model.model.embed_tokens.weight.detach(), final["model.embed_tokens.weight"])


def test_fsdp_lora_keeps_the_adapter_whole_and_resumes_exactly(tiny_model, data, tmp_path):
    """--fsdp with LoRA: the frozen base is sharded, the adapter is whole on each rank (plain
    tensors, its gradients averaged by idtune), and its checkpoint (torch distributed
    checkpoint) resumes to the uninterrupted run's losses and adapter."""
    import torch
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    from idtune import parallel

    model = parallel.LossModule(_peft_tiny(tiny_model), "none", 0.0)
    try:
        parallel.shard(model, torch.device("cpu"), bf16=False, adapter=True)
        kinds = {(p.requires_grad, isinstance(p, DTensor)) for p in model.parameters()}
    finally:  # shard started a one-process group in this test process
        if dist.is_initialized():
            dist.destroy_process_group()
    assert kinds == {(True, False), (False, True)}  # adapter whole, base sharded

    run = tmp_path / "run"
    args = run_args(tiny_model, data, run, "--set", "batch_tokens=512", "--fsdp", "--gpus", "2")
    assert cli(*args) == 0
    resume_from_step_2(args, run, "adapter")
    final = load_file(run / "adapter" / "adapter_model.safetensors")
    assert max_diff(final, load_file(run / "uninterrupted" / "adapter_model.safetensors")) <= 1e-6


REDUCE_SCRIPT = """
import json, os, sys
import torch, torch.distributed as dist
from idtune import parallel
dist.init_process_group("gloo")
rank = dist.get_rank()
a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
unused = torch.nn.Parameter(torch.zeros(2))  # no gradient on any rank
frozen = torch.nn.Parameter(torch.zeros(4), requires_grad=False)
b.grad = torch.full((2,), 2.0 + rank, dtype=torch.float64)
if rank == 0:  # an expert only rank 0's tokens reached
    a.grad = torch.tensor([4.0, 6.0, 8.0])
parallel.reduce_replicated([a, unused, b, frozen])
out = {k: None if p.grad is None else p.grad.tolist()
       for k, p in {"a": a, "b": b, "unused": unused, "frozen": frozen}.items()}
json.dump(out, open(sys.argv[1], "w"))
dist.destroy_process_group()
"""


def test_reduce_replicated_averages_and_counts_a_missing_gradient_as_zeros(tmp_path):
    """The whole adapter's gradients under FSDP2 on 2 gloo processes: averaged per dtype; a
    weight with no gradient on one rank (an unrouted expert) is zeros there, not left out (the
    ranks would then reduce buffers of different sizes); one with none anywhere keeps none (so
    AdamW leaves it alone, as in one process)."""
    script = tmp_path / "reduce.py"
    script.write_text(REDUCE_SCRIPT)
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "WORLD_SIZE": "2"}  # fmt: skip
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / f"{r}.json")],
                              env={**env, "RANK": str(r)}, stderr=subprocess.PIPE, text=True)
             for r in range(2)]  # fmt: skip
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=600)  # a bound for a hang, not a wait
            assert proc.returncode == 0, err[-2000:]
    finally:  # a rank left waiting on the other is not left behind
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for r in range(2):
        got = json.loads((tmp_path / f"{r}.json").read_text())
        assert got == {"a": [2.0, 3.0, 4.0], "b": [2.5, 2.5], "unused": None, "frozen": None}


def resume_from_step_2(args, run, result: str) -> None:
    """Move the finished run's RESULT folder to uninterrupted/, drop the step-4 checkpoint and
    `--resume`: the 4 steps redone log the uninterrupted run's losses."""
    import shutil

    first = [json.loads(x)["loss"] for x in (run / "log.jsonl").read_text().splitlines()]
    (run / result).rename(run / "uninterrupted")
    shutil.rmtree(run / "checkpoints" / "step-4")
    assert cli(*args, "--resume") == 0
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in log] == first


def _peft_tiny(path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(path)
    for p in base.parameters():
        p.requires_grad_(False)
    return get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))


def test_zero3_sizes_keep_adapters_whole_and_prefetch_a_layer(tiny_model):
    """ZeRO-3's "auto" sizes (parallel.zero3_sizes): under LoRA every trainable weight is at or
    under the persistence threshold (never partitioned, never re-gathered) and every large
    frozen matrix above it; the prefetch bucket holds a whole decoder layer, a reduce bucket
    a layer's gradients, and in a full fine-tune each decoder layer is a ZeRO-3 leaf (no hooks
    inside it)."""
    from deepspeed.utils import get_z3_leaf_modules
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from idtune import accel, parallel

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    layer = sum(p.numel() for p in accel.decoder_layers(model)[0].parameters())
    full = parallel.zero3_sizes(model)
    assert full == {"stage3_prefetch_bucket_size": layer, "stage3_param_persistence_threshold": 640,
                    "reduce_bucket_size": layer}  # fmt: skip
    assert parallel.zero3_leaf_layers(model) == 2  # whole decoder layers, gathered at once
    assert get_z3_leaf_modules(model) == accel.decoder_layers(model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    lora = get_peft_model(model, LoraConfig(r=64, target_modules="all-linear"))
    sizes = parallel.zero3_sizes(lora)
    threshold = sizes["stage3_param_persistence_threshold"]
    trained = [p.numel() for p in lora.parameters() if p.requires_grad]
    frozen = [p.numel() for p in lora.parameters() if not p.requires_grad]
    assert max(trained) <= threshold < max(frozen)
    assert sizes["stage3_prefetch_bucket_size"] >= layer
    hidden = model.config.hidden_size
    grads = sum(p.numel() for p in accel.decoder_layers(lora)[0].parameters() if p.requires_grad)
    assert sizes["reduce_bucket_size"] == max(grads, hidden * hidden)  # its gradients only
    assert parallel.zero3_leaf_layers(lora) == 0  # frozen weights: per-module hooks kept
    assert get_z3_leaf_modules(lora) == []
