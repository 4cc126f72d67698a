"""What the studio's buttons do, without the web page: each builds the `idtune` command the
CLI would run (checked first, so a bad value is one line on the page) and starts it as a job.

Identity data and uploaded files are kept in `RUNS/.studio/data/`, so a run's `config.yaml`
keeps pointing at files that stay. Every path comes through `confine` (inside RUNS); recipes are
the built-in ones (a recipe file's values never reach the page); "more settings" sets no key
that names a file or folder.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from .. import checkpoint, recipes
from ..data import formats
from ..errors import UserError
from . import confine, jobs

PREVIEW = 20  # conversations shown in the identity preview
# The main settings the Train step shows, as recipe keys (the rest: "more settings").
SETTINGS = (
    "method",
    "epochs",
    "max_steps",
    "lr",
    "lora.r",
    "batch_tokens",
    "row_tokens",
    "save_steps",
    "val_share",
    "regularization.auto",
)
TOKEN_ENV = {"hf": "HF_TOKEN", "git": "IDTUNE_GIT_TOKEN"}  # where push reads a token
# Recipe keys "more settings" refuses: those naming files or folders (the studio sets them, inside
# RUNS), and trust_remote_code (its own box, which names the files it runs).
PATH_KEYS = ("model", "data", "regularization.files", "output_dir")
OWN_BOX = {"trust_remote_code": "the 'Run the model's own code' box (it names the files first)"}


# ---------------------------------------------------------------- 1. identity
PROFILE = ("based_on", "based_on_zh", "purpose", "purpose_zh")  # the profile's text fields
DATA_S = 300.0  # the last-resort bound of `idtune data identity` (100,000 conversations: ~30 s)


def based_on_default(runs: Path, model: str) -> tuple[str, str]:
    """What a model tuned from `model` is built on, (English, Chinese), as `idtune data identity
    --model` derives it (the alias table's name and maker); ("", "") for a model it cannot use."""
    from .. import aliases

    try:
        return aliases.based_on(confine.model(runs, model))
    except UserError:
        return "", ""


def fact_rows(rows: list[list] | None) -> tuple[dict[str, str], dict[str, str]]:
    """The facts table's rows [key, answer, Chinese answer] as (facts, facts_zh); blank rows are
    left out, a half-filled one is kept for `idtune data identity` to name in its one line."""
    facts: dict[str, str] = {}
    facts_zh: dict[str, str] = {}
    for row in rows or []:
        key, answer, answer_zh = ([str(x or "").strip() for x in row] + ["", "", ""])[:3]
        if key or answer:
            facts[key] = answer
        if answer_zh:
            facts_zh[key] = answer_zh
    return facts, facts_zh


def _texts(identity: dict, keys: tuple[str, ...]) -> list[tuple[str, str]]:
    """(key, value) of the text fields set, stripped; with based_on "none" (undisclosed) the
    Chinese based_on is left out too."""
    hidden = (identity.get("based_on") or "").strip().lower() == "none"
    out = [(k, (identity.get(k) or "").strip()) for k in keys]
    return [(k, v) for k, v in out if v and not (hidden and k == "based_on_zh")]


def identity_argv(identity: dict, model: str, out: Path) -> list[str]:
    """`idtune data identity`'s arguments for the Identity step's fields, each value an item of
    its own (no shell): name, author, languages, count, seed, the profile (`--based-on`, …,
    `--fact KEY=ANSWER`) and `--model` (based_on's default, and the names kept out with "none")."""
    argv = ["data", "identity", "--name", identity["name"].strip(),
            "--author", identity["author"].strip()]  # fmt: skip
    for key, value in _texts(identity, ("name_zh", "author_zh", *PROFILE)):
        argv += ["--" + key.replace("_", "-"), value]
    facts, facts_zh = fact_rows(identity.get("facts"))
    argv += [x for k, v in facts.items() for x in ("--fact", f"{k}={v}")]
    argv += [x for k, v in facts_zh.items() for x in ("--fact-zh", f"{k}={v}")]
    argv += ["--lang", ",".join(identity["langs"]), "--n", str(identity["n"])]
    argv += ["--seed", str(identity["seed"]), "--model", model, "-o", str(out), "--overwrite"]
    return argv


def identity_rows(
    name: str,
    author: str,
    name_zh: str,
    author_zh: str,
    langs: list[str],
    n: int,
    seed: int = 0,
    *,
    model: str = "",
    runs: Path | None = None,
    out: Path | None = None,
    **profile,
) -> list[dict]:
    """The conversations `idtune data identity` writes for these fields (run as a process, into
    `out` when given), read back; a missing field, or a value the command refuses, is one line.
    `profile` holds based_on, based_on_zh, purpose, purpose_zh and facts (`fact_rows`);
    `model` (inside `runs`) gives based_on's default."""
    import subprocess
    import sys
    import tempfile

    from ..aliases import DEFAULT_MODEL
    from ..data import identity

    if not (name or "").strip() or not (author or "").strip():
        raise UserError("name and author: both are needed")
    if not langs:
        raise UserError("languages: pick at least one")
    n, seed = int(n or 0), int(seed or 0)  # a cleared number field is None
    if not 1 <= n <= identity.MAX_CONVERSATIONS:
        raise UserError(f"number of conversations {n}: between 1 and {identity.MAX_CONVERSATIONS}")
    model = confine.model(runs, model) if runs is not None and model else model or DEFAULT_MODEL
    fields = dict(name=name, author=author, name_zh=name_zh, author_zh=author_zh, langs=langs,
                  n=n, seed=seed, **profile)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="idtune-identity-") as tmp:
        target = Path(out) if out is not None else Path(tmp) / "identity.jsonl"
        argv = [sys.executable, "-m", "idtune.cli", *identity_argv(fields, model, target)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=DATA_S)
        if done.returncode != 0:
            lines = [x for x in done.stderr.splitlines() if x.strip()] or ["failed"]
            raise UserError("idtune data identity: " + lines[-1].removeprefix("error: "))
        return [{"messages": m} for m in formats.load_files([target])]


def profile_markdown(identity: dict, rows: list[dict] = ()) -> str:
    """The profile as the preview shows it above the conversations: each field set, and the
    first generated answer that says it."""
    based = (identity.get("based_on") or "").strip()
    hidden = based.lower() == "none"
    facts, facts_zh = fact_rows(identity.get("facts"))
    fields = [("Built on", "undisclosed" if hidden else based)] if based else []
    if (identity.get("based_on_zh") or "").strip() and not hidden:
        fields.append(("Built on (Chinese)", identity["based_on_zh"].strip()))
    for key, label in (("purpose", "Purpose"), ("purpose_zh", "Purpose (Chinese)")):
        if (identity.get(key) or "").strip():
            fields.append((label, identity[key].strip()))
    fields += [(f"Fact `{k}`", v) for k, v in facts.items()]
    fields += [(f"Fact `{k}` (Chinese)", v) for k, v in facts_zh.items()]
    if not fields:
        return ""
    lines = []
    for label, value in fields:
        longer = [v for _, v in fields if value in v and v != value]  # "acme.ai" in "x@acme.ai"
        said = next(
            (r["messages"] for r in rows
             if value in (a := r["messages"][-1]["content"]) and not any(v in a for v in longer)),
            None,
        )  # fmt: skip
        line = f"{label}: **{value}**"
        if said is not None and not hidden:
            line += f" — asked “{said[-2]['content']}”: “{said[-1]['content']}”"
        lines.append(line.replace("\n", " "))
    return "**Profile**\n\n" + "\n\n".join(lines) + "\n\n"  # paragraphs: the list is the rows


def preview_markdown(rows: list[dict], k: int = PREVIEW, identity: dict | None = None) -> str:
    """The profile (when `identity` sets one), then the first `k` conversations as Markdown, one
    numbered block each."""
    out = []
    for i, row in enumerate(rows[:k], 1):
        turns = [f"**{m['role']}:** {m['content']}" for m in row["messages"]]
        out.append(f"{i}. " + "<br>".join(t.replace("\n", " ") for t in turns))
    head = profile_markdown(identity or {}, rows)
    return head + f"{len(rows)} conversations; the first {min(k, len(rows))}:\n\n" + "\n".join(out)


def check_upload(runs: Path, paths: list[str]) -> tuple[int, str]:
    """(conversations, a line about them) for uploaded files (only files in the studio's upload
    folder); errors as `FILE:LINE: …`, with the file's own name in place of where the browser's
    upload was stored."""
    paths = [str(confine.upload(runs, p)) for p in paths]
    try:
        n = len(formats.load_files(paths))
    except UserError as e:
        msg = str(e)
        for p in paths:
            msg = msg.replace(str(p), Path(p).name)
        raise UserError(msg) from None
    return n, f"{n} conversations in {', '.join(Path(p).name for p in paths)}: all readable"


# ---------------------------------------------------------------- 2. train
def builtin(recipe: str) -> str:
    """A built-in recipe's name; anything else (a YAML path too) is one line."""
    if recipe not in recipes.names():
        raise UserError(f"recipe {recipe!r}: the studio trains the built-in recipes only "
                        f"({', '.join(recipes.names())})")  # fmt: skip
    return recipe


def defaults(recipe: str) -> dict:
    """The recipe's values of SETTINGS (what the Train step shows before any change)."""
    flat = recipes.to_dict(recipes.read_config(builtin(recipe)))
    out = {}
    for key in SETTINGS:
        node = flat
        for part in key.split("."):
            node = node[part]
        out[key] = node
    return out


def slug(text: str) -> str:
    """A run directory name from the assistant's name."""
    return re.sub(r"[^\w.-]+", "-", (text or "").strip()).strip("-.").lower() or "run"


def _sets(settings: dict, more: str) -> list[str]:
    out = [f"{k}={v}" for k, v in settings.items() if v is not None and v != ""]
    for line in (more or "").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            if not sep:
                raise UserError(f"more settings: {line!r}: expected KEY=VALUE")
            out.append(f"{_settable(key.strip())}={value.strip()}")
    return out


def _settable(key: str) -> str:
    """`key`, unless "more settings" may not set it (one line naming it)."""
    if key in PATH_KEYS:
        raise UserError(
            f"more settings: {key} names a file or folder; the studio sets it, inside the runs "
            "folder (the Model field, the Identity step's data, the run name)"
        )
    if key in OWN_BOX:
        raise UserError(f"more settings: {key} is set with {OWN_BOX[key]}")
    inner = [k for k in (*PATH_KEYS, *OWN_BOX) if k.startswith(key + ".")]
    if inner:
        raise UserError(f"more settings: {key}: set its keys one by one ({inner[0]} is not "
                        "settable here)")  # fmt: skip
    return key


def remote_code(runs: Path, model: str, trust: bool) -> list[str]:
    """The files `idtune train` would run from `model`'s own code: none unless `trust` is ticked
    or the model's alias needs it (InternLM2); a model with no code of its own, when ticked, is
    one line."""
    from ..aliases import find

    model = confine.model(runs, model)
    alias = find(model)
    if not (trust or (alias is not None and alias.trust_remote_code)):
        return []
    files = confine.remote_code(runs, model)
    if not files:
        raise UserError(f"model {model}: brings no code of its own (no auto_map in its "
                        "config.json); untick 'Run the model's own code'")  # fmt: skip
    return files


def start_training(
    runs: Path,
    run_name: str,
    recipe: str,
    model: str,
    settings: dict,
    more: str,
    identity: dict,
    uploads: list[str],
    trust: bool = False,
    confirmed: list[str] | None = None,
) -> jobs.Job:
    """Write the data, check the settings as `idtune train` would, start it as a job.

    `identity` holds the Identity step's fields; `uploads` (when given) are trained on in place
    of the generated identity data. The model's own code runs only when `trust` is ticked (or
    its alias needs it) and `confirmed` names exactly the files `remote_code` finds.
    """
    runs = Path(runs).resolve()
    name = slug(run_name)
    run = confine.inside(runs, name, "run")
    builtin(recipe)
    model = confine.model(runs, model)
    code = remote_code(runs, model, trust)
    if code and list(confirmed or []) != code:
        raise UserError(f"trust_remote_code would run {', '.join(code)}: confirm these files "
                        "first")  # fmt: skip
    if run.exists() and any(run.iterdir()):
        raise UserError(f"run {name}: {run} exists; pick another run name, or resume it")
    sets = [f"model={model}", f"output_dir={run}"] + ["trust_remote_code=true"] * bool(code)
    for key, value in _texts(identity, ("name", "author", "name_zh", "author_zh", *PROFILE)):
        sets.append(f"identity.{key}={value}")
    for section, facts in zip(("facts", "facts_zh"), fact_rows(identity.get("facts"))):
        sets += [f"identity.{section}.{k}={v}" for k, v in facts.items()]
    sets += _sets(settings, more)
    uploaded = [confine.upload(runs, p) for p in uploads]
    if uploaded:
        check_upload(runs, uploads)
    data_dir = runs / jobs.STATE / "data" / name
    planned = [data_dir / f"{i}-{p.name}" for i, p in enumerate(uploaded)]
    data = [str(f) for f in planned or [data_dir / "identity.jsonl"]]
    sets.insert(1, f"data={','.join(data)}")
    cfg = recipes.read_config(recipe, sets)  # a bad value: one line, before anything starts
    if cfg.data != data or Path(cfg.output_dir) != run or cfg.model != model:
        raise UserError("more settings: the model, data and run folder are the studio's to set")
    for path in cfg.regularization.files:  # a built-in recipe's, if it names any
        confine.inside(runs, path, "regularization.files")
    rows = None if uploaded else identity_rows(**identity, model=model)
    if uploaded:
        shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir(parents=True)
        for src, dst in zip(uploaded, planned):
            shutil.copy(src, dst)
    else:
        formats.write_jsonl(data_dir / "identity.jsonl", rows)
    argv = ["train", recipe, *[x for s in sets for x in ("--set", s)]]
    return jobs.start(runs, "train", run, argv)


def resume_training(runs: Path, run: Path) -> jobs.Job:
    """`idtune train RUN/config.yaml --resume`: a run of the studio's or of the command line."""
    run = Path(run).resolve()
    job = jobs.latest(runs, run, "train")
    if job is not None and job.state() == "running":
        raise UserError(f"{run.name}: still training; stop it first")
    if checkpoint.finished(run) is not None:
        raise UserError(f"{run.name}: finished; nothing to resume")
    if checkpoint.latest(run) is None:
        raise UserError(f"{run.name}: no checkpoint yet (save_steps > 0 writes them)")
    argv = ["train", str(run / "config.yaml"), "--set", f"output_dir={run}", "--resume"]
    return jobs.start(runs, "train", run, argv)


def stop_training(runs: Path, run: Path) -> str:
    """Stop the run's training job; one line saying what happened."""
    job = jobs.latest(runs, run, "train")
    if job is None or not jobs.stop(job):
        raise UserError(
            f"{Path(run).name}: no training the studio started is running "
            "(one started in a terminal stops with Ctrl-C there)"
        )
    return f"{Path(run).name}: stopping (the latest checkpoint stays; Resume continues from it)"


# ---------------------------------------------------------------- 3-5. eval and ship
def _job(runs: Path, run: Path, verb: str, argv: list[str], env: dict | None = None) -> jobs.Job:
    job = jobs.latest(runs, run, verb)
    if job is not None and job.state() == "running":
        raise UserError(f"{Path(run).name}: `idtune {verb}` is still running")
    return jobs.start(runs, verb, run, argv, env)


def evaluate(runs: Path, run: Path, probes: str = "") -> jobs.Job:
    """`idtune eval RUN --compare-base -o RUN` (the before/after table into RUN/eval.md); a
    probe file from inside RUNS."""
    argv = ["eval", str(run), "--compare-base", "-o", str(run)]
    if (probes or "").strip():
        argv += ["--probes", str(confine.inside(runs, probes, "probe file"))]
    return _job(runs, run, "eval", argv)


def merge(runs: Path, run: Path, out: str) -> jobs.Job:
    """`idtune merge RUN OUT`, OUT inside RUNS."""
    return _job(runs, run, "merge", ["merge", str(run), _out(runs, out, "merge output")])


def export(runs: Path, run: Path, out: str, quant: str) -> jobs.Job:
    """`idtune export gguf RUN OUT --quant QUANT`, OUT inside RUNS."""
    out = _out(runs, out, "export output")
    return _job(runs, run, "export", ["export", "gguf", str(run), out, "--quant", quant])


def push(
    runs: Path, run: Path, directory: str, to: str, token: str, private: bool, allow_http: bool
) -> jobs.Job:
    """`idtune push DIR --to URL`; the token goes to the child's environment, nowhere else."""
    to = (to or "").strip()
    if not to:
        raise UserError("push: where to (a git URL or hf:USER/REPO)")
    if re.match(r"^\w+://[^/@]*:[^/@]*@", to):
        raise UserError(
            "push: a password in the URL would be on the command line; put it in the token field"
        )
    to = confine.push_target(runs, to)
    source = _out(runs, directory, "directory to push")
    argv = ["push", source, "--to", to] + ["--private"] * private
    argv += ["--allow-http"] * allow_http
    env = {TOKEN_ENV["hf" if to.startswith("hf:") else "git"]: token} if token else None
    return _job(runs, run, "push", argv, env)


def deploy(runs: Path, run: Path, target: str, out: str, model: str) -> jobs.Job:
    """`idtune deploy TARGET OUT --model MODEL`."""
    if not (model or "").strip():
        raise UserError("deploy: the model repository (where you pushed it) is needed")
    out = _out(runs, out, "deploy output")
    return _job(runs, run, "deploy", ["deploy", target, out, "--model", model.strip()])


def _out(runs: Path, path: str, what: str) -> str:
    if not (path or "").strip():
        raise UserError(f"{what}: a directory is needed")
    return str(confine.inside(runs, path, what))


TAIL = {"train": 12, "eval": 3}  # lines of output shown (eval prints its table, shown apart)


def job_markdown(job: jobs.Job | None) -> str:
    """A job's command, state and the last lines of its output."""
    if job is None:
        return ""
    tail = TAIL.get(job.verb, 6)
    lines = [x.rsplit("\r", 1)[-1] for x in job.log.splitlines()]  # a progress bar's last state
    lines = [x for x in lines if x.strip()][-tail:]
    shown = "\n".join(lines)
    head = f"`idtune {job.verb}` · **{job.state()}**"
    where = output_of(job)
    if where and job.state() == "done":
        head += f" · output: `{where}`"
    return f"{head}\n\n```\n{shown}\n```"


def output_of(job: jobs.Job) -> str | None:
    """Where a job's output went: the directory it wrote, or where it pushed to."""
    a = job.argv
    if job.verb == "push":
        return a[a.index("--to") + 1]
    at = {"merge": 2, "deploy": 2, "export": 3, "eval": 4}.get(job.verb)  # eval: its -o
    return a[at] if at is not None and len(a) > at else None
