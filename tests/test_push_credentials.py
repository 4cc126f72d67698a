"""The push token reaches only the scheme, host and port the user named: real git against real
local HTTP hubs on 127.0.0.1 that record every credential they are sent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from githttp import LocalHub
from helpers import cli
from test_hub import TOKEN, bare, merged_dir

from idtune import hub

IDTUNE = Path(sys.executable).parent / "idtune"


def idtune(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """The real console script with its own HOME (no git config of the user's) and cache."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(home), "IDTUNE_CACHE": str(tmp_path / "cache"), **env}
    return subprocess.run(
        [str(IDTUNE), *map(str, args)], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IDTUNE_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize(
    "auth_first, other_host, token_in_url",
    [
        (False, "127.0.0.1", False),
        (False, "localhost", False),
        (False, "localhost", True),
        (True, "127.0.0.1", False),
    ],
    ids=["other-port", "other-host", "token-in-url", "after-auth"],
)
def test_token_does_not_follow_a_redirect_to_another_host(
    tmp_path, auth_first, other_host, token_in_url
):
    src = merged_dir(tmp_path / "merged")
    bare(tmp_path / "other" / "remote.git")  # a hub that would accept the push with the token
    (tmp_path / "named").mkdir()
    with LocalHub(tmp_path / "other", TOKEN) as other:
        redirect = other.url(other_host)
        with LocalHub(
            tmp_path / "named", TOKEN, redirect_to=redirect, auth_first=auth_first
        ) as named:
            where = named.url().removeprefix("http://") + "/remote.git"
            if token_in_url:
                p = idtune(
                    tmp_path, "push", src, "--to", f"http://me:{TOKEN}@{where}", "--allow-http"
                )
            else:
                url = f"http://{where}"
                p = idtune(
                    tmp_path, "push", src, "--to", url, "--allow-http", IDTUNE_GIT_TOKEN=TOKEN
                )

    assert other.requests, "git never followed the redirect: the test would prove nothing"
    assert not any(TOKEN in s for s in other.seen), other.seen
    assert (f"{'me' if token_in_url else 'oauth2'}:{TOKEN}" in named.seen) == auth_first
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("error: git clone failed for http://")
    assert TOKEN not in p.stdout + p.stderr
    refs = subprocess.run(["git", "rev-parse", "-q", "--verify", "main"], cwd=tmp_path / "other")
    assert refs.returncode  # nothing reached the other host
    assert not any((tmp_path / "cache" / "push").iterdir())


def test_plain_http_needs_allow_http(tmp_path, capsys, monkeypatch):
    src = merged_dir(tmp_path / "merged")
    bare(tmp_path / "srv" / "remote.git")
    with LocalHub(tmp_path / "srv", TOKEN) as server:
        url = f"{server.url()}/remote.git"
        monkeypatch.setenv("IDTUNE_GIT_TOKEN", TOKEN)
        assert cli("push", src, "--to", url) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {url}: refusing to send a token over plain http://")
        assert "--allow-http" in err and len(err.splitlines()) == 1
        assert cli("pull", url, tmp_path / "pulled") == 2
        assert "--allow-http" in capsys.readouterr().err
        monkeypatch.delenv("IDTUNE_GIT_TOKEN")
        assert cli("push", src, "--to", url.replace("://", f"://me:{TOKEN}@")) == 2
        assert TOKEN not in capsys.readouterr().err
    assert server.requests == []  # refused before anything was sent
    assert not (tmp_path / "pulled").exists()


def _fill(remote: hub.Remote, home: Path, protocol: str, host: str) -> str:
    """Ask git for a credential the way git and git-lfs do, through idtune's helper only."""
    env = {**remote.env, "HOME": str(home)}
    p = subprocess.run(
        remote.git("credential", "fill"),
        input=f"protocol={protocol}\nhost={host}\npath=x.git\n\n",
        env=env,
        capture_output=True,
        text=True,
    )
    return p.stdout if p.returncode == 0 else ""


def test_helper_answers_only_the_named_scheme_host_and_port(tmp_path):
    remote = hub.parse_remote(f"https://me:{TOKEN}@hub.example:8443/team/model.git")
    assert f"password={TOKEN}" in _fill(remote, tmp_path, "https", "hub.example:8443")
    for protocol, host in [
        ("http", "hub.example:8443"),  # a downgrade to plain http
        ("https", "hub.example"),  # another port
        ("https", "hub.example:8444"),
        ("https", "evil.example:8443"),  # another host
        ("https", "hub.example:8443.evil.example"),
    ]:
        assert TOKEN not in _fill(remote, tmp_path, protocol, host), (protocol, host)
