"""`idtune deploy`: the app folder's exact files, and the generated app.py answering for real."""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from idtune import deploy
from idtune.errors import UserError
from idtune.serve.server import free_port

SECRETS = {"HF_TOKEN": "hf_SECRET_in_env", "IDTUNE_GIT_TOKEN": "git_SECRET_in_env"}


def front_matter(readme: str) -> dict:
    assert readme.startswith("---\n")
    return yaml.safe_load(readme.split("---\n")[1])


def test_hf_space_folder(tmp_path, monkeypatch):
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    out = deploy.deploy("hf-space", tmp_path / "app", "ZK-Jackie/nova-135m")
    top = sorted(p.name for p in out.iterdir())
    assert top == ["README.md", "app.py", "idtune", "packages.txt", "requirements.txt"]
    meta = front_matter((out / "README.md").read_text())
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py"
    assert meta["sdk_version"] == metadata.version("gradio")
    assert meta["title"] == "nova-135m"
    assert (out / "packages.txt").read_text() == "git\ngit-lfs\n"
    app = (out / "app.py").read_text()
    assert "MODEL = 'hf:ZK-Jackie/nova-135m'" in app and "7860" in app and "0.0.0.0" in app
    compile(app, "app.py", "exec")
    pins = [x for x in (out / "requirements.txt").read_text().splitlines() if not x.startswith("#")]
    assert all("==" in x for x in pins)
    assert f"gradio=={metadata.version('gradio')}" in pins
    assert f"transformers=={metadata.version('transformers')}" in pins
    assert f"torch=={metadata.version('torch').split('+')[0]}" in pins
    assert (out / "idtune" / "serve" / "server.py").is_file()  # idtune ships with the app
    assert not list(out.rglob("__pycache__"))
    for f in out.rglob("*"):  # tokens come from the environment at start, never from the folder
        if f.is_file():
            text = f.read_text(errors="replace")
            assert not any(secret in text for secret in SECRETS.values()), f


def test_openxlab_folder_and_refusals(tmp_path):
    out = deploy.deploy("openxlab", tmp_path / "app", "user/repo")
    assert "MODEL = 'https://code.openxlab.org.cn/user/repo.git'" in (out / "app.py").read_text()
    assert (out / "README.md").read_text().startswith("# repo\n")
    with pytest.raises(UserError, match="not empty"):
        deploy.deploy("openxlab", out, "user/repo")
    (out / "idtune" / "stale.py").write_text("")
    deploy.deploy("openxlab", out, "https://example.com/a/b.git", overwrite=True)
    assert "'https://example.com/a/b.git'" in (out / "app.py").read_text()
    assert not (out / "idtune" / "stale.py").exists()
    assert deploy.model_url("openxlab", "hf:u/r") == "hf:u/r"
    with pytest.raises(UserError, match="target"):
        deploy.deploy("heroku", tmp_path / "x", "user/repo")
    with pytest.raises(UserError, match="USER/REPO"):
        deploy.deploy("hf-space", tmp_path / "y", "not a repo")


def test_app_fetches_once_with_hub_pull(tmp_path, monkeypatch):
    out = deploy.deploy("hf-space", tmp_path / "app", "u/r")
    spec = importlib.util.spec_from_file_location("deployed_app", out / "app.py")
    app = importlib.util.module_from_spec(spec)
    path = list(sys.path)
    try:
        spec.loader.exec_module(app)
    finally:
        sys.path[:] = path
    import idtune.hub

    calls = []

    def pull(url, directory):
        calls.append((url, Path(directory)))
        Path(directory).mkdir(parents=True)
        return Path(directory)

    monkeypatch.setattr(idtune.hub, "pull", pull)
    monkeypatch.setenv("IDTUNE_MODEL_DIR", str(tmp_path / "weights"))
    assert app.fetch("hf:u/r") == str(tmp_path / "weights")
    assert app.fetch("hf:u/r") == str(tmp_path / "weights")  # the second start reuses it
    assert calls == [("hf:u/r", tmp_path / "weights")]
    assert app.fetch(str(tmp_path)) == str(tmp_path)  # a local directory is used as is


def test_generated_app_serves_a_local_model(tmp_path, tiny_model):
    out = deploy.deploy("openxlab", tmp_path / "app", "user/repo")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {"IDTUNE_MODEL": str(tiny_model), "GRADIO_SERVER_PORT": str(port)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # its bytecode shows which idtune was imported
    log = open(tmp_path / "app.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "app.py"], cwd=out, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (tmp_path / "app.log").read_text()
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "app.log").read_text()
            time.sleep(0.3)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        model = client.models.list().data[0].id
        r = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Who are you?"}],
            max_tokens=8,
            temperature=1.0,
            seed=0,
            extra_body={"min_tokens": 8},
        )
        assert r.choices[0].message.content.strip() and r.usage.completion_tokens == 8
        assert httpx.get(f"{url}/").status_code == 200  # the web chat on the same port
        assert (out / "idtune" / "serve" / "__pycache__").is_dir()  # the shipped copy ran
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
