"""Training you can watch (issue 19): validation loss, TensorBoard, no short last step."""

import json

import pytest
from helpers import cli
from test_train import identity_data, train_args  # noqa: F401 (identity_data: a fixture)

from idtune import recipes, train, watch


def test_val_slice_is_deterministic_disjoint_and_never_trained():
    convs = [f"c{i}" for i in range(40)]
    a_train, a_val = watch.split_val(convs, 0.1, seed=3)
    assert watch.split_val(convs, 0.1, seed=3) == (a_train, a_val)
    assert len(a_val) == 4 and not set(a_val) & set(a_train)
    assert sorted(a_train + a_val) == sorted(convs)
    assert watch.split_val(convs, 0.1, seed=4)[1] != a_val
    assert watch.split_val(convs[:5], 0.05, seed=0) == (convs[:5], [])  # rounds to none


def test_build_conversations_leaves_the_val_slice_out(identity_data):  # noqa: F811
    from idtune.data import formats

    cfg = recipes.read_config("identity-lora")
    cfg.data, cfg.regularization.ratio, cfg.val_share = [str(identity_data)], 0.0, 0.25
    convs, _ = train.build_conversations(cfg)
    _, val = watch.split_val(formats.load_files(cfg.data), 0.25, cfg.seed)
    assert len(val) == 10 and len(convs) == 30
    assert not {json.dumps(c, sort_keys=True, default=str) for c in val} & {
        json.dumps(c, sort_keys=True, default=str) for c in convs}  # fmt: skip


def test_no_short_last_micro_batch():
    cfg = recipes.read_config("identity-lora")
    cfg.row_tokens, cfg.batch_tokens = 256, 768  # 3 rows a micro-batch
    for epoch in range(3):
        batches = train.micro_batches(list(range(10)), cfg, epoch)
        assert [len(b) for b in batches] == [3, 3, 3]
    assert [len(b) for b in train.micro_batches([1, 2], cfg, 0)] == [2]  # fewer than one: kept


def test_tensorboard_gets_loss_and_val_loss(tmp_path, tiny_model, identity_data):  # noqa: F811
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    extra = ["--set", "max_steps=4", "--set", "save_steps=2", "--set", "val_share=0.2",
             "--set", "report_to=tensorboard"]  # fmt: skip
    assert cli(*train_args(tiny_model, identity_data, run, *extra)) == 0
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert [r["step"] for r in log if "val_loss" in r] == [2, 4]  # checkpoint and end
    assert all(r["val_loss"] > 0 for r in log if "val_loss" in r)
    samples = (run / "samples.md").read_text()
    assert "*(cut at 4 tokens)*" in samples  # a random model does not stop within 4 tokens
    probed = [r for r in log if "probe" in r]  # scored held-out probes at checkpoint and end
    assert [r["step"] for r in probed] == [2, 4]
    assert {"identity_en", "identity_zh", "author", "leakage", "cut"} <= set(probed[0]["probe"])
    assert probed[0]["probe"]["cut"] > 0  # a random model rambles to the length cap
    assert samples.count("### held-out probes") == 2 and "*(cut)*" in samples
    events = list((run / "trackers").rglob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"loss", "val_loss", "tokens_per_s"} <= set(tags)
    assert [e.step for e in acc.Scalars("loss")] == [1, 2, 3, 4]
    val = {e.step: e.value for e in acc.Scalars("val_loss")}
    assert val == pytest.approx({r["step"]: r["val_loss"] for r in log if "val_loss" in r})


def test_bad_report_to_is_one_line(tmp_path, tiny_model, identity_data, capsys):  # noqa: F811
    args = train_args(tiny_model, identity_data, tmp_path / "run", "--set", "report_to=neptune")
    assert cli(*args) == 2
    err = capsys.readouterr().err
    assert "report_to 'neptune'" in err and err.count("\n") == 1


def test_a_missing_tracker_package_is_one_line_before_training(tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    run = tmp_path / "run"
    assert (
        cli("train", "identity-lora", "--set", "report_to=wandb", "--set", f"output_dir={run}") == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "pip install wandb" in err
    assert not run.exists()
