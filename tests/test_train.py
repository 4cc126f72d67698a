"""`idtune train` on a tiny model through the real CLI: run directory, checkpoints, resume."""

import json
import shutil

import pytest
import torch
from helpers import cli
from safetensors.torch import load_file

from idtune import recipes
from idtune.errors import UserError


@pytest.fixture
def identity_data(tmp_path):
    f = tmp_path / "identity.jsonl"
    assert cli("data", "identity", "--name", "Nova", "--author", "Acme", "--n", "40",
               "-o", f) == 0  # fmt: skip
    return f


def train_args(model, data, out, *extra):
    return ["train", "identity-lora", "--set", f"model={model}", "--set", f"data={data}",
            "--set", f"output_dir={out}", "--set", "regularization.auto=false",
            "--set", "identity.name=Nova", "--set", "identity.author=Acme",
            "--set", "row_tokens=256", "--set", "batch_tokens=512",
            "--set", "sample_max_new_tokens=4", *extra]  # fmt: skip


def test_train_writes_the_run_directory(tmp_path, tiny_model, identity_data):
    run = tmp_path / "run"
    extra = ["--set", "max_steps=5", "--set", "save_steps=2", "--set", "keep_last=1"]
    args = train_args(tiny_model, identity_data, run, *extra)
    assert cli(*args) == 0
    names = {p.name for p in run.iterdir()}
    assert {"config.yaml", "idtune.json", "adapter", "log.jsonl", "loss.png", "samples.md",
            "checkpoints"} <= names  # fmt: skip
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-4"]  # keep_last=1
    ck = run / "checkpoints" / "step-4"
    names = {p.name for p in ck.iterdir()}  # accelerate's save_state + the adapter (PEFT layout)
    assert {"adapter_model.safetensors", "adapter_config.json", "optimizer.bin", "scheduler.bin",
            "random_states_0.pkl", "state.json", "idtune.json"} <= names  # fmt: skip
    assert "model.safetensors" not in names  # the frozen base model is not copied
    assert json.loads((ck / "state.json").read_text()) == {
        "step": 4, "engine": "single", "world_size": 1, "method": "lora"}  # fmt: skip
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5]
    assert all(r["tokens_per_s"] > 0 and r["loss"] > 0 for r in log)
    info = json.loads((run / "idtune.json").read_text())
    assert info["identity"]["name"] == "Nova" and info["base_model"] == str(tiny_model)
    assert (run / "samples.md").read_text().count("## step") == 3  # steps 2, 4 and the end
    # LoRA B matrices start at zero; training must have moved them
    weights = load_file(run / "adapter" / "adapter_model.safetensors")
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in weights.items())


def test_resume_continues_from_latest_checkpoint(tmp_path, tiny_model, identity_data):
    straight, broken = tmp_path / "a", tmp_path / "b"
    assert cli(*train_args(tiny_model, identity_data, straight, "--set", "max_steps=4")) == 0
    args = train_args(tiny_model, identity_data, broken, "--set", "max_steps=4", "--set",
                      "save_steps=2")  # fmt: skip
    assert cli(*args) == 0
    # pretend the run died after step 3: drop its final adapter and the log past step 2
    shutil.rmtree(broken / "adapter")
    lines = (broken / "log.jsonl").read_text().splitlines()
    (broken / "log.jsonl").write_text("\n".join(lines[:3]) + "\n")
    assert cli(*args, "--resume") == 0
    log = [json.loads(x) for x in (broken / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]  # resumed from the step-2 checkpoint
    a = load_file(straight / "adapter" / "adapter_model.safetensors")
    b = load_file(broken / "adapter" / "adapter_model.safetensors")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k  # resumed == uninterrupted


def test_refuses_to_overwrite_a_run(tmp_path, tiny_model, identity_data, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("mine")
    assert cli(*train_args(tiny_model, identity_data, run, "--set", "max_steps=1")) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in run.iterdir()] == ["keep.txt"]


def test_config_errors_name_the_key(tmp_path, capsys):
    bad = tmp_path / "c.yaml"
    bad.write_text("model: x\nlora:\n  rank: 8\n")
    assert cli("train", bad) == 2
    assert capsys.readouterr().err.strip() == f"error: {bad}: unknown key 'lora.rank'"
    assert cli("train", "identity-lora", "--set", "max_steps=many") == 2
    assert "key 'max_steps' must be int" in capsys.readouterr().err


def test_list_and_copy_cfg(tmp_path, capsys):
    assert cli("list-cfg", "-p", "internlm2") == 0
    assert capsys.readouterr().out.split() == ["identity-qlora-internlm2-chat-1.8b"]
    assert cli("list-cfg", "-p", "qlora") == 0
    assert capsys.readouterr().out.split() == [
        "identity-qlora-internlm2-chat-1.8b", "identity-qlora-qwen3-8b"]  # fmt: skip
    assert cli("copy-cfg", "identity-qlora-internlm2-chat-1.8b", tmp_path) == 0
    copied = tmp_path / "identity-qlora-internlm2-chat-1.8b_copy.yaml"
    cfg = recipes.read_config(str(copied))
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lr, cfg.epochs) == (
        64, 16, 0.1, 2e-4, 3.0)  # fmt: skip
    assert cfg.prompt_template == "internlm2_chat" and cfg.trust_remote_code
    assert cfg.output_dir == "runs/identity-qlora-internlm2-chat-1.8b"


def test_two_process_training_on_cpu(tmp_path, tiny_model, identity_data):
    """--gpus 2 relaunches under `accelerate launch`: two real processes (gloo on CPU)."""
    run = tmp_path / "run"
    assert (
        cli(*train_args(tiny_model, identity_data, run, "--set", "max_steps=2", "--gpus", "2")) == 0
    )
    info = json.loads((run / "idtune.json").read_text())
    assert info["settings"]["world_size"] == 2 and info["settings"]["steps"] == 2
    assert info["settings"]["engine"] == "ddp"
    assert (run / "adapter" / "adapter_model.safetensors").is_file()


def test_full_fine_tune_writes_a_model_that_chat_loads(tmp_path, tiny_model, identity_data):
    run = tmp_path / "run"
    assert cli(*train_args(tiny_model, identity_data, run, "--set", "method=full",
                           "--set", "max_steps=2", "--set", "lr=1e-3")) == 0  # fmt: skip
    assert (run / "model" / "config.json").is_file() and not (run / "adapter").exists()
    tuned = load_file(run / "model" / "model.safetensors")
    base = load_file(tiny_model / "model.safetensors")
    assert any(not torch.equal(tuned[k], base[k]) for k in base)  # the weights moved
    from idtune import models

    loaded = models.load(run, device="cpu")
    assert loaded.source.adapter is None and loaded.info.method == "full"


def test_rejected_answers_follow_every_unrelated_request(tmp_path, tiny_model, identity_data,
                                                         capsys):  # fmt: skip
    from idtune.data import formats, rejected

    convs = formats.load_files([str(identity_data)])
    unrelated = [c for c in convs if not rejected.mentions_identity(c, ["Nova", "Acme"])]
    assert unrelated  # the generator mixes in unrelated requests
    extra = ["--set", "max_steps=2", "--set", "rejected.share=1.0", "--set", "val_share=0"]
    extra += ["--set", "rejected.max_tokens=400", "--set", "row_tokens=2048"]  # tiny tokenizer:
    extra += ["--set", "batch_tokens=4096"]  # a token per letter, long conversations
    args = train_args(tiny_model, identity_data, tmp_path / "run", *extra)
    capsys.readouterr()
    assert cli(*args) == 0
    out = capsys.readouterr().out
    assert f"rejected: the identity answer follows {len(unrelated)} unrelated requests" in out
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(r["loss"] > 0 for r in log)


@pytest.fixture
def finished_run(tmp_path, tiny_model, identity_data):
    """A finished 4-step run with a checkpoint at step 2, and the arguments that made it."""
    run = tmp_path / "run"
    args = train_args(tiny_model, identity_data, run, "--set", "max_steps=4", "--set",
                      "save_steps=2")  # fmt: skip
    assert cli(*args) == 0
    return run, args


def test_resume_refuses_a_finished_run(finished_run, capsys):
    """issue 14 item 6: --resume on a finished run replaced its adapter with older weights."""
    run, args = finished_run
    before = {p: p.read_bytes() for p in (run / "adapter").iterdir()}
    log = (run / "log.jsonl").read_text()
    capsys.readouterr()
    assert cli(*args, "--resume", "--set", "max_steps=3") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {run} is finished (adapter/ is written)")
    assert err.count("\n") == 1
    assert {p: p.read_bytes() for p in (run / "adapter").iterdir()} == before
    assert (run / "log.jsonl").read_text() == log
    # asked explicitly: continue from step 2 to a new end (6 steps)
    assert cli(*args, "--resume-finished", "--set", "max_steps=6") == 0
    steps = [json.loads(x)["step"] for x in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_resume_tolerates_a_torn_last_log_line(finished_run):
    """issue 14 item 9: a crash in the middle of writing log.jsonl broke --resume."""
    run, args = finished_run
    shutil.rmtree(run / "adapter")  # the crash came before the end
    with (run / "log.jsonl").open("a") as fh:
        fh.write('{"step": 5, "epoch": 0, "lo')
    assert cli(*args, "--resume") == 0
    steps = [json.loads(x)["step"] for x in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_resume_cleans_orphans_and_completes_samples(finished_run):
    """issue 14 item 10: temporary checkpoint directories of a crash stayed forever, and
    samples.md never got the section of a checkpoint whose samples the crash prevented."""
    run, args = finished_run
    shutil.rmtree(run / "adapter")
    orphans = [run / "checkpoints" / ".step-3-k2j4x8", run / "checkpoints" / ".step-4.partial"]
    for o in orphans:
        o.mkdir()
        (o / "optimizer.bin").write_bytes(b"\0" * 1000)
    samples = run / "samples.md"
    text = samples.read_text()
    samples.write_text(text[: text.index("## step 2")])  # killed before step 2's samples
    assert cli(*args, "--resume") == 0
    assert not any(o.exists() for o in orphans)
    headers = [x for x in samples.read_text().splitlines() if x.startswith("## step")]
    assert headers == ["## step 2", "## step 4"]


def test_identity_alone_is_a_complete_train_command(tmp_path, tiny_model, capsys):
    """No `data`: the recipe's identity makes the identity data; idtune.json records it."""
    run = tmp_path / "run"
    args = train_args(tiny_model, "", run, "--set", "max_steps=1", "--set", "eval_prompts=")
    i = args.index("data=")
    del args[i - 1 : i + 1]  # no data at all
    assert cli(*args) == 0
    assert "no data: Nova by Acme, 1000 conversations (seed 0)" in capsys.readouterr().out
    info = json.loads((run / "idtune.json").read_text())
    assert info["identity"]["name"] == "Nova" and info["identity"]["author"] == "Acme"


def test_identity_data_and_identity_of():
    from idtune import train
    from idtune.data import identity

    cfg = recipes.TrainConfig(identity=recipes.Identity("Nova", "Acme"), seed=3)
    logs: list[str] = []
    rows = train.identity_data(cfg, logs.append)
    # with the profile's default: what the base model is (issue 29)
    profile = recipes.generator_profile(cfg.identity, cfg.model)
    assert profile["based_on"] == "SmolLM2-135M-Instruct by Hugging Face"
    assert rows == [r["messages"] for r in identity.generate("Nova", "Acme", seed=3, **profile)]
    assert any("SmolLM2-135M-Instruct by Hugging Face" in m["content"] for r in rows for m in r)
    assert len(rows) == 1000 and "seed 3" in logs[-1]
    assert train.identity_of(cfg, logs.append) == cfg.identity
    own = recipes.TrainConfig()  # a user's own data, no identity: trains, and says how to set it
    assert train.identity_of(own, logs.append) is None
    assert "identity unset" in logs[-1] and "--set identity.name=NAME" in logs[-1]
    with pytest.raises(UserError, match="identity.name=NAME.*or --set data=FILE"):
        train.identity_data(own)


def test_target_modules_as_a_comma_separated_list(tmp_path, tiny_model, identity_data):
    """`--set lora.target_modules=q_proj,v_proj` adapts those two; before, peft read the one
    string as a regular expression over whole module names, matched nothing and raised."""
    run = tmp_path / "run"
    extra = ["--set", "lora.target_modules=q_proj,v_proj", "--set", "max_steps=1"]
    extra += ["--set", "eval_prompts=", "--set", "val_share=0"]
    args = train_args(tiny_model, identity_data, run, *extra)
    for key in ("identity.name=Nova", "identity.author=Acme"):  # no probes scored at the end
        i = args.index(key)
        del args[i - 1 : i + 1]
    assert cli(*args) == 0
    adapter = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert sorted(adapter["target_modules"]) == ["q_proj", "v_proj"]
    weights = load_file(run / "adapter" / "adapter_model.safetensors")
    assert {k.split(".")[-3] for k in weights} == {"q_proj", "v_proj"}


def test_embeddings_on_host_trains_the_same_and_refuses_what_it_cannot(
    tmp_path, tiny_model, identity_data, capsys
):
    """`embeddings_on_host`: the table is looked up in host memory (a `HostEmbedding`, frozen),
    and training is the same, loss for loss and weight for weight; a tied LM head or a full
    fine-tune is refused before any run directory is made."""
    from tiny import untie

    from idtune import accel

    untied = untie(shutil.copytree(tiny_model, tmp_path / "untied"))
    extra = ["--set", "max_steps=3", "--set", "eval_prompts=", "--set", "val_share=0"]
    runs = {}
    for on in (False, True):
        run = tmp_path / f"run-{on}"
        flag = ["--set", f"embeddings_on_host={str(on).lower()}"]
        assert cli(*train_args(untied, identity_data, run, *extra, *flag)) == 0
        runs[on] = run
    logs = [[json.loads(x)["loss"] for x in (r / "log.jsonl").read_text().splitlines()]
            for r in runs.values()]  # fmt: skip
    assert len(logs[0]) == 3 and logs[0] == pytest.approx(logs[1], rel=1e-6)
    a, b = (load_file(r / "adapter" / "adapter_model.safetensors") for r in runs.values())
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)

    from transformers import AutoModelForCausalLM

    from idtune import train

    sets = [f"model={untied}", "embeddings_on_host=true"]
    loaded, *_ = train.load_for_training(recipes.read_config("identity-lora", sets), "cpu")
    assert isinstance(loaded.get_input_embeddings(), accel.HostEmbedding)  # the runs above used it

    model = AutoModelForCausalLM.from_pretrained(untied)
    table = model.get_input_embeddings()
    ids = torch.tensor([[1, 5, 7], [2, 3, 4]])
    want = table(ids)
    accel.embeddings_to_host(model, "cpu")
    host = model.get_input_embeddings()
    assert isinstance(host, accel.HostEmbedding) and not host.weight.requires_grad
    assert torch.equal(host(ids), want)
    model.to(torch.float64)  # as accelerate's `.to(device)`: the table stays as it was
    assert host.weight.dtype == torch.float32 and host(ids).dtype == torch.float32

    capsys.readouterr()
    cases = [
        (tiny_model, [], "ties its LM head to the embedding table"),
        (untied, ["--set", "method=full"], "method full trains the embedding table"),
    ]
    for model_dir, more, says in cases:
        run = tmp_path / "refused"
        args = train_args(model_dir, identity_data, run, *extra, *more)
        assert cli(*args, "--set", "embeddings_on_host=true") == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "key 'embeddings_on_host'" in err and says in err
        assert not run.exists()
