"""`idtune train --resume` through the real CLI (issue 26 item 3): a run keeps the settings it
began with, resumes in the folder that holds it wherever that was copied, and passes over a
damaged latest checkpoint for the one before it.

One tiny 5-step run (checkpoints at steps 2 and 4) is trained once; each test resumes its own
copy of it, left as a crash after step 4 leaves a run (no adapter/ yet).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from helpers import cli, one_error, tree

from idtune import checkpoint, recipes
from idtune.data import formats, identity


def steps(run: Path) -> list[int]:
    return [json.loads(x)["step"] for x in (run / "log.jsonl").read_text().splitlines()]


def saved(run: Path) -> tuple[dict, dict]:
    """The run's config.yaml and the settings its idtune.json records."""
    config = yaml.safe_load((run / "config.yaml").read_text())
    return config, json.loads((run / "idtune.json").read_text())["settings"]


@pytest.fixture(scope="module")
def base(tmp_path_factory, tiny_model):
    """A finished tiny run: 5 steps, checkpoints step-2 and step-4; its data and other data."""
    root = tmp_path_factory.mktemp("resume")
    data, other = root / "data.jsonl", root / "other.jsonl"
    formats.write_jsonl(data, identity.generate("Nova", "Acme", n=24, seed=0))
    formats.write_jsonl(other, identity.generate("Nova", "Acme", n=24, seed=1))
    run = root / "run"
    sets = [f"model={tiny_model}", f"data={data}", f"output_dir={run}", "eval_prompts=",
            "regularization.auto=false", "val_share=0", "row_tokens=256", "batch_tokens=256",
            "max_steps=5", "save_steps=2", "keep_last=2"]  # fmt: skip
    assert cli("train", "identity-lora", *[x for s in sets for x in ("--set", s)]) == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-2", "step-4"]
    return run, data, other


def crashed(run: Path, dest: Path) -> Path:
    """A copy of `run` as a crash after step 4 leaves it (its config.yaml names `run`)."""
    shutil.copytree(run, dest)
    shutil.rmtree(dest / "adapter")
    return dest


def test_resume_refuses_settings_that_change_what_is_trained(base, tmp_path, capsys):
    """Before: `--resume --set data=other --set lr=0.5` trained to the end (rc 0) with
    config.yaml saying the old values; `--set lora.r=8` was a size-mismatch traceback."""
    run, data, other = base
    copy = crashed(run, tmp_path / "copy")
    before = tree(copy)
    show = recipes.show
    head = f"--resume: {copy} keeps the settings it began with, and these would change what it "
    tail = f" (a resume may change only {', '.join(recipes.ON_RESUME)}; train anew into another "
    cases = [
        (["data", other, "lr", "0.5"], f"data {show([str(data)])} → {show([str(other)])}; "
         "lr 0.002 → 0.5"),
        (["lora.r", "8", "lora.alpha", "16"], "lora.r 64 → 8; lora.alpha 128 → 16"),
        (["lora.target_modules", "[q_proj]", "max_steps", "9"],
         "lora.target_modules 'all-linear' → ['q_proj']"),  # max_steps may change: not named
        (["method", "full", "warmup_ratio", "0.5"],
         "method 'lora' → 'full'; warmup_ratio 0.05 → 0.5"),
    ]  # fmt: skip
    for pairs, shown in cases:
        sets = [x for k, v in zip(pairs[::2], pairs[1::2]) for x in ("--set", f"{k}={v}")]
        assert cli("train", copy / "config.yaml", "--resume", *sets) == 2, pairs
        err = one_error(capsys)
        assert err.startswith(head + "trains: " + shown + tail), err
    # the run named by another recipe: every key it sets otherwise is named
    assert cli("train", "identity-lora", "--set", f"output_dir={copy}", "--resume") == 2
    err = one_error(capsys)
    assert re.search(r"trains: model .* → 'smollm2-135m-instruct'; data .* → \[\]; ", err), err
    assert tree(copy) == before  # nothing written: refused before the model was loaded


def test_resume_may_change_how_long_and_how_often(base, tmp_path, capsys):
    """The keys listed in --help change on resume, and config.yaml and idtune.json say so."""
    run, _, _ = base
    copy = crashed(run, tmp_path / "copy")
    sets = ["max_steps=6", "save_steps=3", "keep_last=1", "eval_prompts=Hi"]
    assert (
        cli("train", copy / "config.yaml", "--resume", *[x for s in sets for x in ("--set", s)])
        == 0
    )
    assert steps(copy) == [1, 2, 3, 4, 5, 6]
    config, settings = saved(copy)
    for key, value in {
        "max_steps": 6,
        "save_steps": 3,
        "keep_last": 1,
        "output_dir": str(copy),
    }.items():
        assert config[key] == value and settings[key] == value, key
    assert config["eval_prompts"] == ["Hi"] and "**Hi**" in (copy / "samples.md").read_text()
    assert settings["steps"] == 6
    capsys.readouterr()
    assert cli("train", "--help") == 0
    flat = re.sub(r"[\s│]+", "", capsys.readouterr().out)
    assert "--setmaychangeonresumeonly:" + ",".join(recipes.ON_RESUME) + "." in flat


def test_a_copied_run_resumes_where_it_is(base, tmp_path, capsys):
    """Before: `train COPY/config.yaml --resume` acted on the folder its output_dir named."""
    run, _, _ = base
    original = tree(run)
    copy = crashed(run, tmp_path / "elsewhere" / "copy")
    assert saved(copy)[0]["output_dir"] == str(run)  # config.yaml names the original
    assert cli("train", copy / "config.yaml", "--resume", "--set", f"output_dir={run}") == 2
    assert one_error(capsys) == (
        f"--set output_dir: {copy / 'config.yaml'} is the run in {copy}, which resumes where it "
        "is; to resume a copy, copy the folder and resume its config.yaml"
    )
    assert cli("train", copy / "config.yaml", "--resume") == 0
    assert f"resumed from {copy / 'checkpoints' / 'step-4'} at step 4" in capsys.readouterr().out
    assert tree(run) == original  # the original run is as it was
    assert steps(copy) == [1, 2, 3, 4, 5] and (copy / "adapter" / checkpoint.ADAPTER).is_file()
    config, settings = saved(copy)
    assert config["output_dir"] == settings["output_dir"] == str(copy)


def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before(base, tmp_path, capsys):
    """Before: an empty state.json in the latest checkpoint was a JSONDecodeError traceback."""
    run, _, _ = base
    copy = crashed(run, tmp_path / "copy")
    ckpts = copy / "checkpoints"
    (ckpts / "step-4" / "state.json").write_text("")
    capsys.readouterr()
    assert cli("train", copy / "config.yaml", "--resume") == 0
    out = capsys.readouterr().out
    assert (
        f"{ckpts / 'step-4'}: damaged (state.json is empty); resuming from step-2, the newest "
        "complete checkpoint" in out
    )
    assert f"resumed from {ckpts / 'step-2'} at step 2" in out
    assert steps(copy) == [1, 2, 3, 4, 5]
    assert checkpoint.problem(ckpts / "step-4") is None  # written anew by the resumed run

    # nothing complete: one line, and nothing touched
    copy = crashed(run, tmp_path / "copy2")
    ckpts = copy / "checkpoints"
    (ckpts / "step-4" / "state.json").write_text('{"step": 4,')
    (ckpts / "step-2" / "optimizer.bin").unlink()
    before = tree(copy)
    assert cli("train", copy / "config.yaml", "--resume") == 2
    assert one_error(capsys) == (
        f"{copy}: no complete checkpoint to resume from: step-4: state.json is not valid JSON "
        "(and 1 older, damaged too)"
    )
    assert tree(copy) == before
    shutil.rmtree(ckpts / "step-4")
    assert cli("train", copy / "config.yaml", "--resume") == 2
    assert one_error(capsys) == (
        f"{copy}: no complete checkpoint to resume from: step-2: optimizer.bin is missing"
    )


def test_an_fsdp2_checkpoint_missing_a_ranks_shards_is_passed_over(tmp_path):
    """Before: only fsdp/.metadata was checked, so a step-N whose rank-1 shard file was lost or
    empty counted as complete and `--resume` failed loading it instead of taking the one before.
    (The names are torch DCP's, one file per rank; the FSDP2 resume test in
    test_train_distributed.py resumes from real ones through this check.)"""
    run = tmp_path / "run"

    def fsdp_checkpoint(step: int) -> Path:
        ckpt = run / "checkpoints" / f"step-{step}"
        (ckpt / "fsdp").mkdir(parents=True)
        state = {"step": step, "engine": "fsdp2", "world_size": 2, "method": "full"}
        (ckpt / checkpoint.DONE).write_text(json.dumps(state))
        for name in ("random_states_0.pkl", "random_states_1.pkl", "scheduler.bin",
                     "fsdp/.metadata", "fsdp/__0_0.distcp", "fsdp/__1_0.distcp"):  # fmt: skip
            (ckpt / name).write_bytes(b"x")
        return ckpt

    old, new = fsdp_checkpoint(2), fsdp_checkpoint(4)
    assert checkpoint.scan(run) == (new, [])
    (new / "fsdp" / "__1_0.distcp").write_bytes(b"")
    assert checkpoint.scan(run) == (old, [(new, "fsdp/__1_0.distcp is empty")])
    (new / "fsdp" / "__1_0.distcp").unlink()
    assert checkpoint.problem(new) == "fsdp/__1_0.distcp is missing"
    logged: list[str] = []
    assert checkpoint.check_run(run, True, "fsdp2", 2, log=logged.append) == old
    assert logged == [f"{new}: damaged (fsdp/__1_0.distcp is missing); resuming from step-2, "
                      "the newest complete checkpoint"]  # fmt: skip
