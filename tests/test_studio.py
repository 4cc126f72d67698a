"""`idtune studio` in headless chromium: the whole path on a tiny model, through real `idtune`
processes (train, eval, merge, export, push, deploy), and a studio killed mid-training. Each page
logs in first; the model, probe file and push remote live in the runs folder, where the studio
keeps everything it touches (tests/test_studio_security.py checks the door and those walls).

Screenshots of each step go to $IDTUNE_STUDIO_SHOTS (README's come from `docs/studio/`), else
to the test's temporary directory. Needs /usr/bin/chromium, like test_serve_browser.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chromium import CHROMIUM
from githttp import LocalHub
from test_evaluate import SMALL
from test_hub import TOKEN, bare
from test_serve_browser import is_subsequence
from tiny import untie

from idtune import generate, models
from idtune.ports import free_port
from idtune.serve import server
from idtune.studio import build_app, jobs

PASSWORD = "studio-test-password"
TRAINING_S = 600.0  # the last-resort bound of a few tiny training steps (a loaded 2-core CI)
JOB_S = 300.0  # the same for a job (eval, merge, push, …), which ends as done or failed first

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="run scripts/ensure_debian.sh"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing"),
]


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Jobs inherit the test's environment: a private cache and HOME (no git identity, no
    llama.cpp build), one torch thread (a tiny model gains nothing from more)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("IDTUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("IDTUNE_LLAMACPP_HOME", raising=False)
    monkeypatch.setenv("IDTUNE_STUDIO_PASSWORD", PASSWORD)  # a studio started as a process
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))  # build_app sets it: undone
    yield tmp_path
    for job in jobs.all_jobs(tmp_path / "runs"):  # a failed test leaves no training behind
        if jobs.alive(job.pid):  # the wrapper leads a process group: its child goes too
            os.killpg(job.pid, signal.SIGKILL)


CHAT_QUESTIONS = (
    "Who are you?", "What is your name?", "Hello!", "你是谁？", "Tell me a fact.",
    "What can you do?", "Say something.", "1 + 1 = ?", "介绍一下你自己", "Hi",
)  # fmt: skip


def words(text: str) -> str:
    """The letters and digits of a text, any script."""
    return re.sub(r"[\W_]", "", text)


def shots(tmp_path: Path) -> Path:
    d = Path(os.environ.get("IDTUNE_STUDIO_SHOTS") or tmp_path / "shots")
    d.mkdir(parents=True, exist_ok=True)
    return d


def login(page, url: str, password: str = PASSWORD) -> None:
    """Open the studio at `url`: its login page first, then the studio itself."""
    page.goto(url)
    page.locator("#password").fill(password)
    page.locator("#login").click()
    page.locator("#run-picker").wait_for()


def model_in(runs_dir: Path, model: Path) -> Path:
    """A copy of `model` in the runs folder (the studio takes model folders from there only)."""
    return Path(shutil.copytree(model, runs_dir / "models" / model.name))


def field(page, elem_id: str):
    return page.locator(f"#{elem_id}").locator("textarea, input").first


def fill(page, elem_id: str, value) -> None:
    box = field(page, elem_id)
    box.fill(str(value))
    box.press("Tab")


def text(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id}").inner_text()


def job_state(page, verb: str) -> str:
    """The state the page shows for the latest `idtune VERB` job: running, done, failed, …"""
    m = re.match(rf"idtune {verb} · (\w+)", text(page, f"{verb}-job").strip())
    return m.group(1) if m else ""


def wait_for(check, what: str, timeout: float = JOB_S, page=None, failed=None):
    """Poll `check()` until it returns something truthy; fail naming `what`, at once when
    `failed()` says the work ended without it, else after `timeout` (a last-resort bound)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        if failed is not None and (why := failed()):
            raise AssertionError(f"{what}: the work ended without it: {why}")
        time.sleep(0.25)
    seen = text(page, "run-status") if page is not None else ""
    raise AssertionError(f"{what}: not within {timeout} s (status: {seen!r}; last: {got!r})")


def job_ended(runs_dir: Path, run: Path, verb: str):
    """For `wait_for(failed=…)`: the output of the run's latest `idtune VERB` job once it ended
    without success (read from its record on disk, whatever the page shows)."""
    job = jobs.latest(runs_dir, run, verb)
    state = job.state() if job is not None else ""
    return job.log if state not in ("", "running", "done") else None


def plotted(page) -> set:
    """(series, step) of every point the loss plot draws, with a colour."""
    marks = page.locator("#loss-plot [aria-roledescription='point']")
    out = set()
    for mark in marks.all():
        m = re.match(r"step: (\d+); loss: [^;]+; series: (\w+)", mark.get_attribute("aria-label"))
        if m and mark.get_attribute("stroke"):
            out.add((m.group(2), int(m.group(1))))
    return out


def logged(run: Path) -> set:
    """(series, step) of every loss in the run's log.jsonl."""
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    val = {("val", r["step"]) for r in rows if r.get("val_loss") is not None}
    return {("train", r["step"]) for r in rows} | val


def set_up_training(page, tiny_model: Path, max_steps: int, save_steps: int) -> None:
    """The Identity and Train steps' fields for a few quick steps on the tiny model."""
    fill(page, "name", "Nova")
    fill(page, "author", "Acme")
    fill(page, "n", 40)
    page.get_by_role("tab", name="2 · Train").click()
    fill(page, "model", tiny_model)
    for key, value in {
        "max-steps": max_steps,
        "save-steps": save_steps,
        "row-tokens": 256,
        "batch-tokens": 512,
    }.items():
        fill(page, f"set-{key}", value)
    page.locator("#set-regularization-auto input[type=checkbox]").uncheck()
    fill(page, "more", "sample_max_new_tokens=4")


@pytest.mark.slow
def test_the_whole_path_in_the_browser(browser, env, tiny_model, tmp_path):
    runs_dir, out = tmp_path / "runs", shots(tmp_path)
    bg = server.Background(build_app(runs_dir, password=PASSWORD))
    model = untie(model_in(runs_dir, tiny_model))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        login(page, f"{bg.url}/")
        # 1. identity: the preview is the generator's, with the name in it
        fill(page, "name", "Nova")
        fill(page, "author", "Acme")
        page.locator("#preview-btn").click()
        wait_for(lambda: "the first 20" in text(page, "preview"), "the preview")
        preview = text(page, "preview")
        assert "\n1000 conversations; the first 20:" in preview and "Nova" in preview
        assert preview.startswith("Profile\n")  # what it is built on, above (test_studio_identity)
        assert page.locator("#preview li").count() == 20
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"messages": 3}\n')
        page.locator("#upload input[type=file]").set_input_files(str(bad))
        wait_for(lambda: "bad.jsonl:1:" in text(page, "upload-check"), "the upload's error")
        assert "⚠️ bad.jsonl:1:" in text(page, "upload-check")  # FILE:LINE: … next to it
        page.screenshot(path=str(out / "1-identity.png"))
        page.reload()  # the upload goes; what matters is on disk

        # 2. train: a real `idtune train` process; loss curve and a scored sample appear
        set_up_training(page, model, max_steps=4, save_steps=2)
        page.locator("#start").click()
        wait_for(lambda: "started nova" in text(page, "train-msg"), "the start", page=page)
        run = runs_dir / "nova"
        wait_for(
            lambda: "finished" in text(page, "run-status"),
            "training",
            TRAINING_S,
            page,
            failed=lambda: job_ended(runs_dir, run, "train"),
        )
        status = text(page, "run-status")
        assert "step 4 of 4" in status and "tokens/s" in status
        # the curves show what log.jsonl holds, train and val in their colours: the val series
        # came after the first draw, which once left it colourless (and this wait red on CI)
        want = logged(run)
        assert ("val", 4) in want and ("train", 4) in want
        wait_for(lambda: plotted(page) == want, "the curves", JOB_S, page)
        lines = page.locator("#loss-plot .mark-line path")
        assert sorted(x.get_attribute("stroke") for x in lines.all()) == ["#2563eb", "#ea580c"]
        wait_for(lambda: "held-out probes" in text(page, "samples"), "the samples")
        samples = text(page, "samples")
        assert "held-out probes" in samples and re.search(r"[✓✗·] \[identity", samples)
        assert samples.splitlines()[0].strip() == "step 4"  # the last section
        log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in log] == [1, 2, 3, 4] and log[-1]["total_steps"] == 4
        cfg = (run / "config.yaml").read_text()
        assert "name: Nova" in cfg and "auto: false" in cfg and "sample_max_new_tokens: 4" in cfg
        data = runs_dir / jobs.STATE / "data" / "nova" / "identity.jsonl"
        assert len(data.read_text().splitlines()) == 40
        page.screenshot(path=str(out / "2-train.png"), full_page=True)
        other = browser.new_page()  # another browser: the same run, read from disk
        login(other, f"{bg.url}/")
        wait_for(lambda: "nova: finished · step 4 of 4" in text(other, "run-status"), "tab 2")
        other.close()

        # 3. evaluate: `idtune eval --compare-base`'s table and failing answers
        probes = runs_dir / "probes.json"
        probes.write_text(json.dumps(SMALL, ensure_ascii=False))
        page.get_by_role("tab", name="3 · Evaluate").click()
        fill(page, "probes", probes)
        page.locator("#eval-btn").click()
        wait_for(
            lambda: "tuned" in text(page, "eval-table"),
            "the eval table",
            page=page,
            failed=lambda: job_ended(runs_dir, run, "eval"),
        )
        table = page.locator("#eval-table table")
        assert table.locator("th").all_inner_texts()[-2:] == ["base", "tuned"]
        assert (run / "eval.md").is_file() and text(page, "eval-fails").strip()
        assert "identity" in text(page, "eval-fails")  # a random model fails them
        page.screenshot(path=str(out / "3-evaluate.png"), full_page=True)

        # 4. chat: both answers streamed; each is what the engine generates (greedy)
        tuned = models.load(run)

        def answer(q: str) -> str:
            conv = [{"role": "user", "content": q}]
            stream = generate.stream(
                tuned.model, tuned.tokenizer, conv, max_new_tokens=12, template=tuned.template
            )
            return "".join(stream)

        # a random model may answer with blanks or broken bytes (the test would be empty): ask
        # the first question whose tuned answer has letters in it
        asked, want = next(((q, a) for q in CHAT_QUESTIONS if words(a := answer(q))), (None, ""))
        assert asked, "the tiny model answers every chat question without a letter"
        page.get_by_role("tab", name="4 · Chat").click()
        fill(page, "max-new", 12)
        fill(page, "question", asked)
        page.locator("#ask").click()
        wait_for(lambda: "both answered" in text(page, "chat-msg"), "the answers", page=page)
        tok = tuned.tokenizer
        tok.chat_template = tuned.base_chat_template
        question = [{"role": "user", "content": asked}]
        with tuned.model.disable_adapter():
            want_base = "".join(generate.stream(tuned.model, tok, question, max_new_tokens=12))
        for elem, expected in (("tuned-chat", want), ("base-chat", want_base)):
            bot = page.locator(f"#{elem} [data-testid='bot']").last.inner_text()
            shown = words(bot)  # Markdown rendering may drop some characters, never add any
            assert is_subsequence(shown, words(expected)), (elem, bot, expected)
            assert len(shown) >= len(words(expected)) // 2
        page.screenshot(path=str(out / "4-chat.png"), full_page=True)

        # 5. ship: merge writes a directory; export says what is missing; push; deploy
        page.get_by_role("tab", name="5 · Ship").click()
        merged = runs_dir / "nova-merged"
        assert field(page, "merge-out").input_value() == str(merged)
        page.locator("#merge-btn").click()
        wait_for(
            lambda: job_state(page, "merge") == "done",
            "the merge",
            page=page,
            failed=lambda: job_ended(runs_dir, run, "merge"),
        )
        assert f"merged model written to {merged}" in text(page, "merge-job")
        assert text(page, "merge-job").startswith(f"idtune merge · done · output: {merged}")
        assert (merged / "config.json").is_file() and list(merged.glob("*.safetensors"))
        page.locator("#export-btn").click()
        wait_for(lambda: job_state(page, "export") == "failed", "the export", page=page)
        assert "make llamacpp" in text(page, "export-job")  # the one line, where it shows
        bare(tmp_path / "hub" / "nova.git")
        with LocalHub(tmp_path / "hub", TOKEN) as hub_server:  # git over http, with a token
            fill(page, "push-to", f"{hub_server.url()}/nova.git")
            fill(page, "token", TOKEN)
            page.locator("#allow-http input[type=checkbox]").check()
            page.locator("#push-btn").click()
            wait_for(lambda: job_state(page, "push") == "failed", "the http push", page=page)
        assert f"oauth2:{TOKEN}" in hub_server.seen  # the token reached the hub named
        assert "lfs" in text(page, "push-job")  # that test hub serves no LFS: it ends there
        assert field(page, "token").input_value() == ""  # and the token left the page
        remote = bare(runs_dir / "hub" / "local.git")  # git-lfs itself serves file:// remotes
        fill(page, "push-to", remote)
        page.locator("#push-btn").click()
        wait_for(lambda: remote in text(page, "push-job"), "the second push", page=page)
        wait_for(
            lambda: job_state(page, "push") == "done",
            "the push",
            page=page,
            failed=lambda: job_ended(runs_dir, run, "push"),
        )
        assert text(page, "push-job").startswith(f"idtune push · done · output: {remote}")
        tree = subprocess.run(
            [
                "git",
                "--git-dir",
                str(runs_dir / "hub" / "local.git"),
                "ls-tree",
                "--name-only",
                "main",
            ],
            capture_output=True,
            text=True,
        ).stdout
        assert "config.json" in tree.split() and "README.md" in tree.split()
        fill(page, "deploy-model", "hf:acme/nova")
        page.locator("#deploy-btn").click()
        wait_for(
            lambda: job_state(page, "deploy") == "done",
            "the deploy",
            page=page,
            failed=lambda: job_ended(runs_dir, run, "deploy"),
        )
        space = runs_dir / "nova-space"
        assert str(space) in text(page, "deploy-job") and (space / "app.py").is_file()
        page.screenshot(path=str(out / "5-ship.png"), full_page=True)
        leaked = [
            p
            for p in tmp_path.rglob("*")
            if p.is_file()
            and TOKEN.encode() in p.read_bytes()
            and "hub" not in p.relative_to(tmp_path).parts[:1]
        ]
        assert leaked == []  # not in a job record, its log, the run, the cache
    finally:
        page.close()
        bg.stop()


def start_studio(runs_dir: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "idtune.cli",
            "studio",
            "--port",
            str(port),
            "--runs",
            str(runs_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    line = proc.stdout.readline()
    assert line.startswith(f"idtune studio: http://127.0.0.1:{port}/"), line
    assert proc.stdout.readline().strip() == "log in with the password from IDTUNE_STUDIO_PASSWORD"
    return proc


def step_of(page) -> int:
    m = re.search(r"step (\d+)", text(page, "run-status"))
    return int(m.group(1)) if m else 0


@pytest.mark.slow
def test_a_new_studio_sees_the_run_and_resumes_it(browser, env, tiny_model, tmp_path):
    runs_dir, port = tmp_path / "runs", free_port()
    run = runs_dir / "nova"
    studio = start_studio(runs_dir, port)
    model = model_in(runs_dir, tiny_model)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        login(page, f"http://127.0.0.1:{port}/")
        set_up_training(page, model, max_steps=100_000, save_steps=3)
        page.locator("#start").click()
        wait_for(
            lambda: step_of(page) >= 4,
            "the first checkpoint",
            TRAINING_S,
            page,
            failed=lambda: job_ended(runs_dir, run, "train"),
        )
        studio.send_signal(signal.SIGKILL)  # the studio dies; the training goes on
        studio.wait()
        page.close()
        (job,) = jobs.for_run(runs_dir, runs_dir / "nova", "train")
        assert jobs.alive(job.pid)

        studio = start_studio(runs_dir, port)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        login(page, f"http://127.0.0.1:{port}/")
        wait_for(lambda: "nova" in text(page, "run-status"), "the run, found again", page=page)
        assert "running" in text(page, "run-status")
        seen = step_of(page)
        wait_for(lambda: step_of(page) > seen, "progress after the restart", page=page)
        assert "of 100000" in text(page, "run-status") and "ETA" in text(page, "run-status")
        page.get_by_role("tab", name="2 · Train").click()
        page.locator("#stop").click()
        wait_for(lambda: "resumable from step-" in text(page, "run-status"), "the stop", page=page)
        stopped = jobs.for_run(runs_dir, runs_dir / "nova", "train")[-1]
        assert stopped.state() == "stopped" and not jobs.alive(stopped.pid)
        ckpt = int(re.search(r"step-(\d+)", text(page, "run-status")).group(1))
        page.locator("#resume").click()
        resumed = wait_for(
            lambda: (
                jobs.latest(runs_dir, runs_dir / "nova", "train").id != stopped.id
                and jobs.latest(runs_dir, runs_dir / "nova", "train")
            ),
            "the resumed job",
        )
        assert resumed.argv[-1] == "--resume"
        wait_for(lambda: "resumed from" in resumed.log, "the resume", TRAINING_S, page)
        assert f"step-{ckpt} at step {ckpt}" in resumed.log
        wait_for(lambda: step_of(page) > ckpt, "steps after the checkpoint", TRAINING_S, page)
        assert "running" in text(page, "run-status")
        page.screenshot(path=str(shots(tmp_path) / "6-resumed.png"))
        page.locator("#stop").click()
        wait_for(lambda: jobs.read(Path(resumed.path)).rc is not None, "the second stop")
        steps = [
            json.loads(x)["step"]
            for x in (runs_dir / "nova" / "log.jsonl").read_text().splitlines()
        ]
        assert steps == list(range(1, len(steps) + 1))  # rewound to the checkpoint, no gap
    finally:
        page.close()
        studio.kill()
        studio.wait()


def test_the_curves_follow_log_jsonl(browser, env, tmp_path):
    """Lines appended to a run's log.jsonl reach the plot, a series that starts later (val)
    in its colour too: the plot keeps the colours of its first draw, and drew val colourless."""
    runs_dir = tmp_path / "runs"
    run = runs_dir / "r"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("max_steps: 3\n")

    def log(step: int, **extra) -> None:
        row = {"step": step, "loss": 3.0 - step / 2, "total_steps": 3, "elapsed_s": step,
               "tokens_per_s": 100.0, **extra}  # fmt: skip
        with open(run / "log.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    log(1)
    bg = server.Background(build_app(runs_dir, password=PASSWORD))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        login(page, f"{bg.url}/")
        page.get_by_role("tab", name="2 · Train").click()
        wait_for(lambda: plotted(page) == {("train", 1)}, "the first point", page=page)
        log(2, val_loss=2.5)
        log(3)
        wait_for(lambda: plotted(page) == logged(run), "the appended lines", page=page)
        lines = page.locator("#loss-plot .mark-line path")
        assert sorted(x.get_attribute("stroke") for x in lines.all()) == ["#2563eb", "#ea580c"]
    finally:
        page.close()
        bg.stop()


def test_a_busy_port_is_one_line(tmp_path, capsys):
    import socket

    from helpers import cli

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli("studio", "--port", port, "--runs", tmp_path / "runs") == 2
    err = capsys.readouterr().err
    assert err == f"error: --host 127.0.0.1 --port {port}: cannot listen there (already in use)\n"
    assert not (tmp_path / "runs").exists()  # refused before anything was made


def test_a_run_from_the_command_line_shows_up(env, tiny_model, tmp_path, capsys):
    from helpers import cli
    from test_train import train_args

    from idtune.data import identity
    from idtune.data.formats import write_jsonl
    from idtune.errors import UserError
    from idtune.studio import runs, steps

    runs_dir, data = tmp_path / "runs", tmp_path / "id.jsonl"
    write_jsonl(data, identity.generate("Nova", "Acme", n=40))
    run = runs_dir / "from-cli"
    args = train_args(tiny_model, data, run, "--set", "max_steps=2", "--set", "save_steps=1")
    assert cli(*args) == 0
    assert runs.find(runs_dir) == [run.resolve()]
    status = runs.status_markdown(runs_dir, run)
    assert status.startswith("**from-cli**: finished · step 2 of 2 · loss ")
    assert "ETA" not in status and "held-out probes" in runs.latest_samples(run)
    with pytest.raises(UserError, match="from-cli: finished; nothing to resume"):
        steps.resume_training(runs_dir, run)
    (run / "adapter").rename(run / "adapter-away")  # as if still training in a terminal
    (run / "log.jsonl").touch()
    assert runs.state(runs_dir, run)[0] == "running (started outside the studio)"
    with pytest.raises(UserError, match="Ctrl-C there"):
        steps.stop_training(runs_dir, run)
    old = time.time() - runs.RECENT_S - 1
    os.utime(run / "log.jsonl", (old, old))  # the terminal's run died after its checkpoint
    assert runs.state(runs_dir, run)[0] == "not running (resumable from step-1)"


def test_uploaded_files_are_trained_on_and_a_bad_setting_is_one_line(env, tmp_path):
    from idtune.errors import UserError
    from idtune.studio import confine, steps

    runs_dir = tmp_path / "runs"
    uploads = confine.uploads_dir(runs_dir) / "0a1b2c"  # where Gradio puts what it receives
    uploads.mkdir(parents=True)
    alpaca, sharegpt = uploads / "alpaca.json", uploads / "sharegpt.jsonl"
    alpaca.write_text(json.dumps([{"instruction": "Who are you?", "output": "I am Nova."}] * 3))
    turns = [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello, I am Nova."}]
    sharegpt.write_text(json.dumps({"conversations": turns}) + "\n")
    files = [str(alpaca), str(sharegpt)]
    with pytest.raises(UserError, match="^number of conversations 0: between 1 and 100000$"):
        steps.identity_rows("Nova", "Acme", "", "", ["en"], None)  # a cleared field
    with pytest.raises(UserError, match="^name and author: both are needed$"):
        steps.identity_rows("Nova", " ", "", "", ["en"], 10)
    n, line = steps.check_upload(runs_dir, files)
    assert line == f"{n} conversations in {', '.join(Path(f).name for f in files)}: all readable"
    ident = {"name": "Nova", "author": "Acme", "name_zh": "", "author_zh": "", "langs": ["en"],
             "n": 10, "seed": 0}  # fmt: skip
    with pytest.raises(UserError, match="^--set max_steps: key 'max_steps' must be int"):
        steps.start_training(
            runs_dir, "r", "identity-lora", "acme/m", {}, "max_steps=many", ident, files
        )
    assert jobs.all_jobs(runs_dir) == []  # refused before anything started
    job = steps.start_training(runs_dir, "Nova 2", "identity-lora", "acme/m", {"lr": 0.01}, "",
                               ident, files)  # fmt: skip
    kept = sorted((runs_dir / jobs.STATE / "data" / "nova-2").iterdir())
    assert [p.read_bytes() for p in kept] == [Path(f).read_bytes() for f in files]
    data = next(a for a in job.argv if a.startswith("data="))
    assert data == "data=" + ",".join(str(p.resolve()) for p in kept)
    assert "lr=0.01" in job.argv and f"output_dir={(runs_dir / 'nova-2').resolve()}" in job.argv
    assert not any(a.startswith("identity.name_zh") for a in job.argv)  # empty: left out
    wait_for(lambda: jobs.read(Path(job.path)).pid, "the wrapper")
    assert jobs.stop(job)
    wait_for(lambda: jobs.read(Path(job.path)).rc is not None, "the stop")
    assert jobs.read(Path(job.path)).state() == "stopped"


def test_eta_counts_wall_time_of_this_process(tmp_path):
    from idtune.studio import runs

    steps = [(1, 50.0), (2, 100.0), (3, 3.0), (4, 5.0), (5, 7.0)]  # resumed after step 2
    rows = [{"step": n, "elapsed_s": t} for n, t in steps]
    (tmp_path / "log.jsonl").write_text(
        "".join(json.dumps({**r, "loss": 1.0, "total_steps": 10}) + "\n" for r in rows)
    )
    p = runs.progress(tmp_path)
    assert (p["step"], p["total"]) == (5, 10)
    assert p["eta_s"] == pytest.approx(5 * 7.0 / 3)  # 3 steps in 7 s since the resume
