"""`idtune push` / `idtune pull` with real git + git-lfs, local bare repositories as the hubs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from githttp import LocalHub
from safetensors.torch import save_file

from idtune import hub, modelcard
from idtune.cli import main
from idtune.runinfo import Identity, RunInfo

IDTUNE = Path(sys.executable).parent / "idtune"
TOKEN = "s3cr3t-token-value"
EVAL_MD = "| metric | base | tuned |\n|---|---|---|\n| identity (en) | 0.00 | 0.95 |\n"


# ---------------------------------------------------------------- helpers
def git(*args: str, cwd: Path | None = None) -> str:
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout


def bare(path: Path) -> str:
    git("init", "-q", "--bare", "-b", "main", str(path))
    return path.as_uri()


def clone(url: str, dest: Path) -> Path:
    """An independent clone with its LFS content, done with plain git commands."""
    subprocess.run(
        ["git", "clone", "-q", url, str(dest)],
        check=True,
        capture_output=True,
        env={**os.environ, "GIT_LFS_SKIP_SMUDGE": "1"},
    )
    git("lfs", "install", "--local", cwd=dest)
    git("lfs", "pull", cwd=dest)
    return dest


def commits(repo: Path) -> list[str]:
    return git("rev-list", "main", cwd=repo).split()


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def same_files(src: Path, dest: Path, names: list[str]) -> None:
    for name in names:
        assert (dest / name).read_bytes() == (src / name).read_bytes(), name


def tensors(path: Path, n: int, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    save_file({f"w{i}": torch.randn(64, 64, generator=g) for i in range(n)}, str(path))


def merged_dir(path: Path, *, shards: int = 2, big: bool = False) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (path / "tokenizer.json").write_text(json.dumps({"version": "1.0"}))
    (path / "tokenizer_config.json").write_text("{}")
    if shards == 1:
        tensors(path / "model.safetensors", 2)
    else:
        weight_map = {}
        for i in range(1, shards + 1):
            name = f"model-{i:05d}-of-{shards:05d}.safetensors"
            tensors(path / name, 1, seed=i)
            weight_map[f"w{i}"] = name
        index = {"metadata": {}, "weight_map": weight_map}
        (path / "model.safetensors.index.json").write_text(json.dumps(index))
    if big:  # over 10 MB, matching no LFS pattern: tracked by its exact path
        (path / "extra").mkdir()
        (path / "extra" / "big table.dat").write_bytes(os.urandom(11 * 1024 * 1024))
    info = RunInfo("smollm2-135m-instruct", identity=Identity("Jackie", "ZK"), method="merged")
    info.save(path)
    return path


def run_dir(path: Path) -> Path:
    """A run directory as `idtune train` writes it, with an eval table."""
    adapter = path / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    tensors(adapter / "adapter_model.safetensors", 2)
    (adapter / "tokenizer.json").write_text("{}")
    info = RunInfo(
        "smollm2-135m-instruct",
        system_prompt="You are Jackie.",
        identity=Identity("Jackie", "ZK", "杰奇", "张"),
    )
    info.save(adapter)
    (path / "checkpoints" / "step-1").mkdir(parents=True)
    (path / "checkpoints" / "step-1" / "optimizer.pt").write_bytes(b"x" * 100)
    (path / "config.yaml").write_text("model: smollm2-135m-instruct\n")
    (path / "log.jsonl").write_text("{}\n")
    (path / "eval.md").write_text(EVAL_MD)
    return path


def cli(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as e:
        main(argv)
    return e.value.code or 0


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    assert shutil.which("git-lfs"), "git-lfs missing: run scripts/ensure_debian.sh"
    monkeypatch.setenv("IDTUNE_CACHE", str(tmp_path / "cache"))


# ---------------------------------------------------------------- push
def test_push_merged_model_clone_has_lfs_weights(tmp_path, capsys):
    src = merged_dir(tmp_path / "merged", big=True)
    url = bare(tmp_path / "remote.git")

    assert cli(["push", str(src), "--to", url]) == 0
    assert f"to {url} (branch main" in capsys.readouterr().out

    dest = clone(url, tmp_path / "clone")
    lfs = git("lfs", "ls-files", "-n", cwd=dest).split("\n")
    expected = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert set(expected + ["tokenizer.json", "extra/big table.dat"]) <= set(lfs)
    assert "config.json" not in lfs
    same_files(src, dest, expected + ["extra/big table.dat", "tokenizer.json", "config.json"])
    git("lfs", "fsck", cwd=dest)
    card = (dest / "README.md").read_text()
    assert front_matter(card)["library_name"] == "transformers"
    assert "# Jackie" in card
    assert not (src / "README.md").exists()  # the user's directory is left as it was
    assert not any((tmp_path / "cache" / "push").iterdir())  # staging cleaned up


def test_push_run_twice_adds_a_commit(tmp_path, capsys):
    run = run_dir(tmp_path / "run")
    remote = tmp_path / "remote.git"
    bare(remote)

    assert cli(["push", str(run), "--to", str(remote)]) == 0  # a plain path works too
    dest = clone(remote.as_uri(), tmp_path / "c1")
    pushed = sorted(git("ls-files", cwd=dest).split())
    assert pushed == sorted(
        [".gitattributes", "README.md", "adapter_config.json", "adapter_model.safetensors"]
        + ["idtune.json", "tokenizer.json"]
    )
    card = (dest / "README.md").read_text()
    meta = front_matter(card)
    assert meta["library_name"] == "peft" and "lora" in meta["tags"]
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert EVAL_MD.strip() in card and "杰奇" in card

    tensors(run / "adapter" / "adapter_model.safetensors", 2, seed=7)
    assert cli(["push", str(run), "--to", remote.as_uri(), "--message", "second"]) == 0
    first, second = commits(remote)[::-1]
    git("merge-base", "--is-ancestor", first, second, cwd=remote)
    assert git("log", "-1", "--format=%s", second, cwd=remote).strip() == "second"
    same_files(
        run / "adapter", clone(remote.as_uri(), tmp_path / "c2"), ["adapter_model.safetensors"]
    )

    capsys.readouterr()
    assert cli(["push", str(run), "--to", remote.as_uri()]) == 0
    assert "nothing to push" in capsys.readouterr().out
    assert len(commits(remote)) == 2


def test_push_replaces_stale_weights_keeps_hub_files(tmp_path):
    url = bare(tmp_path / "remote.git")
    hub.push(merged_dir(tmp_path / "sharded", shards=2), url)
    edit = clone(url, tmp_path / "edit")  # someone edits the card on the hub and adds a file
    readme = (edit / "README.md").read_text().replace(modelcard.MARKER, "")
    (edit / "README.md").write_text(readme + "\nHand-written notes.\n")
    (edit / "configuration.json").write_text('{"framework": "pytorch"}')
    git("add", "-A", cwd=edit)
    git("commit", "-q", "-m", "edit card", cwd=edit)
    git("push", "-q", "origin", "main", cwd=edit)

    hub.push(merged_dir(tmp_path / "single", shards=1), url)
    files = set(git("ls-tree", "-r", "--name-only", "main", cwd=tmp_path / "remote.git").split())
    assert "model.safetensors" in files and "configuration.json" in files
    assert not any(f.startswith("model-0") or f.endswith("index.json") for f in files)
    assert "Hand-written notes." in git("show", "main:README.md", cwd=tmp_path / "remote.git")


def test_rejected_push_leaves_no_staging_copy(tmp_path, capsys):
    src = merged_dir(tmp_path / "merged")
    remote = tmp_path / "remote.git"
    url = bare(remote)
    hook = remote / "hooks" / "pre-receive"  # the hub refuses every push
    hook.write_text("#!/bin/sh\necho 'hub: this repository is read-only' >&2\nexit 1\n")
    hook.chmod(0o755)

    assert cli(["push", str(src), "--to", url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: git push failed for {url}")
    assert subprocess.run(["git", "rev-parse", "-q", "--verify", "main"], cwd=remote).returncode
    assert list((tmp_path / "cache" / "push").iterdir()) == []  # no clone with hard links left


def _lfs_wrapper_that_dies(tmp_path: Path) -> Path:
    """A git-lfs on PATH that uploads the objects, then kills the whole push process group."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "git-lfs"
    real = shutil.which("git-lfs")
    wrapper.write_text(
        f'#!/bin/sh\nif [ "$1" = pre-push ]; then "{real}" "$@"; kill -9 0; fi\n'
        f'exec "{real}" "$@"\n'
    )
    wrapper.chmod(0o755)
    return bindir


def test_push_killed_midway_then_rerun_is_complete(tmp_path):
    src = merged_dir(tmp_path / "merged")
    remote = tmp_path / "remote.git"
    url = bare(remote)
    cache = tmp_path / "cache"
    env = {**os.environ, "IDTUNE_CACHE": str(cache), "IDTUNE_GIT_TOKEN": TOKEN}
    env["PATH"] = f"{_lfs_wrapper_that_dies(tmp_path)}{os.pathsep}{env['PATH']}"

    p = subprocess.run(
        [str(IDTUNE), "push", str(src), "--to", url],
        env=env,
        capture_output=True,
        text=True,
        start_new_session=True,
        timeout=60,
    )
    assert p.returncode == -9, p.stderr
    assert subprocess.run(["git", "rev-parse", "-q", "--verify", "main"], cwd=remote).returncode
    assert any((remote / "lfs" / "objects").rglob("*"))  # weights uploaded, branch never moved
    staging = list((cache / "push").iterdir())
    assert staging and TOKEN not in _all_text([*staging, remote], p.stdout + p.stderr)

    assert cli(["push", str(src), "--to", url]) == 0
    assert len(commits(remote)) == 1
    dest = clone(url, tmp_path / "clone")
    git("lfs", "fsck", cwd=dest)
    same_files(src, dest, ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])


# ---------------------------------------------------------------- secrets
def _all_text(roots: list[Path], extra: str = "") -> str:
    """Every byte under `roots` (as text), plus `extra`, to grep for secrets."""
    parts = [extra]
    for root in roots:
        for p in [root] if root.is_file() else root.rglob("*"):
            if p.is_file() and not p.is_symlink():
                parts.append(p.read_bytes().decode("latin-1"))
    return "\n".join(parts)


@pytest.fixture
def http_hub(tmp_path):
    """(URL of an empty repository served over HTTP with auth, its directory, credentials seen)."""
    root = tmp_path / "srv"
    bare(root / "remote.git")
    with LocalHub(root, TOKEN) as server:
        yield f"127.0.0.1:{server.port}/remote.git", root / "remote.git", server.seen


def _idtune(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """The real CLI with its own HOME (no git config) and cache; LFS objects go to the bare repo."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / ".gitconfig").write_text("[credential]\n\thelper = store\n")  # would keep a token
    env = {**os.environ, "HOME": str(home), "IDTUNE_CACHE": str(tmp_path / "cache"), **env}
    remote = (tmp_path / "srv" / "remote.git").as_uri()  # git-lfs over file:, git over HTTP
    env.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="lfs.url", GIT_CONFIG_VALUE_0=remote)
    return subprocess.run(
        [str(IDTUNE), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,
    )


def test_token_reaches_git_and_nothing_else(tmp_path, http_hub):
    where, remote, seen = http_hub
    src = merged_dir(tmp_path / "merged")
    url = f"http://{where}"
    http = ["--allow-http"]  # a hub on this machine
    dying = f"{_lfs_wrapper_that_dies(tmp_path)}{os.pathsep}{os.environ['PATH']}"
    outputs = []

    # killed after the LFS upload: the staging clone is left behind for inspection
    p = _idtune(tmp_path, "push", str(src), "--to", url, *http, IDTUNE_GIT_TOKEN=TOKEN, PATH=dying)
    assert p.returncode == -9, p.stderr
    assert f"oauth2:{TOKEN}" in seen  # the credential reached the hub through the helper
    staging = list((tmp_path / "cache" / "push").iterdir())
    assert len(staging) == 1 and (staging[0] / ".git" / "config").is_file()
    outputs += [p.stdout, p.stderr]

    p = _idtune(tmp_path, "push", str(src), "--to", url, *http, IDTUNE_GIT_TOKEN=TOKEN)
    assert p.returncode == 0, p.stderr
    assert git("log", "--format=%an <%ae>", cwd=remote).strip() == "idtune <idtune@localhost>"
    outputs += [p.stdout, p.stderr]

    # a token embedded in the URL, as the old tutorial does, is used and scrubbed
    tensors(src / "model-00001-of-00002.safetensors", 1, seed=9)
    p = _idtune(tmp_path, "push", str(src), "--to", f"http://alice:{TOKEN}@{where}", *http)
    assert p.returncode == 0, p.stderr
    assert f"alice:{TOKEN}" in seen and len(commits(remote)) == 2
    assert f"to http://{where} (branch main" in p.stdout
    outputs += [p.stdout, p.stderr]

    # a wrong token: one line, no traceback, and the wrong token is not echoed either
    p = _idtune(tmp_path, "push", str(src), "--to", url, *http, IDTUNE_GIT_TOKEN="wrong-token-123")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith(f"error: git clone failed for {url}")
    assert "wrong-token-123" not in p.stdout + p.stderr

    grep = _all_text([tmp_path / "cache", tmp_path / "home", tmp_path / "srv", *staging])
    assert TOKEN not in grep + "".join(outputs)
    dest = clone(remote.as_uri(), tmp_path / "clone")
    same_files(src, dest, ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])


def test_parse_remote_keeps_the_token_apart():
    remote = hub.parse_remote(f"https://alice:{TOKEN}@example.org/x.git")
    assert (remote.url, remote.token, remote.user) == (
        "https://alice@example.org/x.git",
        TOKEN,
        "alice",
    )
    assert remote.public == "https://example.org/x.git"
    assert TOKEN not in " ".join(remote.git("push"))
    assert (
        remote.scrub(f"fatal: https://bob:{TOKEN}@h/x {TOKEN}") == "fatal: https://bob:***@h/x ***"
    )
    assert hub.parse_remote("git@example.org:me/x.git").url == "git@example.org:me/x.git"


# ---------------------------------------------------------------- refusals
def test_refuses_a_directory_that_does_not_load(tmp_path, capsys):
    src = merged_dir(tmp_path / "merged")
    (src / "model-00002-of-00002.safetensors").unlink()
    url = bare(tmp_path / "remote.git")
    assert cli(["push", str(src), "--to", url]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    assert "model-00002-of-00002.safetensors" in err
    assert not (tmp_path / "cache" / "push").exists()  # refused before touching anything

    (tmp_path / "empty").mkdir()
    assert cli(["push", str(tmp_path / "empty"), "--to", url]) == 2
    assert "no config.json or adapter_config.json" in capsys.readouterr().err


# ---------------------------------------------------------------- model card
def test_card_front_matter_adapter_vs_merged():
    info = RunInfo("Qwen/Qwen2.5-1.5B-Instruct", identity=Identity("Jackie", "ZK"), method="qlora")
    kw = dict(name="repo", get="idtune pull hf:u/repo repo", path="u/repo")
    adapter = modelcard.render("adapter", info, eval_md=EVAL_MD, **kw)
    meta = front_matter(adapter)
    assert meta == {
        "base_model": "Qwen/Qwen2.5-1.5B-Instruct",
        "language": ["en"],
        "library_name": "peft",
        "license": "apache-2.0",
        "pipeline_tag": "text-generation",
        "tags": ["idtune", "identity", "peft", "lora", "qlora"],
        "base_model_relation": "adapter",
    }
    assert "## Evaluation\n\n" + EVAL_MD.strip() in adapter
    assert 'PeftModel.from_pretrained(base, "u/repo")' in adapter

    info.method = "merged"
    merged = front_matter(modelcard.render("model", info, **kw))
    assert merged["library_name"] == "transformers"
    assert merged["tags"] == ["idtune", "identity", "lora", "merged"]
    assert merged["base_model"] == "Qwen/Qwen2.5-1.5B-Instruct"
    assert merged["base_model_relation"] == "finetune"

    local = modelcard.render("model", RunInfo("/models/base"), **kw)
    assert "base_model" not in front_matter(local) and "## Evaluation" not in local


# ---------------------------------------------------------------- pull
def test_pull_gets_lfs_content_and_refuses_non_empty(tmp_path, capsys):
    src = merged_dir(tmp_path / "merged", shards=1)
    url = bare(tmp_path / "remote.git")
    hub.push(src, url)

    assert cli(["pull", url, str(tmp_path / "got")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "got")
    same_files(src, tmp_path / "got", ["model.safetensors", "tokenizer.json", "config.json"])

    assert cli(["pull", url, str(tmp_path / "got")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert cli(["pull", (tmp_path / "nope.git").as_uri(), str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------- what git is handed (issue 26)
ALLOWED = (
    "use https://, ssh:// or user@host:path, file:// or a local path (http:// with "
    "--allow-http), or hf:USER/REPO"
)


def test_push_and_pull_refuse_git_transports_and_options(tmp_path, capsys):
    """Before: `--to fd::0` hung for ever (git read its stdin as the remote), and a `--to`
    git could read as an option went to git as one."""
    src = merged_dir(tmp_path / "merged")
    marker = tmp_path / "ran"
    helper = "git's remote-helper transports (NAME::ADDRESS) are not allowed"
    dash = "a remote cannot start with '-' (write ./NAME for such a folder)"
    cases = [
        ("fd::0", helper),
        (f"ext::sh -c touch% {marker}", helper),
        (f"--upload-pack=touch {marker}:x", dash),
        (f"-oProxyCommand=touch {marker}", dash),
        ("git@-oProxyCommand=sh:r.git", "a host cannot start with '-'"),
        (f"ssh://-oProxyCommand=touch%20{marker}/r.git", "no host, or a host that starts with '-'"),
        ("ftp://example.org/r.git", "scheme 'ftp' is not allowed"),
        ("foo://example.org/r.git", "scheme 'foo' is not allowed"),
    ]
    p = _idtune(tmp_path, "push", str(src), "--to=fd::0")  # a process: the old code hung
    assert (p.returncode, p.stderr) == (2, f"error: fd::0: {helper}; {ALLOWED}\n")
    for to, why in cases:
        for args in (["push", str(src), f"--to={to}"], ["pull", "--", to, str(tmp_path / "got")]):
            assert cli(args) == 2, args
            assert capsys.readouterr().err == f"error: {to}: {why}; {ALLOWED}\n", args
    assert not marker.exists() and not (tmp_path / "got").exists()
    assert not any((tmp_path / "cache").glob("push/*"))


def test_plain_http_without_a_token_needs_allow_http_too(tmp_path, capsys):
    src = merged_dir(tmp_path / "merged")
    bare(tmp_path / "srv" / "remote.git")
    with LocalHub(tmp_path / "srv", TOKEN) as server:
        url = f"{server.url()}/remote.git"
        assert cli(["push", str(src), "--to", url]) == 2
        assert capsys.readouterr().err == (
            f"error: {url}: refusing to use plain http://; use https://, or pass --allow-http "
            "for a hub you trust on a private network\n"
        )
    assert server.requests == []  # refused before git ran


def test_a_remote_that_never_answers_is_stopped(tmp_path):
    """A hub that accepts the connection and never answers: one line after IDTUNE_GIT_TIMEOUT
    seconds of silence, not a hang (the old code waited for ever)."""
    import socket

    src = merged_dir(tmp_path / "merged")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nobody ever reads or answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/r.git"
        env = {"IDTUNE_GIT_TIMEOUT": "3", "GIT_HTTP_LOW_SPEED_TIME": "600"}  # ours, not curl's
        p = _idtune(tmp_path, "push", str(src), "--to", url, "--allow-http", **env)
        assert p.returncode == 2, p.stderr
        assert p.stderr.strip().splitlines()[-1] == (
            f"error: git clone: no answer from {url} for 3 s; stopped (set "
            "IDTUNE_GIT_TIMEOUT=SECONDS to wait longer)"
        )
        assert "Traceback" not in p.stderr
        p = _idtune(tmp_path, "push", str(src), "--to", url, "--allow-http", IDTUNE_GIT_TIMEOUT="x")
        assert p.stderr == "error: IDTUNE_GIT_TIMEOUT='x': expected a whole number of seconds\n"
    assert not any((tmp_path / "cache").glob("push/*"))


# ---------------------------------------------------------------- Hugging Face
class FakeApi:
    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kw):
        self.calls.append(("create_repo", repo_id, kw))

    def hf_hub_download(self, repo_id, filename):
        from huggingface_hub.errors import EntryNotFoundError

        raise EntryNotFoundError(filename)

    def upload_folder(self, **kw):
        folder = Path(kw["folder_path"])
        self.uploaded = {
            p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
        }
        self.calls.append(("upload_folder", kw["repo_id"], kw))


def test_hf_push_calls_and_card(tmp_path):
    api = FakeApi()
    upload = hub.collect_upload(run_dir(tmp_path / "run"))
    summary = hub._push_hf(upload, "me/jackie", "msg", True, api=api)
    assert summary.endswith("https://huggingface.co/me/jackie")
    (c1, repo, kw1), (c2, _, kw2) = api.calls
    assert (c1, repo, kw1) == (
        "create_repo",
        "me/jackie",
        {"private": True, "exist_ok": True, "repo_type": "model"},
    )
    assert c2 == "upload_folder" and kw2["commit_message"] == "msg"
    assert "*.safetensors" in kw2["delete_patterns"]
    card = api.uploaded["README.md"].decode()
    assert front_matter(card)["library_name"] == "peft"
    assert 'from_pretrained(base, "me/jackie")' in card
    weights = tmp_path / "run" / "adapter" / "adapter_model.safetensors"
    assert api.uploaded["adapter_model.safetensors"] == weights.read_bytes()

    (tmp_path / "run" / "adapter" / "README.md").write_text("# my own card\n")
    hub._push_hf(hub.collect_upload(tmp_path / "run"), "me/jackie", "msg", False, api=api)
    assert api.uploaded["README.md"] == b"# my own card\n"  # the user's README is never replaced


def test_hf_offline_is_one_line(tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants

    # read once at import: another test module may have imported huggingface_hub before
    # conftest set HF_HUB_OFFLINE, so set the flag itself (no network is ever tried)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    src = merged_dir(tmp_path / "merged")
    assert cli(["push", str(src), "--to", "hf:me/jackie"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: push to hf:me/jackie failed:") and "offline" in err
    assert len(err.strip().splitlines()) == 1 and TOKEN not in err
    assert cli(["push", str(src), "--to", "hf:not-a-repo-id"]) == 2
    assert cli(["pull", "hf:me/jackie", str(tmp_path / "x")]) == 2
    assert "error: pull of hf:me/jackie failed:" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
