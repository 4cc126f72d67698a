"""`idtune push` and `idtune pull`: models and adapters to and from git + git-lfs hubs, or HF.

A git push clones the remote into a fresh staging directory in the idtune cache (pointers only,
no LFS downloads), puts the directory's files in (hard links where possible), tracks weights
and large files with git-lfs, commits on top of what is there and pushes without force. A
push that dies midway leaves the remote as it was, or with LFS objects but no new commit; the
next run starts over from a fresh clone and ends complete.

The token (`IDTUNE_GIT_TOKEN`, or one embedded in the URL) reaches git only through the
environment of each git command and a credential helper given with `-c`: it is in no URL, no
`.git/config`, no file, and is scrubbed from everything printed. The helper answers only for the
scheme and host[:port] of the URL the user named, so a redirect never carries it elsewhere, and
a token goes over plain http:// only with `--allow-http`. A refused or failed push leaves no
staging copy behind.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import selectors
import shutil
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from . import modelcard, runinfo
from .cache import cache_dir
from .errors import UserError

LFS_PATTERNS = [
    "*.safetensors",
    "*.bin",
    "*.gguf",
    "*.pt",
    "*.pth",
    "tokenizer.json",
    "tokenizer.model",
]
LARGE_FILE = 10 * 1024 * 1024  # anything larger goes through LFS, tracked by its exact path
# Weights are replaced as a set: remote files like these that the new upload lacks are deleted,
# so a stale `model.safetensors` never shadows new shards. Other remote files are kept.
WEIGHT_PATTERNS = ["*.safetensors", "*.bin", "*.gguf", "*.pt", "*.pth", "*.index.json"]
SKIP = {".git", ".cache", ".gitattributes", "__pycache__"}
# Answers git's (and git-lfs's) credential requests from the environment of the one command it
# is given to, and only for the scheme and host[:port] the user named: a redirect to another
# host, port or scheme gets no answer, so the token never follows it.
_HELPER = (
    '!f() { test "$1" = get || return 0; p=; h=; '
    'while IFS= read -r l && test -n "$l"; do case "$l" in '
    'protocol=*) p="${l#protocol=}";; host=*) h="${l#host=}";; esac; done; '
    'test "$p" = "$IDTUNE_GIT_PROTOCOL" && test "$h" = "$IDTUNE_GIT_HOST" || return 0; '
    'printf "username=%s\\npassword=%s\\n" "$IDTUNE_GIT_USER" "$IDTUNE_GIT_TOKEN"; }; f'
)


# ---------------------------------------------------------------- what is pushed
@dataclass
class Upload:
    """A directory resolved to the files that go up and what the card says about them."""

    root: Path  # the adapter/ of a run directory, else the directory itself
    kind: str  # "adapter" or "model"
    info: runinfo.RunInfo | None
    eval_md: str | None
    evals: dict | None  # eval.json
    files: dict[str, Path]  # path in the repository → file on disk

    @property
    def size(self) -> int:
        return sum(f.stat().st_size for f in self.files.values())


def check_loadable(directory: Path) -> str:
    """Return "adapter" or "model" when `directory` loads with PEFT / transformers; else raise."""
    d = Path(directory)
    if (d / "adapter_config.json").is_file():
        if not any((d / n).is_file() for n in ("adapter_model.safetensors", "adapter_model.bin")):
            raise UserError(f"{d}: adapter_config.json but no adapter_model.safetensors or .bin")
        return "adapter"
    if not (d / "config.json").is_file():
        raise UserError(
            f"{d} is not a loadable model or adapter: no config.json or adapter_config.json"
        )
    if any((d / n).is_file() for n in ("model.safetensors", "pytorch_model.bin")):
        return "model"
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (d / index).is_file():
            try:
                shards = sorted(set(json.loads((d / index).read_text())["weight_map"].values()))
            except (ValueError, KeyError, AttributeError) as e:
                raise UserError(f"{d / index} is not a valid weight index ({e})") from None
            missing = [s for s in shards if not (d / s).is_file()]
            if missing or not shards:
                raise UserError(
                    f"{d} is incomplete: shards named in {index} are missing: "
                    + (", ".join(missing) or "(none listed)")
                )
            return "model"
    raise UserError(
        f"{d}: config.json but no weights (model.safetensors, pytorch_model.bin or index)"
    )


def collect_upload(directory: Path) -> Upload:
    """What pushing `directory` uploads: a run directory pushes its `adapter/`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"{directory}: no such directory")
    root = directory / "adapter" if (directory / "adapter").is_dir() else directory
    kind = check_loadable(root)
    evals, eval_md = modelcard.read_eval(directory, root)
    files = {
        p.relative_to(root).as_posix(): p
        for p in sorted(root.rglob("*"))
        if p.is_file() and not SKIP.intersection(p.relative_to(root).parts)
    }
    card = root / "README.md"
    if card.is_file() and modelcard.is_replaceable(card.read_text(errors="replace")):
        del files["README.md"]  # idtune's local card or PEFT's blank one: written afresh below
    return Upload(root, kind, runinfo.read_info(directory), eval_md, evals, files)


def _matches(path: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(path.rsplit("/", 1)[-1], p) for p in patterns)


def _stage(upload: Upload, stage: Path) -> None:
    """Put the upload's files into `stage`, as hard links when on the same filesystem."""
    for rel, src in upload.files.items():
        dest = stage / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.unlink(missing_ok=True)
        try:
            os.link(src, dest)
        except OSError:
            shutil.copy2(src, dest)


def _card(upload: Upload, existing: str | None, *, name: str, get: str, path: str) -> str | None:
    """The card to write, or None to keep the user's README or one edited on the hub."""
    if "README.md" in upload.files or (
        existing is not None and not modelcard.is_replaceable(existing)
    ):
        return None
    return modelcard.render(
        upload.kind,
        upload.info,
        name=name,
        get=get,
        path=path,
        eval_md=upload.eval_md,
        evals=upload.evals,
    )


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


# ---------------------------------------------------------------- remotes and secrets
@dataclass
class Remote:
    """A git remote as git may see it (no password), with the credential kept apart."""

    url: str  # no password in it; passed to git and stored in .git/config
    token: str | None = None
    user: str = "oauth2"

    @property
    def public(self) -> str:
        """The URL without any user part, for cards and messages."""
        parts = urlsplit(self.url)
        if not parts.scheme or "@" not in parts.netloc:
            return self.url
        return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))

    def scrub(self, text: str) -> str:
        """`text` with every token this process knows replaced by ***."""
        for secret in (self.token, os.environ.get("IDTUNE_GIT_TOKEN"), os.environ.get("HF_TOKEN")):
            if secret:
                text = text.replace(secret, "***").replace(quote(secret, safe=""), "***")
        return re.sub(r"(://[^/\s:@]*):[^/\s@]*@", r"\1:***@", text)

    def git(self, *args: str) -> list[str]:
        """A git command line that can answer credential requests with the token."""
        if not self.token:
            return ["git", *args]
        return ["git", "-c", "credential.helper=", "-c", f"credential.helper={_HELPER}", *args]

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["GIT_TERMINAL_PROMPT"] = "0"  # a prompt nobody answers would wait forever
        env.setdefault("GIT_HTTP_LOW_SPEED_LIMIT", "1000")  # bytes/s; slower for…
        env.setdefault("GIT_HTTP_LOW_SPEED_TIME", str(git_timeout()))  # …this long: git stops
        if self.token:
            parts = urlsplit(self.url)
            env.update(IDTUNE_GIT_TOKEN=self.token, IDTUNE_GIT_USER=self.user)
            env.update(IDTUNE_GIT_PROTOCOL=parts.scheme, IDTUNE_GIT_HOST=_host(parts.netloc))
        return env

    def check_scheme(self, allow_http: bool) -> None:
        """Refuse plain http:// (a token on it above all) unless the user allowed it."""
        if urlsplit(self.url).scheme == "http" and not allow_http:
            what = "send a token over" if self.token else "use"
            raise UserError(
                f"{self.public}: refusing to {what} plain http://; use https://, "
                "or pass --allow-http for a hub you trust on a private network"
            )


def _host(netloc: str) -> str:
    """host[:port] of a URL's netloc, as git's credential protocol names it."""
    return netloc.rpartition("@")[2]


SCHEMES = ("https", "http", "ssh", "file")  # http only with --allow-http


def _refuse(url: str, why: str) -> UserError:
    shown = url if url.isprintable() and len(url) <= 200 else repr(url[:200])
    return UserError(
        f"{shown}: {why}; use https://, ssh:// or user@host:path, file:// or a local path "
        "(http:// with --allow-http), or hf:USER/REPO"
    )


def parse_remote(url: str) -> Remote:
    """Split a token out of `https://user:TOKEN@host/...`; make local paths `file://` URLs.

    Only https, http, ssh (`ssh://` and `user@host:path`) and file remotes are accepted: git's
    other transports (`fd::0`, `ext::COMMAND`, `helper::…`, `SCHEME://` of a remote helper) and
    anything git could read as an option are refused here, before git runs.
    """
    if not url or not url.isprintable():
        raise _refuse(url, "not a git URL")
    if url.startswith("-"):  # git would read it as an option
        raise _refuse(url, "a remote cannot start with '-' (write ./NAME for such a folder)")
    if "://" not in url:
        if re.match(r"^[A-Za-z0-9][A-Za-z0-9+.-]*::", url):
            raise _refuse(url, "git's remote-helper transports (NAME::ADDRESS) are not allowed")
        scp = re.match(r"^(?:([^@/]+)@)?([^/:]+):", url)
        if not Path(url).expanduser().exists() and scp:  # scp-like ssh: git@host:path
            if scp.group(2).startswith("-"):
                raise _refuse(url, "a host cannot start with '-'")
            return Remote(url)
        return Remote(Path(url).expanduser().resolve().as_uri())
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        raise _refuse(url, f"scheme {parts.scheme[:20]!r} is not allowed")
    if parts.scheme != "file" and (not parts.hostname or parts.netloc.rpartition("@")[2]
                                   .startswith("-")):  # fmt: skip
        raise _refuse(url, "no host, or a host that starts with '-'")
    env_user = os.environ.get("IDTUNE_GIT_USER")
    user = unquote(parts.username) if parts.username else None
    token = unquote(parts.password) if parts.password else os.environ.get("IDTUNE_GIT_TOKEN")
    host = _host(parts.netloc)
    netloc = f"{quote(user, safe='')}@{host}" if user else host
    clean = urlunsplit(parts._replace(netloc=netloc))
    if parts.scheme not in ("http", "https"):
        token = None  # ssh keys and local files need no token
    return Remote(clean, token or None, user or env_user or "oauth2")


DEFAULT_GIT_TIMEOUT = 300  # seconds a git command may go without a byte of output


def git_timeout() -> int:
    """How long a git command may stay silent before it is stopped: `IDTUNE_GIT_TIMEOUT`
    seconds, default 300 (clone, push and lfs print progress while data moves)."""
    raw = os.environ.get("IDTUNE_GIT_TIMEOUT", "").strip()
    try:
        seconds = int(raw) if raw else DEFAULT_GIT_TIMEOUT
    except ValueError:
        seconds = 0
    if seconds < 1:
        raise UserError(f"IDTUNE_GIT_TIMEOUT={raw[:40]!r}: expected a whole number of seconds")
    return seconds


def _run(
    remote: Remote,
    cmd: list[str],
    *,
    cwd: Path | None = None,
    live: bool = False,
    check: bool = True,
    what: str | None = None,
    env: dict[str, str] | None = None,
) -> tuple[int, str]:
    """Run a git command; with `live`, stream its (scrubbed) progress to stderr.

    git reads nothing from this process's stdin, and a command silent for `git_timeout()`
    seconds (a remote that accepts and never answers) is stopped: one line, not a hang."""
    full_env = {**remote.env, **(env or {})}
    what = what or next(a for a in cmd[1:] if not a.startswith("-") and "=" not in a)
    limit = git_timeout()
    stopped = UserError(
        f"git {what}: no answer from {remote.public} for {limit} s; stopped (set "
        "IDTUNE_GIT_TIMEOUT=SECONDS to wait longer)"
    )
    if not live:
        try:
            p = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True,
                               stdin=subprocess.DEVNULL, timeout=limit)  # fmt: skip
        except subprocess.TimeoutExpired:
            raise stopped from None
        rc, out = p.returncode, p.stdout + p.stderr
    else:
        tail: deque[str] = deque(maxlen=200)
        p2 = subprocess.Popen(
            cmd, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        buf = b""
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(p2.stdout, selectors.EVENT_READ)
                while True:
                    if not sel.select(limit):
                        raise stopped
                    chunk = os.read(p2.stdout.fileno(), 65536)
                    if not chunk:
                        break
                    *done, buf = re.split(rb"(?<=[\r\n])", buf + chunk)
                    for seg in done:
                        text = remote.scrub(seg.decode(errors="replace"))
                        tail.append(text)
                        sys.stderr.write(text)
                    sys.stderr.flush()
        except BaseException:  # stopped, or interrupted: git goes too
            p2.kill()
            p2.wait()
            raise
        finally:
            p2.stdout.close()
        tail.append(remote.scrub(buf.decode(errors="replace")))
        rc, out = p2.wait(), "".join(tail)
    if rc and check:
        _fail(what, out, remote)
    return rc, remote.scrub(out)


def _fail(what: str, output: str, remote: Remote) -> None:
    lines = [
        ln.strip() for ln in remote.scrub(output).replace("\r", "\n").splitlines() if ln.strip()
    ]
    if any("[rejected]" in ln for ln in lines):
        detail = "the remote got new commits while pushing; run the push again"
    else:
        errors = [ln for ln in lines if ln.lower().startswith(("fatal:", "error:"))]
        detail = (errors or lines or ["no output"])[0]
        detail = re.sub(r"^(fatal|error):\s*", "", detail, flags=re.I)
    auth = re.search(r"auth|username|password|credential|403|401", detail, re.I)
    hint = " (set IDTUNE_GIT_TOKEN to a token with access)" if auth and not remote.token else ""
    raise UserError(f"git {what} failed for {remote.public}: {detail}{hint}")


def _require_git_lfs() -> None:
    if shutil.which("git") is None:
        raise UserError("git is not installed (Debian: apt-get install git git-lfs)")
    if subprocess.run(["git", "lfs", "version"], capture_output=True).returncode:
        raise UserError("git-lfs is not installed (Debian: apt-get install git-lfs)")


def _hf_repo(url: str) -> str:
    repo_id = url.removeprefix("hf:")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
        raise UserError(f"{url}: expected hf:USER/REPO")
    return repo_id


def _first_line(e: BaseException, remote: Remote) -> str:
    text = remote.scrub(str(e)).strip().splitlines()
    return text[0] if text else type(e).__name__


# ---------------------------------------------------------------- push
def push(
    directory: Path,
    to: str,
    *,
    message: str | None = None,
    private: bool = False,
    allow_http: bool = False,
) -> str:
    """Upload a model, adapter or run directory with a model card; returns a one-line summary.

    `to` is a git URL (https, ssh, file://, a local path) or `hf:USER/REPO`; `private` only
    applies to a Hugging Face repository that does not exist yet. A token goes over plain
    http:// only with `allow_http`.
    """
    upload = collect_upload(Path(directory))
    message = message or f"Upload {upload.kind} with idtune"
    if to.startswith("hf:"):
        return _push_hf(upload, _hf_repo(to), message, private)
    remote = parse_remote(to)
    remote.check_scheme(allow_http)
    return _push_git(upload, remote, message)


def _fresh_stage(key: str) -> Path:
    """The staging directory for one remote; a leftover of an interrupted push is discarded."""
    stage = cache_dir() / "push" / hashlib.sha256(key.encode()).hexdigest()[:16]
    if stage.exists():
        shutil.rmtree(stage)
    stage.parent.mkdir(parents=True, exist_ok=True)
    return stage


def _push_git(upload: Upload, remote: Remote, message: str) -> str:
    _require_git_lfs()
    stage = _fresh_stage(remote.url)
    try:
        return _commit_and_push(upload, remote, message, stage)
    finally:  # pushed, refused or failed: no staging copy stays behind (a kill -9 may leave one)
        shutil.rmtree(stage, ignore_errors=True)


def _commit_and_push(upload: Upload, remote: Remote, message: str, stage: Path) -> str:
    skip_smudge = {"GIT_LFS_SKIP_SMUDGE": "1"}  # the old weights are not needed to commit on top
    _run(
        remote,
        remote.git(
            "-c", "init.defaultBranch=main", "clone", "--progress", "--", remote.url, str(stage)
        ),  # fmt: skip
        live=True,
        what="clone",
        env=skip_smudge,
    )

    def git(*args: str, **kw) -> tuple[int, str]:
        return _run(remote, remote.git(*args), cwd=stage, **kw)

    git("lfs", "install", "--local")
    rc, branch = git("symbolic-ref", "--short", "HEAD", check=False)
    branch = branch.strip() if rc == 0 else "main"
    tracked = git("ls-files", "-z", what="ls-files")[1].split("\0")
    stale = [f for f in tracked if f and f not in upload.files and _matches(f, WEIGHT_PATTERNS)]
    if stale:
        git("rm", "-q", "--", *stale)
    # Track before staging: `git lfs track` touches matching files, and staged ones are hard
    # links to the user's files.
    big = [
        r
        for r, p in upload.files.items()
        if p.stat().st_size > LARGE_FILE and not _matches(r, LFS_PATTERNS)
    ]
    git("lfs", "track", *LFS_PATTERNS)
    if big:
        git("lfs", "track", "--filename", "--", *big)
    _stage(upload, stage)
    readme = stage / "README.md"
    repo_name = remote.public.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git") or "model"
    card = _card(
        upload,
        readme.read_text(errors="replace") if readme.is_file() else None,
        name=repo_name,
        get=f"idtune pull {remote.public} {repo_name}",
        path=repo_name,
    )
    if card:
        readme.write_text(card)
    print(f"committing {len(upload.files)} files ({_human(upload.size)})", file=sys.stderr)
    git("add", "-A")
    if git("diff", "--cached", "--quiet", check=False)[0] == 0:
        return f"{remote.public} already has these files (branch {branch}); nothing to push"
    author = []
    for key, default in (("user.name", "idtune"), ("user.email", "idtune@localhost")):
        if git("config", key, check=False)[0]:
            author += ["-c", f"{key}={default}"]
    git(*author, "commit", "-q", "-m", message)
    sha = git("rev-parse", "--short", "HEAD")[1].strip()
    git("push", "--progress", "origin", f"HEAD:refs/heads/{branch}", live=True, what="push")
    return (
        f"pushed {len(upload.files)} files ({_human(upload.size)}) to {remote.public} "
        f"(branch {branch}, commit {sha})"
    )


def _push_hf(upload: Upload, repo_id: str, message: str, private: bool, api=None) -> str:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import EntryNotFoundError

    remote = Remote(f"hf:{repo_id}")
    api = api or HfApi(token=os.environ.get("HF_TOKEN"))
    stage = _fresh_stage(f"hf:{repo_id}")
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        _stage(upload, stage)
        try:
            existing = Path(api.hf_hub_download(repo_id, "README.md")).read_text(errors="replace")
        except EntryNotFoundError:
            existing = None
        name = repo_id.split("/")[1]
        card = _card(
            upload, existing, name=name, get=f"idtune pull hf:{repo_id} {name}", path=repo_id
        )
        if card:
            (stage / "README.md").write_text(card)
        api.upload_folder(
            repo_id=repo_id,
            folder_path=stage,
            commit_message=message,
            repo_type="model",
            delete_patterns=WEIGHT_PATTERNS,
        )
    except UserError:
        raise
    except Exception as e:  # network, auth, offline: one line, never a traceback or a token
        raise UserError(f"push to hf:{repo_id} failed: {_first_line(e, remote)}") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return (
        f"pushed {len(upload.files)} files ({_human(upload.size)}) to "
        f"https://huggingface.co/{repo_id}"
    )


# ---------------------------------------------------------------- pull
def pull(url: str, directory: Path, *, allow_http: bool = False) -> Path:
    """Download a model repository with its LFS content into a new (or empty) `directory`."""
    directory = Path(directory)
    if not url.startswith("hf:"):
        parse_remote(url).check_scheme(allow_http)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise UserError(f"{directory} is not empty; pull into a new directory")
    existed = directory.exists()
    try:
        if url.startswith("hf:"):
            _pull_hf(_hf_repo(url), directory)
        else:
            _require_git_lfs()
            remote = parse_remote(url)
            directory.parent.mkdir(parents=True, exist_ok=True)
            _run(
                remote,
                remote.git("clone", "--progress", "--", remote.url, str(directory)),
                live=True,
                what="clone",
                env={"GIT_LFS_SKIP_SMUDGE": "1"},
            )
            _run(remote, remote.git("lfs", "install", "--local"), cwd=directory)
            _run(remote, remote.git("lfs", "pull"), cwd=directory, live=True, what="lfs pull")
    except BaseException:  # no half-pulled directory left behind
        if directory.exists() and not existed:
            shutil.rmtree(directory)
        elif directory.exists():
            for p in directory.iterdir():
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        raise
    return directory


def _pull_hf(repo_id: str, directory: Path) -> None:
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(repo_id, local_dir=directory, token=os.environ.get("HF_TOKEN"))
    except Exception as e:
        raise UserError(f"pull of hf:{repo_id} failed: {_first_line(e, Remote(''))}") from None
