"""The studio's door and walls, tried as an attacker would (issue 26).

Raw HTTP (httpx) against a real `idtune studio` process on 127.0.0.1: nothing answers without a
login (the page, Gradio's upload, queue, call, info, config and file routes); the upload +
`/do_start` + trust_remote_code path to running uploaded code is closed; a wrong Host and another
site's Origin are refused. The steps behind the buttons: every path inside --runs, symlinks
included; no path key from "more settings"; a recipe file's values never shown;
trust_remote_code only once its files are confirmed. And the login in a real browser.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from idtune.errors import UserError
from idtune.ports import free_port
from idtune.studio import jobs, steps

PASSWORD = "security-test-password"
PASSWORD_ENV = "IDTUNE_STUDIO_PASSWORD"
STARTUP_S = 300  # last-resort bound on a studio's start (imports Gradio; a loaded 2-core CI)
IDENT = {"name": "Nova", "author": "Acme", "name_zh": "", "author_zh": "", "langs": ["en"],
         "n": 10, "seed": 0}  # fmt: skip
EVIL_PY = "open({marker!r}, 'w').write('ran')\n"  # what the uploaded code would do


def start(runs_dir: Path, env: dict) -> tuple[subprocess.Popen, int, list[str]]:
    """`idtune studio` as a process; (it, its port, the lines it printed at start)."""
    port = free_port()
    argv = [sys.executable, "-m", "idtune.cli", "studio", "--port", str(port)]
    env = {k: v for k, v in env.items() if k != "GRADIO_TEMP_DIR"}
    proc = subprocess.Popen(
        [*argv, "--runs", str(runs_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    printed: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [printed.put(x) for x in proc.stdout], daemon=True).start()
    try:
        lines = [printed.get(timeout=STARTUP_S)]
        assert lines[0].startswith(f"idtune studio: http://127.0.0.1:{port}/"), lines
        try:  # what it says about the password comes at once, or never
            lines.append(printed.get(timeout=10))
        except queue.Empty:
            lines.append("")
    except BaseException:
        stop(proc, runs_dir)
        raise
    return proc, port, lines


def stop(proc: subprocess.Popen, runs_dir: Path) -> None:
    proc.kill()
    proc.wait()
    for job in jobs.all_jobs(runs_dir):  # a job started on a studio without a door
        if jobs.alive(job.pid):
            os.killpg(job.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """A real `idtune studio` (uvicorn on 127.0.0.1) with its password from the environment."""
    root = tmp_path_factory.mktemp("studio")
    runs_dir = root / "runs"
    env = {**os.environ, PASSWORD_ENV: PASSWORD, "IDTUNE_CACHE": str(root / "cache")}
    proc, port, lines = start(runs_dir, env)
    url = f"http://127.0.0.1:{port}"
    yield SimpleNamespace(url=url, port=port, runs=runs_dir.resolve(), lines=lines)
    stop(proc, runs_dir)


def client(studio, password: str | None = PASSWORD) -> httpx.Client:
    """An HTTP client of the studio, logged in with `password` (None: not logged in)."""
    c = httpx.Client(base_url=studio.url, timeout=120)
    if password is not None:
        r = c.post("/login", data={"password": password})
        assert r.status_code == 303 and r.headers["location"] == "/", r.text
    return c


def call(c: httpx.Client, api: str, data: list) -> list:
    """Call a Gradio endpoint over plain HTTP (as any script could); its outputs."""
    r = c.post(f"/gradio_api/call/{api}", json={"data": data})
    assert r.status_code == 200, (r.status_code, r.text)
    body = c.get(f"/gradio_api/call/{api}/{r.json()['event_id']}").text
    events = [x for x in body.split("\n\n") if x.strip()]
    kind, _, payload = events[-1].partition("\ndata: ")
    assert kind == "event: complete", body
    return json.loads(payload)


def start_args(model: str, more: str = "", files: list | None = None, trust: bool = False):
    """`/do_start`'s inputs: run, run name, recipe, model, more settings, uploads, trust, the
    Identity step's fields (… seed, then the profile: based_on … facts), then the Train step's
    (method … regularization.auto)."""
    facts = {"headers": ["key", "answer", "answer in Chinese (optional)"], "data": [["", "", ""]]}
    ident = ["Nova", "Acme", "", "", ["en"], 10, 0, "none", "", "", "", facts]
    train = ["lora", 1, 2, 0.0002, 8, 512, 256, 0, 0.0, False]
    return ["", "evil", "identity-lora", model, more, files or [], trust, *ident, *train]


def upload(c: httpx.Client, files: dict[str, str]) -> list[str]:
    """Upload files as the page's file box does; where the studio stored them."""
    parts = [("files", (name, text.encode())) for name, text in files.items()]
    r = c.post("/gradio_api/upload", files=parts)
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()


def evil_model(folder: Path, marker: Path) -> dict[str, str]:
    """A model folder's files whose config points `trust_remote_code` at its own code."""
    auto = {"AutoConfig": "configuration_evil.EvilConfig", "AutoModel": "modeling_evil.Evil"}
    files = {
        "config.json": json.dumps({"model_type": "evil", "auto_map": auto}),
        "tokenizer_config.json": json.dumps({"auto_map": {"AutoTokenizer": ["tok_evil.T", None]}}),
        "configuration_evil.py": EVIL_PY.format(marker=str(marker)),
        "modeling_evil.py": "from .helpers_evil import x\n",
        "helpers_evil.py": "x = 1\n",
        "tok_evil.py": "",
        "unrelated.py": "",  # named by nothing: it does not run
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return files


# ---------------------------------------------------------------- raw HTTP: the door
def test_nothing_answers_without_a_login(studio):
    c = client(studio, password=None)
    page = c.get("/", headers={"accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"] == "/login"
    assert 'type="password"' in c.get("/login").text
    routes = [
        ("GET", "/config"),
        ("GET", "/gradio_api/info"),
        ("GET", "/gradio_api/openapi.json"),
        ("GET", f"/gradio_api/file={studio.runs}/x"),
        ("GET", "/gradio_api/file=/etc/hostname"),
        ("POST", "/gradio_api/upload"),
        ("POST", "/gradio_api/queue/join"),
        ("GET", "/gradio_api/queue/data?session_hash=x"),
        ("POST", "/gradio_api/call/do_start"),
        ("POST", "/gradio_api/run/do_start"),
        ("POST", "/gradio_api/cancel"),
        ("POST", "/gradio_api/reset"),
        ("GET", "/gradio_api/heartbeat/x"),
        ("POST", "/gradio_api/run-history/connect"),
        ("GET", "/gradio_api/token"),
        ("GET", "/theme.css"),
    ]
    for method, path in routes:
        r = c.request(method, path, json={"data": []})
        assert r.status_code == 401, (method, path, r.status_code, r.text[:200])
        assert "log in first" in r.text
    wrong = c.post("/login", data={"password": PASSWORD[:-1] + "X"})
    assert wrong.status_code == 401 and "wrong password" in wrong.text
    assert "set-cookie" not in wrong.headers
    assert c.get("/config").status_code == 401
    assert client(studio).get("/config").status_code == 200  # the right one opens it
    assert studio.lines[1].strip() == f"log in with the password from {PASSWORD_ENV}"


def test_uploaded_code_cannot_be_run(studio, tmp_path):
    """The issue's path: upload a config.json whose auto_map names an uploaded .py, then
    `/do_start` with that folder and trust_remote_code: refused at every step."""
    marker = tmp_path / "ran"
    files = evil_model(tmp_path / "evil", marker)
    anyone = client(studio, password=None)
    parts = [("files", (name, text.encode())) for name, text in files.items()]
    assert anyone.post("/gradio_api/upload", files=parts).status_code == 401
    join = {"data": start_args("/tmp", trust=True), "fn_index": 0, "session_hash": "x"}
    assert anyone.post("/gradio_api/queue/join", json=join).status_code == 401
    assert anyone.post("/gradio_api/call/do_start", json=join).status_code == 401
    assert not (studio.runs / ".studio" / "uploads").exists() or not any(
        p.name == "configuration_evil.py" for p in (studio.runs / ".studio").rglob("*")
    )
    # logged in, the uploaded folder is still no model folder, and no code runs unconfirmed
    c = client(studio)
    stored = upload(c, files)
    folder = str(Path(stored[0]).parent)
    assert Path(folder).is_relative_to(studio.runs / ".studio" / "uploads")
    payload = {"path": stored[0], "meta": {"_type": "gradio.FileData"}}
    _, msg = call(c, "do_start", start_args(folder, files=[payload], trust=True))
    assert msg.startswith("⚠️ model ") and "holds the studio's own files" in msg, msg
    outside = tmp_path / "evil"
    _, msg = call(c, "do_start", start_args(str(outside), trust=True))
    assert msg == f"⚠️ model {outside}: not inside the runs folder {studio.runs} (the studio " + (
        "reads and writes only there)"
    )
    inside = studio.runs / "models" / "evil"
    evil_model(inside, marker)
    _, msg = call(c, "do_start", start_args("models/evil", trust=True))
    code = "configuration_evil.py, helpers_evil.py, modeling_evil.py, tok_evil.py"
    named = ", ".join(f"models/evil/{f}" for f in code.split(", "))
    assert msg == f"⚠️ trust_remote_code would run {named}: confirm these files first"
    assert jobs.all_jobs(studio.runs) == [] and not marker.exists()


def test_a_wrong_host_or_another_sites_origin_is_refused(studio):
    c = client(studio, password=None)  # the Host is checked first, logged in or not
    for host in (f"evil.example:{studio.port}", "evil.example", f"127.0.0.1.nip.io:{studio.port}"):
        for method, path in (("GET", "/"), ("GET", "/config"), ("POST", "/gradio_api/upload")):
            r = c.request(method, path, headers={"host": host, "origin": f"http://{host}"})
            assert r.status_code == 400, (host, path, r.status_code)
            assert "access-control-allow-origin" not in r.headers
    own = f"http://127.0.0.1:{studio.port}"
    c = client(studio)
    for origin in ("http://evil.example", f"http://localhost:{studio.port + 1}", "null"):
        r = c.get("/config", headers={"origin": origin})
        assert r.status_code == 403 and "access-control-allow-origin" not in r.headers, origin
        r = c.post("/login", data={"password": PASSWORD}, headers={"origin": origin})
        assert r.status_code == 403 and "set-cookie" not in r.headers
    r = c.get("/config", headers={"origin": own})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == own
    assert c.get("/config", headers={"host": f"localhost:{studio.port}"}).status_code == 200


def test_paths_over_http_stay_inside_runs(studio, tmp_path):
    c = client(studio)
    elsewhere = tmp_path / "elsewhere"
    _, msg = call(c, "do_start", start_args("acme/m", more=f"output_dir={elsewhere}"))
    assert msg.startswith("⚠️ more settings: output_dir names a file or folder"), msg
    msg = call(c, "merge", ["nova", str(elsewhere)])[0]
    assert msg == f"⚠️ merge output {elsewhere}: not inside the runs folder {studio.runs} (the " + (
        "studio reads and writes only there)"
    )
    assert call(c, "merge", ["../x", "nova-merged"])[0] == "⚠️ pick a run first"
    assert not elsewhere.exists() and jobs.all_jobs(studio.runs) == []


def test_a_made_password_is_shown_once_and_kept_nowhere(tmp_path):
    runs_dir = tmp_path / "runs"
    env = {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}
    env["IDTUNE_CACHE"] = str(tmp_path / "cache")
    proc, port, lines = start(runs_dir, env)
    try:
        assert lines[1].startswith("  password: ")
        password = lines[1].split()[1]
        assert len(password) >= 24
        studio = SimpleNamespace(url=f"http://127.0.0.1:{port}")
        assert client(studio, password).get("/config").status_code == 200
        seen = (
            Path(f"/proc/{proc.pid}/cmdline").read_bytes()
            + Path(f"/proc/{proc.pid}/environ").read_bytes()
        )
        assert password.encode() not in seen
        kept = [
            p for p in tmp_path.rglob("*") if p.is_file() and password.encode() in p.read_bytes()
        ]
        assert kept == []
    finally:
        stop(proc, runs_dir)


# ---------------------------------------------------------------- the steps: the walls
def test_outputs_probes_and_push_stay_inside_runs(tmp_path):
    runs_dir = (tmp_path / "runs").resolve()
    run = runs_dir / "nova"
    run.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (runs_dir / "link").symlink_to(outside)  # inside by name, outside once resolved
    refused = {
        "/elsewhere": "not inside the runs folder",
        "../elsewhere": "not inside the runs folder",
        "link/merged": "not inside the runs folder",
        ".studio/jobs": "holds the studio's own files",
        str(runs_dir): "not inside the runs folder",
    }
    acts = {
        "merge output": lambda w: steps.merge(runs_dir, run, w),
        "export output": lambda w: steps.export(runs_dir, run, w, "q8_0"),
        "deploy output": lambda w: steps.deploy(runs_dir, run, "hf-space", w, "acme/nova"),
        "directory to push": lambda w: steps.push(runs_dir, run, w, "hf:a/b", "", 0, 0),
        "push to": lambda w: steps.push(runs_dir, run, "nova", w, "", 0, 0),
        "probe file": lambda w: steps.evaluate(runs_dir, run, w),
    }
    for where, why in refused.items():
        for name, act in acts.items():
            with pytest.raises(UserError, match=f"^{name} {where}: .*{why}"):
                act(where)
    for to in ("fd::0", "ext::sh -c touch% /tmp/x", f"file://{outside}", "ftp://host/x"):
        with pytest.raises(UserError, match="^push:? to "):
            steps.push(runs_dir, run, "nova", to, "", 0, 0)
    assert jobs.all_jobs(runs_dir) == [] and list(outside.iterdir()) == []
    from idtune.studio import confine

    assert confine.inside(runs_dir, "nova-merged", "x") == runs_dir / "nova-merged"
    assert confine.push_target(runs_dir, "git@host:me/repo.git") == "git@host:me/repo.git"


def test_more_settings_set_no_path_and_a_recipe_file_is_not_read(tmp_path, monkeypatch):
    runs_dir = tmp_path / "runs"
    elsewhere = tmp_path / "elsewhere"
    keys = {
        f"output_dir={elsewhere}": "output_dir names a file or folder",
        f"data={elsewhere}/x.jsonl": "data names a file or folder",
        f"model={elsewhere}": "model names a file or folder",
        f" regularization.files = {elsewhere}/x.jsonl": "regularization.files names a file",
        f"regularization={{files: [{elsewhere}/x.jsonl]}}": "regularization: set its keys one",
        "trust_remote_code=true": "trust_remote_code is set with the 'Run the model's own code'",
    }
    for line, why in keys.items():
        with pytest.raises(UserError, match=f"^more settings: {why}"):
            steps.start_training(runs_dir, "r", "identity-lora", "acme/m", {}, line, IDENT, [])
    secret = tmp_path / "recipe.yaml"
    secret.write_text("lr: hunter2-SECRET-VALUE\n")
    for act in (
        lambda: steps.defaults(str(secret)),
        lambda: steps.start_training(runs_dir, "r", str(secret), "acme/m", {}, "", IDENT, []),
    ):
        with pytest.raises(UserError, match="the studio trains the built-in recipes only") as e:
            act()
        assert "hunter2" not in str(e.value)
    foreign = tmp_path / "data.jsonl"
    foreign.write_text('{"messages": []}\n')
    with pytest.raises(UserError, match="^data.jsonl: not a file uploaded to this studio$"):
        steps.start_training(runs_dir, "r", "identity-lora", "acme/m", {}, "", IDENT, [foreign])
    with pytest.raises(UserError, match="^data.jsonl: not a file uploaded to this studio$"):
        steps.check_upload(runs_dir, [str(foreign)])
    assert not elsewhere.exists() and jobs.all_jobs(runs_dir) == []


def test_models_are_aliases_hub_ids_or_folders_in_runs(tmp_path, monkeypatch):
    runs_dir = (tmp_path / "runs").resolve()
    (runs_dir / "models" / "mine").mkdir(parents=True)
    outside = tmp_path / "outside-model"
    outside.mkdir()
    (outside / "config.json").write_text('{"model_type": "llama"}')
    (runs_dir / "models" / "link").symlink_to(outside)
    monkeypatch.chdir(tmp_path)  # `idtune train` would load ./outside-model as a folder
    for spec in (str(outside), "outside-model", "models/link", "../x", ".studio/uploads"):
        with pytest.raises(UserError, match=f"^model {spec}: "):
            steps.start_training(runs_dir, "r", "identity-lora", spec, {}, "", IDENT, [])
    assert jobs.all_jobs(runs_dir) == []
    from idtune.studio import confine

    assert confine.model(runs_dir, "smollm2-135m-instruct") == "smollm2-135m-instruct"
    assert confine.model(runs_dir, "acme/m") == "acme/m"
    assert confine.model(runs_dir, "models/mine") == str(runs_dir / "models" / "mine")


def test_trust_remote_code_runs_only_confirmed_files(tmp_path, monkeypatch):
    runs_dir = (tmp_path / "runs").resolve()
    marker = tmp_path / "ran"
    evil_model(runs_dir / "models" / "evil", marker)
    (runs_dir / "models" / "plain").mkdir()
    (runs_dir / "models" / "plain" / "config.json").write_text('{"model_type": "llama"}')
    files = steps.remote_code(runs_dir, "models/evil", True)
    code = ("configuration_evil.py", "helpers_evil.py", "modeling_evil.py", "tok_evil.py")
    assert files == [f"models/evil/{f}" for f in code]
    assert steps.remote_code(runs_dir, "models/evil", False) == []  # not asked for: none runs
    start = dict(runs=runs_dir, run_name="r", recipe="identity-lora", model="models/evil",
                 settings={}, more="", identity=IDENT, uploads=[], trust=True)  # fmt: skip
    for confirmed in (None, [], files[:-1], [*files, "models/evil/unrelated.py"]):
        with pytest.raises(UserError) as e:
            steps.start_training(**start, confirmed=confirmed)
        assert str(e.value) == f"trust_remote_code would run {', '.join(files)}: confirm these " + (
            "files first"
        )
    with pytest.raises(UserError, match="^model .*plain: brings no code of its own"):
        steps.start_training(**{**start, "model": "models/plain"}, confirmed=[])
    assert jobs.all_jobs(runs_dir) == [] and not marker.exists()
    job = steps.start_training(**start, confirmed=files)
    try:
        assert "trust_remote_code=true" in job.argv
    finally:
        kill(job)


def kill(job: jobs.Job) -> None:
    """End a job at once: its wrapper and the `idtune` process under it."""
    for _ in range(600):
        pid = jobs.read(Path(job.path)).pid
        if pid is not None:
            os.killpg(pid, signal.SIGKILL)
            return
        time.sleep(0.1)


# ---------------------------------------------------------------- unit: the door's rules
def test_host_and_origin_rules(tmp_path, monkeypatch):
    from idtune.studio import guard

    assert guard.allowed_hosts("127.0.0.1") == ["localhost", "127.0.0.1", "[::1]"]
    assert guard.allowed_hosts("0.0.0.0", ["studio.lan"]) == [*guard.LOOPBACK, "studio.lan"]
    assert guard.allowed_hosts("::1", ["fe80::1"])[-1] == "[fe80::1]"
    with pytest.raises(UserError, match=r"^--allow-host \*\.lan: a host name"):
        guard.allowed_hosts("127.0.0.1", ["*.lan"])
    same = guard.SameOrigin(None, extra=["studio.lan"])
    assert same.allowed("http://127.0.0.1:7860", "127.0.0.1:7860")
    assert same.allowed("https://studio.lan", "127.0.0.1:7860")  # a proxy's name, given
    assert not same.allowed("http://127.0.0.1:7861", "127.0.0.1:7860")  # another local site
    assert not same.allowed("null", "127.0.0.1:7860")
    password = tmp_path / "pw"
    password.write_text("a-long-enough-secret\nsecond line\n")
    assert guard.read_password(password) == ("a-long-enough-secret", f"--password-file {password}")
    password.write_text("short\n")
    with pytest.raises(UserError, match=f"^--password-file {password}: a password needs at least"):
        guard.read_password(password)
    with pytest.raises(UserError, match="^--password-file .*missing: cannot read it"):
        guard.read_password(tmp_path / "missing")
    monkeypatch.setenv(PASSWORD_ENV, "from-the-environment")
    assert guard.read_password(None) == ("from-the-environment", PASSWORD_ENV)
    monkeypatch.delenv(PASSWORD_ENV)
    made, where = guard.read_password(None)
    assert where is None and len(made) >= 24 and made != guard.read_password(None)[0]


# ---------------------------------------------------------------- the browser
@pytest.mark.browser
def test_the_browser_logs_in_and_is_shown_the_code_before_it_runs(browser, studio, tmp_path):
    from chromium import CHROMIUM
    from test_studio import fill, text, wait_for

    if not CHROMIUM.exists():
        pytest.skip("run scripts/ensure_debian.sh")
    marker = tmp_path / "ran"
    evil_model(studio.runs / "models" / "evil-ui", marker)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(f"{studio.url}/")
        assert page.url == f"{studio.url}/login"
        page.locator("#password").fill("not-the-password")
        page.locator("#login").click()
        assert "wrong password" in page.locator("#login-error").inner_text()
        page.locator("#password").fill(PASSWORD)
        page.locator("#login").click()
        page.locator("#run-picker").wait_for()
        assert page.url == f"{studio.url}/"
        fill(page, "name", "Nova")
        fill(page, "author", "Acme")
        page.get_by_role("tab", name="2 · Train").click()
        fill(page, "model", "models/evil-ui")
        page.locator("#trust input[type=checkbox]").check()
        wait_for(lambda: "configuration_evil.py" in text(page, "trust-files"), "the files")
        shown = text(page, "trust-files")
        code = ("configuration_evil.py", "helpers_evil.py", "modeling_evil.py", "tok_evil.py")
        assert all(f"models/evil-ui/{f}" in shown for f in code) and "unrelated" not in shown
        page.locator("#start").click()
        wait_for(lambda: "confirm these files first" in text(page, "train-msg"), "the refusal")
        assert "⚠️ trust_remote_code would run models/evil-ui/" in text(page, "train-msg")
        assert jobs.all_jobs(studio.runs) == [] and not marker.exists()
        page.locator("#trust-confirm input[type=checkbox]").check()
        page.locator("#start").click()
        wait_for(lambda: "started" in text(page, "train-msg"), "the start once confirmed")
        (job,) = jobs.all_jobs(studio.runs)
        kill(job)
        assert "trust_remote_code=true" in job.argv
    finally:
        page.close()
