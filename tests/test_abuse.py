"""User mistakes through the real CLI (issue 14): exit code 2, one `error:` line naming the file,
line, key or `--set KEY`, no traceback, and nothing overwritten, deleted or left half-written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import cli, one_error, tree

from idtune.runinfo import RunInfo

IDTUNE = Path(sys.executable).parent / "idtune"


@pytest.fixture
def data(tmp_path) -> Path:
    f = tmp_path / "d.jsonl"
    row = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}
    f.write_text(json.dumps(row) + "\n")
    return f


# ---------------------------------------------------------------- recipe values (12, 15)
@pytest.mark.parametrize(
    "item, message",
    [
        ("lora.r=-4", "--set lora.r: key 'lora.r' must be >= 1, got -4"),
        ("lora.alpha=0", "--set lora.alpha: key 'lora.alpha' must be > 0, got 0"),
        ("lora.dropout=1", "--set lora.dropout: key 'lora.dropout' must be in [0, 1), got 1.0"),
        ("lr=-1", "--set lr: key 'lr' must be > 0, got -1.0"),
        ("lr=.nan", "--set lr: key 'lr' must be > 0, got nan"),
        ("epochs=-1", "--set epochs: key 'epochs' must be >= 0, got -1.0"),
        ("epochs=0", "--set epochs: key 'epochs' must be > 0 (or set max_steps), got 0.0"),
        ("max_steps=-3", "--set max_steps: key 'max_steps' must be >= 0, got -3"),
        ("grad_accum=0", "--set grad_accum: key 'grad_accum' must be >= 1, got 0"),
        ("warmup_ratio=2", "--set warmup_ratio: key 'warmup_ratio' must be between 0 and 1"),
        ("keep_last=0", "--set keep_last: key 'keep_last' must be >= 1, got 0"),
        ("seed=1180591620717411303424", "--set seed: key 'seed' must be between 0 and 2**32"),
        ("dtype=fp8", "--set dtype: key 'dtype' must be one of auto, fp32, bf16, fp16"),
        ("method=dpo", "--set method: key 'method' must be one of lora, qlora, full, got 'dpo'"),
        ("rejected.share=2", "--set rejected.share: key 'rejected.share' must be between 0 and 1"),
        ("lora={r: -4}", "--set lora: key 'lora.r' must be >= 1, got -4"),
        ("max_steps=many", "--set max_steps: key 'max_steps' must be int, got str ('many')"),
        ("lr=[", "--set lr: key 'lr' must be float, got str ('[')"),
    ],
)
def test_bad_set_values_blame_set_key(
    tmp_path, monkeypatch, capsys, tiny_model, data, item, message
):
    monkeypatch.chdir(tmp_path)
    args = ["--set", f"model={tiny_model}", "--set", f"data={data}", "--set", "eval_prompts="]
    assert cli("train", "identity-lora", *args, "--set", item) == 2
    assert one_error(capsys).startswith(message)
    assert not (tmp_path / "runs").exists()


def test_bad_recipe_values_blame_the_file(tmp_path, capsys, data):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data: [{data}]\nmethod: dpo\nlora:\n  r: 8\n")
    assert cli("train", recipe, "--set", "lr=1e-3") == 2  # a good --set is not blamed
    assert one_error(capsys) == (
        f"{recipe}: key 'method' must be one of lora, qlora, full, got 'dpo'"
    )
    recipe.write_text("lora:\n  r: -4\n")
    assert cli("train", recipe, "--set", "method=full") == 2
    assert one_error(capsys) == f"{recipe}: key 'lora.r' must be >= 1, got -4"


def test_output_dir_or_data_of_the_wrong_kind(tmp_path, capsys, data):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    for out in (afile, afile / "run"):
        assert (
            cli("train", "identity-lora", "--set", f"data={data}", "--set", f"output_dir={out}")
            == 2
        )
        assert one_error(capsys).startswith(
            "--set output_dir: key 'output_dir' must be a directory"
        )
    assert afile.read_text() == "mine"

    adir = tmp_path / "adir.jsonl"
    adir.mkdir()
    assert cli("train", "identity-lora", "--set", f"data={adir}") == 2
    assert "--set data: key 'data' must be a list of data files" in one_error(capsys)
    assert cli("data", "check", adir) == 2
    assert one_error(capsys) == f"{adir} is a directory, not a data file"


def test_names_the_system_refuses_are_one_line(tmp_path, monkeypatch, capsys, data):
    monkeypatch.chdir(tmp_path)
    long = "n" * 300  # longer than a file name may be
    commands = [
        (["train", "identity-lora", "--set", f"output_dir={long}"], "--set output_dir: "),
        (["train", "identity-lora", "--set", f"data={long}.jsonl"], "--set data: "),
        (["data", "identity", "--name", "N", "--author", "A", "-o", f"{long}/x.jsonl"], "n"),
        (["data", "check", f"{long}.jsonl"], "n"),
        (["eval", "--name", "N", "--author", "A", "-o", long], "n"),
    ]
    for args, start in commands:
        assert cli(*args) == 2, args
        err = one_error(capsys)
        assert err.startswith(start) and "too long" in err, err
    assert list(tmp_path.iterdir()) == [data]


# ---------------------------------------------------------------- data identity -o (8, 12)
def identity(out: Path, *extra: str) -> int:
    return cli(
        "data", "identity", "--name", "Nova", "--author", "Acme", "--n", "8", "-o", out, *extra
    )


def test_data_identity_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "mine.jsonl"
    out.write_text("my own data\n")
    assert identity(out) == 2
    assert one_error(capsys) == f"{out} exists; pass --overwrite to replace it"
    assert out.read_text() == "my own data\n"
    assert identity(out, "--overwrite") == 0
    assert len(out.read_text().splitlines()) == 8


def test_data_identity_output_that_cannot_be_a_file(tmp_path, capsys):
    adir = tmp_path / "existing_dir"
    (adir / "inside").mkdir(parents=True)
    for extra in ((), ("--overwrite",)):
        assert identity(adir, *extra) == 2
        assert one_error(capsys) == f"{adir} is a directory; name a file to write"
    assert [p.name for p in tmp_path.iterdir()] == ["existing_dir"]  # no .existing_dir.tmp
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert identity(afile / "out.jsonl") == 2
    assert one_error(capsys) == f"{afile / 'out.jsonl'}: {afile} is not a directory"
    bad = Path("/proc/idtune-test/out.jsonl")  # cannot be created, even by root
    assert identity(bad) == 2
    assert one_error(capsys).startswith(f"{bad}: cannot write in /proc")


# ---------------------------------------------------------------- eval -o (13)
def test_eval_checks_its_output_before_the_work(tmp_path, capsys, monkeypatch, tiny_model):
    from idtune import models

    def no_work(*a, **k):
        raise AssertionError("the model was loaded before -o was checked")

    monkeypatch.setattr(models, "load", no_work)
    afile = tmp_path / "report"
    afile.write_text("keep")
    for out in (afile, afile / "sub"):
        assert cli("eval", tiny_model, "--name", "N", "--author", "A", "-o", out) == 2
        assert str(afile) in one_error(capsys)
    assert afile.read_text() == "keep"
    (tmp_path / "ok" / "eval.md").mkdir(parents=True)  # eval.md cannot be written there
    assert cli("eval", tiny_model, "--name", "N", "--author", "A", "-o", tmp_path / "ok") == 2
    assert (
        one_error(capsys) == f"{tmp_path / 'ok' / 'eval.md'} is a directory; name a file to write"
    )


# ---------------------------------------------------------------- merge OUT (7)
@pytest.fixture
def run_and_base(tmp_path, tiny_model) -> tuple[Path, Path]:
    """A run directory (adapter config, no training needed) over a private copy of the base."""
    base = shutil.copytree(tiny_model, tmp_path / "base")
    adapter = tmp_path / "run" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    RunInfo(str(base)).save(adapter)
    (tmp_path / "run" / "log.jsonl").write_text("{}\n")
    return tmp_path / "run", base


def test_merge_refuses_out_that_overlaps_what_it_merges(tmp_path, capsys, run_and_base):
    run, base = run_and_base
    before = tree(tmp_path)
    cases = [
        ([run, run], "is the run being merged"),
        ([run, run / "adapter"], "is the adapter being merged"),
        ([run, run / "merged"], "is inside the run being merged"),
        ([run, tmp_path], "contains the base model being merged"),
        ([run, base], "is the base model being merged"),
        ([base, run / "adapter", base / "merged"], "is inside the base model being merged"),
        ([run / "adapter", run], "is the run being merged"),
    ]
    for args, relation in cases:
        assert cli("merge", *args, "--overwrite") == 2, args
        err = one_error(capsys)
        assert err.startswith(f"{args[-1]} {relation} (") and "new directory" in err, err
    assert tree(tmp_path) == before


# ---------------------------------------------------------------- the console script itself
def test_console_script_prints_one_line_not_a_traceback(tmp_path, run_and_base):
    run, _ = run_and_base
    (tmp_path / "adir.jsonl").mkdir()
    (tmp_path / "taken").mkdir()
    commands = [
        ["train", "identity-lora", "--set", "lora.r=-4"],
        ["data", "check", "adir.jsonl"],
        ["data", "identity", "--name", "N", "--author", "A", "-o", "taken"],
        ["merge", str(run), str(run), "--overwrite"],
    ]
    env = {**os.environ, "IDTUNE_CACHE": str(tmp_path / "cache")}
    for args in commands:
        p = subprocess.run(
            [str(IDTUNE), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert p.returncode == 2, (args, p.stderr)
        assert "Traceback" not in p.stderr and p.stderr.startswith("error: "), (args, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1, (args, p.stderr)
    assert (run / "log.jsonl").is_file() and not (tmp_path / ".taken.tmp").exists()


# ---------------------------------------------------------------- issue 26 item 6: one line
def test_a_model_that_is_not_a_model_directory(tmp_path, capsys, data):
    """Before: `model: /etc` in a recipe was a ValueError traceback from the tokenizer."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: /etc\ndata: [{data}]\n")
    assert cli("train", recipe) == 2
    assert one_error(capsys) == (
        f"{recipe}: key 'model': /etc is not a model directory (no config.json in it)"
    )
    assert cli("train", "identity-lora", "--set", f"data={data}", "--set", f"model={data}") == 2
    assert one_error(capsys) == (
        f"--set model: key 'model': {data} is not a model directory (a file, not a directory)"
    )
    assert not (tmp_path / "runs").exists()


def test_lora_target_modules_the_model_lacks(tmp_path, capsys, tiny_model, data):
    """Before: `--set lora.target_modules=[nonexistent]` was peft's NoMatchingPeftModuleError
    traceback, after the data was made. Now one line naming the key and the model's layers,
    before any data is read or any weights loaded."""
    run = tmp_path / "run"
    for value in ("[nonexistent]", "q_proj,nonexistent"):
        args = ["--set", f"model={tiny_model}", "--set", f"data={tmp_path / 'none.jsonl'}"]
        args += ["--set", f"output_dir={run}", "--set", f"lora.target_modules={value}"]
        assert cli("train", "identity-lora", *args) == 2
        assert one_error(capsys) == (
            f"key 'lora.target_modules': {tiny_model} has no module named 'nonexistent'; its "
            "linear layers are down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj "
            "(or use all-linear)"
        )  # the data file does not exist: it was never read
    assert not run.exists()


def test_data_files_that_are_not_regular_files(tmp_path):
    """Before: a named pipe given as a data file hung `data check` (and train) for ever.
    A real process each: the old code blocked in read()."""
    os.mkfifo(tmp_path / "pipe.jsonl")
    os.mkfifo(tmp_path / "pipe.yaml")
    ident = ["data", "identity", "--name", "N", "--author", "A", "-o", "out.jsonl"]
    commands = [
        (["data", "check", "pipe.jsonl"], "pipe.jsonl is a named pipe, not a data file"),
        (["train", "identity-lora", "--set", "data=pipe.jsonl"],
         "--set data: key 'data' must be a list of data files, got 'pipe.jsonl (not a regular "
         "file)'"),
        (["eval", "--probes", "pipe.jsonl", "--name", "N", "--author", "A"],
         "pipe.jsonl is a named pipe, not a probe file"),
        ([*ident, "--phrases", "pipe.yaml"], "pipe.yaml is a named pipe, not a phrase file"),
    ]  # fmt: skip
    env = {**os.environ, "IDTUNE_CACHE": str(tmp_path / "cache")}
    for args, message in commands:
        p = subprocess.run(
            [str(IDTUNE), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert (p.returncode, p.stderr) == (2, f"error: {message}\n"), args
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe.jsonl", "pipe.yaml"]
