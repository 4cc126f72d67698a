"""The studio's page: one Gradio Blocks app, five tabs, every button a call into `steps`.

Nothing about runs lives in the browser session: the run picker lists what is on disk, and a
timer re-reads the chosen run's files, so every tab (and a studio started later) shows the same.
A faster timer looks only at the run's log.jsonl and redraws the loss curves when it changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import recipes
from ..aliases import ALIASES, DEFAULT_MODEL
from ..errors import UserError
from . import jobs, runs, steps, talk

TICK_S = 2.0  # how often the page re-reads the chosen run
CURVE_S = 0.5  # how often the page asks whether the run's log.jsonl changed (a stat, no read)
SERIES = {"train": "#2563eb", "val": "#ea580c"}  # the loss curves' colours
HELP = (
    "# idtune studio\n"
    "1 · **Identity**: who the assistant is · 2 · **Train** · 3 · **Evaluate** · "
    "4 · **Chat** · 5 · **Ship**. Runs live in `{runs}`: one started with `idtune train` in a "
    "terminal shows up here too, and closing this page stops nothing."
)
INTO = "Into directory (in the runs folder)"
LABELS = {
    "method": "Method",
    "epochs": "Epochs",
    "max_steps": "Max steps (0: by epochs)",
    "lr": "Learning rate",
    "lora.r": "LoRA rank",
    "batch_tokens": "Tokens per batch",
    "row_tokens": "Tokens per packed row",
    "save_steps": "Checkpoint every N steps (0: end)",
    "val_share": "Validation share",
    "regularization.auto": "Regularize with the base model's own answers",
}


def _error(e: UserError) -> str:
    return f"⚠️ {e}"


def build(runs_dir: Path):
    """The studio's gr.Blocks for the runs under `runs_dir`."""
    import gradio as gr

    runs_dir = Path(runs_dir).resolve()
    recipe0 = "identity-lora"
    start = steps.defaults(recipe0)

    def pick(label: str | None) -> Path | None:
        """The run a picker label names (it may not have its files yet: just started)."""
        run = (runs_dir / label).resolve() if label else None
        return run if run is not None and runs_dir in run.parents else None

    def choices() -> list[str]:
        return [runs.label(runs_dir, r) for r in runs.find(runs_dir)]

    with gr.Blocks(title="idtune studio") as demo:
        gr.Markdown(HELP.format(runs=runs_dir))
        with gr.Row():
            run_box = gr.Dropdown(
                choices(), label="Run", scale=4, elem_id="run-picker", allow_custom_value=True
            )
            refresh = gr.Button("↻ runs", scale=1)
        status = gr.Markdown(elem_id="run-status")
        timer = gr.Timer(TICK_S)
        with gr.Tabs():
            # ---------------------------------------------------------- 1. identity
            with gr.Tab("1 · Identity"):
                with gr.Row():
                    name = gr.Textbox(label="Name (English)", elem_id="name")
                    author = gr.Textbox(label="Author (English)", elem_id="author")
                    name_zh = gr.Textbox(label="Name in Chinese (optional)")
                    author_zh = gr.Textbox(label="Author in Chinese (optional)")
                based0, based0_zh = steps.based_on_default(runs_dir, DEFAULT_MODEL)
                with gr.Row():
                    based_on = gr.Textbox(
                        based0,
                        label="Built on (said when asked; from the Model in step 2; 'none' keeps "
                        "it undisclosed)",
                        elem_id="based-on",
                    )
                    based_on_zh = gr.Textbox(
                        based0_zh, label="Built on, in Chinese", elem_id="based-on-zh"
                    )
                with gr.Row():
                    purpose = gr.Textbox(
                        label="Purpose (optional): what it is for, one short phrase",
                        placeholder="a study assistant for the camp's students",
                        elem_id="purpose",
                    )
                    purpose_zh = gr.Textbox(
                        label="Purpose in Chinese (optional)", elem_id="purpose-zh"
                    )
                facts = gr.Dataframe(
                    headers=["key", "answer", "answer in Chinese (optional)"],
                    datatype=["str", "str", "str"],
                    value=[["", "", ""]] * 3,
                    row_count=3,
                    column_count=3,
                    interactive=True,
                    type="array",
                    label="Facts (optional): a key (contact, website, version, languages, …) and "
                    "its answer per row",
                    elem_id="facts",
                )
                with gr.Row():
                    langs = gr.CheckboxGroup(["zh", "en"], value=["zh", "en"], label="Languages")
                    n_conv = gr.Number(1000, precision=0, label="Conversations", elem_id="n")
                    seed = gr.Number(0, precision=0, label="Seed")
                preview_btn = gr.Button("Preview 20 conversations", elem_id="preview-btn")
                preview = gr.Markdown(elem_id="preview")
                with gr.Row():
                    uploads = gr.File(
                        file_count="multiple",
                        file_types=[".json", ".jsonl"],
                        label="Or your own data (XTuner, OpenAI messages, Alpaca, ShareGPT)",
                        elem_id="upload",
                    )
                    upload_msg = gr.Markdown(elem_id="upload-check")
            # ---------------------------------------------------------- 2. train
            with gr.Tab("2 · Train"):
                with gr.Row():
                    run_name = gr.Textbox(
                        label="Run name (a new directory in the runs folder)", elem_id="run-name"
                    )
                    model = gr.Dropdown(
                        list(ALIASES),
                        value=DEFAULT_MODEL,
                        allow_custom_value=True,
                        label="Model: alias, hub id or a folder in the runs folder",
                        elem_id="model",
                    )
                    recipe = gr.Dropdown(
                        recipes.names(), value=recipe0, label="Recipe", elem_id="recipe"
                    )
                with gr.Row():
                    trust = gr.Checkbox(
                        False,
                        label="Run the model's own Python code (trust_remote_code)",
                        elem_id="trust",
                    )
                    confirm = gr.Checkbox(
                        False,
                        label="I have read these files: run them",
                        elem_id="trust-confirm",
                        visible=False,
                    )
                trust_files = gr.Markdown(elem_id="trust-files")
                with gr.Row():
                    fields = {}
                    for key in steps.SETTINGS:
                        value, label = start[key], LABELS[key]
                        eid = "set-" + key.replace(".", "-").replace("_", "-")
                        if key == "method":
                            box = gr.Dropdown(["lora", "qlora", "full"], value=value, label=label)
                        elif isinstance(value, bool):
                            box = gr.Checkbox(value, label=label, elem_id=eid)
                        else:
                            box = gr.Number(
                                value,
                                label=label,
                                elem_id=eid,
                                precision=0 if isinstance(value, int) else None,
                            )
                        fields[key] = box
                more = gr.Textbox(
                    lines=2,
                    label="More settings: KEY=VALUE per line (recipe keys, as with --set; not "
                    "those naming files or folders)",
                    elem_id="more",
                )
                with gr.Row():
                    start_btn = gr.Button("Start training", variant="primary", elem_id="start")
                    stop_btn = gr.Button("Stop", elem_id="stop")
                    resume_btn = gr.Button("Resume", elem_id="resume")
                train_msg = gr.Markdown(elem_id="train-msg")
                loss = gr.LinePlot(
                    x="step",
                    y="loss",
                    color="series",
                    color_map=SERIES,  # fixed: a series that comes later (val) still has one
                    label="Loss",
                    elem_id="loss-plot",
                    height=260,
                )
                gr.Markdown("### Latest checkpoint: samples and scored held-out probes")
                samples = gr.Markdown(elem_id="samples")
                with gr.Accordion("Training output", open=False):
                    train_log = gr.Markdown(elem_id="train-log")
            # ---------------------------------------------------------- 3. evaluate
            with gr.Tab("3 · Evaluate"):
                probes = gr.Textbox(
                    label="Probe file in the runs folder (empty: the shipped probes)",
                    elem_id="probes",
                )
                eval_btn = gr.Button("Evaluate (tuned and base)", elem_id="eval-btn")
                eval_job = gr.Markdown(elem_id="eval-job")
                eval_table = gr.Markdown(elem_id="eval-table")
                gr.Markdown("### Failing answers")
                eval_fails = gr.Markdown(elem_id="eval-fails")
            # ---------------------------------------------------------- 4. chat
            with gr.Tab("4 · Chat") as chat_tab:
                with gr.Row():
                    max_new = gr.Number(
                        256, precision=0, label="Answer length cap (tokens)", elem_id="max-new"
                    )
                    thinking = gr.Radio(
                        ["on", "off"],
                        value="on",
                        label="Thinking: reason first, or answer at once (this model has both)",
                        elem_id="thinking",
                        visible=False,  # shown for a hybrid thinking model (Qwen3)
                    )
                with gr.Row():
                    tuned_bot = gr.Chatbot(label="Tuned", elem_id="tuned-chat", height=320)
                    base_bot = gr.Chatbot(label="Base", elem_id="base-chat", height=320)
                question = gr.Textbox(
                    label="Question", elem_id="question", placeholder="Who are you?"
                )
                with gr.Row():
                    ask_btn = gr.Button("Ask both", variant="primary", elem_id="ask")
                    clear_btn = gr.Button("Clear", elem_id="clear")
                chat_msg = gr.Markdown(elem_id="chat-msg")
            # ---------------------------------------------------------- 5. ship
            with gr.Tab("5 · Ship"):
                with gr.Group():
                    gr.Markdown("**Merge**: the adapter folded into the base model")
                    merge_out = gr.Textbox(label=INTO, elem_id="merge-out")
                    merge_btn, merge_job = _job_area(gr, "Merge", "merge")
                with gr.Group():
                    gr.Markdown("**Export**: GGUF and an Ollama Modelfile (needs `make llamacpp`)")
                    with gr.Row():
                        gguf_out = gr.Textbox(label=INTO, elem_id="gguf-out")
                        quant = gr.Dropdown(["q8_0", "f16", "q4_k_m"], value="q8_0", label="Quant")
                    export_btn, export_job = _job_area(gr, "Export GGUF", "export")
                with gr.Group():
                    gr.Markdown("**Push**: to a git remote or `hf:USER/REPO`, with a model card")
                    with gr.Row():
                        push_dir = gr.Textbox(
                            label="Directory to push (in the runs folder)", elem_id="push-dir"
                        )
                        push_to = gr.Textbox(
                            label="To: a git URL, hf:USER/REPO or a repository in the runs folder",
                            elem_id="push-to",
                        )
                        token = gr.Textbox(
                            label="Token (used for this push only, kept nowhere)",
                            type="password",
                            elem_id="token",
                        )
                    with gr.Row():
                        private = gr.Checkbox(False, label="Private (new hub repository)")
                        allow_http = gr.Checkbox(
                            False, label="Allow plain http://", elem_id="allow-http"
                        )
                    push_btn, push_job = _job_area(gr, "Push", "push")
                with gr.Group():
                    gr.Markdown("**Deploy**: a ready Gradio app folder for a hosted space")
                    with gr.Row():
                        target = gr.Dropdown(
                            ["hf-space", "openxlab"], value="hf-space", label="Target"
                        )
                        deploy_model = gr.Textbox(
                            label="Model repository (where you pushed it)", elem_id="deploy-model"
                        )
                        deploy_out = gr.Textbox(label=INTO, elem_id="deploy-out")
                    deploy_btn, deploy_job = _job_area(gr, "Write the app folder", "deploy")

        # ------------------------------------------------------------------ wiring
        agreed = gr.State([])  # the files of the model's own code the user confirmed
        identity_inputs = [name, author, name_zh, author_zh, langs, n_conv, seed, based_on,
                           based_on_zh, purpose, purpose_zh, facts]  # fmt: skip

        def identity_of(*values: Any) -> dict:
            keys = ("name", "author", "name_zh", "author_zh", "langs", "n", "seed", "based_on",
                    "based_on_zh", "purpose", "purpose_zh", "facts")  # fmt: skip
            return dict(zip(keys, values))

        def do_preview(mdl, *values):
            ident = identity_of(*values)
            try:
                rows = steps.identity_rows(**ident, model=mdl, runs=runs_dir)
            except UserError as e:
                return _error(e)
            return steps.preview_markdown(rows, identity=ident)

        # the Built on values the last usable model filled in: a field the user changed is theirs
        prefilled = gr.State((based0, based0_zh))

        def on_model(mdl, en_now, zh_now, was):
            """Built on: the new base model's own name and maker, in each field that is empty or
            still holds what the model before filled in ('none' or the user's text: kept; a model
            it cannot use: all kept)."""
            en, zh = steps.based_on_default(runs_dir, mdl)
            if not en:
                return gr.skip(), gr.skip(), was
            out = [new if (now or "").strip() in ("", old) else gr.skip()
                   for now, old, new in zip((en_now, zh_now), was, (en, zh))]  # fmt: skip
            return *out, (en, zh)

        def do_upload(files):
            paths = [str(f) for f in files or []]
            if not paths:
                return ""
            try:
                return "✅ " + steps.check_upload(runs_dir, paths)[1]
            except UserError as e:
                return _error(e)

        def show_code(mdl, wanted):
            """Which files the model's own code is, shown before it may run."""
            hidden = gr.update(visible=False, value=False)
            try:
                files = steps.remote_code(runs_dir, mdl, wanted)
            except UserError as e:
                return (_error(e) if wanted else ""), hidden, []
            if not files:
                return "", hidden, []
            listed = ", ".join(f"`{f}`" for f in files)
            note = f"⚠️ `idtune train` will run this model's own code: {listed}. Read it first."
            return note, gr.update(visible=True, value=False), []

        def do_confirm(ok, mdl, wanted):
            """The files confirmed, as they are now (a file added later is not confirmed)."""
            try:
                return steps.remote_code(runs_dir, mdl, wanted) if ok else []
            except UserError:
                return []

        def do_recipe(name_of_recipe):
            try:
                values = steps.defaults(name_of_recipe)
            except UserError as e:
                return [gr.skip()] * len(fields) + [_error(e)]
            return [values[k] for k in steps.SETTINGS] + [""]

        def do_start(run_label, rname, rcp, mdl, more_text, files, wanted, agreed, *rest):
            ident = identity_of(*rest[: len(identity_inputs)])
            settings = dict(zip(steps.SETTINGS, rest[len(identity_inputs) :]))
            settings = {k: _number(v) for k, v in settings.items()}
            try:
                job = steps.start_training(
                    runs_dir,
                    rname or steps.slug(ident["name"]),
                    rcp,
                    mdl,
                    settings,
                    more_text,
                    ident,
                    [str(f) for f in files or []],
                    trust=bool(wanted),
                    confirmed=agreed,
                )
            except UserError as e:
                return gr.skip(), _error(e)
            label = runs.label(runs_dir, Path(job.run))
            return gr.update(choices=choices(), value=label), f"started `{label}`"

        def do_stop(run_label):
            run = pick(run_label)
            if run is None:
                return "⚠️ pick a run first"
            try:
                return steps.stop_training(runs_dir, run)
            except UserError as e:
                return _error(e)

        def do_resume(run_label):
            run = pick(run_label)
            if run is None:
                return "⚠️ pick a run first"
            try:
                steps.resume_training(runs_dir, run)
            except UserError as e:
                return _error(e)
            return f"resuming `{run_label}` from its latest checkpoint"

        def on_run(run_label):
            run = pick(run_label)
            if run is None:
                return [""] * 4
            base = run.parent / run.name
            merged = f"{base}-merged"
            return merged, f"{base}-gguf", merged, f"{base}-space"

        def tick(run_label, known, sent):
            """Everything shown about the run; only what changed since the last tick is sent."""
            names = choices()
            picker = gr.update(choices=names) if names != known else gr.skip()
            run = pick(run_label)
            if run is None:
                shown = ["Pick a run, or start one in step 2."] + [""] * 9
            else:
                table, fails = runs.eval_report(run)
                latest = {
                    v: steps.job_markdown(jobs.latest(runs_dir, run, v))
                    for v in ("train", "eval", "merge", "export", "push", "deploy")
                }
                shown = [
                    runs.status_markdown(runs_dir, run),
                    runs.latest_samples(run),
                    latest["train"],
                    latest["eval"],
                    table,
                    fails or ("(none)" if table else ""),
                    latest["merge"],
                    latest["export"],
                    latest["push"],
                    latest["deploy"],
                ]
            sent = sent or [None] * len(shown)
            changed = [gr.skip() if new == old else new for new, old in zip(shown, sent)]
            return [picker, names, shown, *changed]

        def curves(run_label, drawn):
            """The loss curves, redrawn when the run's log.jsonl changed since the last draw."""
            run = pick(run_label)
            sig = (str(run), runs.log_version(run)) if run is not None else None
            if sig == drawn:
                return gr.skip(), gr.skip()
            points = runs.loss_rows(run) if run is not None else []
            return (_frame(points) if points else None), sig

        known, sent, drawn = gr.State([]), gr.State(None), gr.State(None)
        curve_timer = gr.Timer(CURVE_S)
        tick_outputs = [
            run_box,
            known,
            sent,
            status,
            samples,
            train_log,
            eval_job,
            eval_table,
            eval_fails,
            merge_job,
            export_job,
            push_job,
            deploy_job,
        ]
        preview_btn.click(do_preview, [model, *identity_inputs], preview)
        model.change(on_model, [model, based_on, based_on_zh, prefilled],
                     [based_on, based_on_zh, prefilled])  # fmt: skip
        uploads.change(do_upload, uploads, upload_msg)
        recipe.change(do_recipe, recipe, [*fields.values(), train_msg])
        for box in (model, trust):
            box.change(show_code, [model, trust], [trust_files, confirm, agreed])
        confirm.change(do_confirm, [confirm, model, trust], agreed)
        name.change(lambda n: steps.slug(n) if n else "", name, run_name)
        start_btn.click(
            do_start,
            [run_box, run_name, recipe, model, more, uploads, trust, agreed, *identity_inputs]
            + list(fields.values()),
            [run_box, train_msg],
        )
        stop_btn.click(do_stop, run_box, train_msg)
        resume_btn.click(do_resume, run_box, train_msg)
        run_box.change(on_run, run_box, [merge_out, gguf_out, push_dir, deploy_out])
        timer.tick(tick, [run_box, known, sent], tick_outputs, show_progress="hidden")
        refresh.click(tick, [run_box, known, sent], tick_outputs)
        for trigger in (curve_timer.tick, run_box.change):
            trigger(curves, [run_box, drawn], [loss, drawn], show_progress="hidden")
        demo.load(
            lambda: gr.update(choices=choices(), value=(choices() or [None])[0]), None, run_box
        )

        def do_job(fn, *args):
            def handler(run_label, *values):
                run = pick(run_label)
                if run is None:
                    return "⚠️ pick a run first"
                try:
                    job = fn(runs_dir, run, *values)
                except UserError as e:
                    return _error(e)
                return steps.job_markdown(job)

            return handler

        eval_btn.click(do_job(steps.evaluate), [run_box, probes], eval_job, api_name="evaluate")
        merge_btn.click(do_job(steps.merge), [run_box, merge_out], merge_job, api_name="merge")
        export_btn.click(
            do_job(steps.export), [run_box, gguf_out, quant], export_job, api_name="export"
        )
        push_btn.click(
            do_job(steps.push),
            [run_box, push_dir, push_to, token, private, allow_http],
            push_job,
            api_name="push",
        )
        push_btn.click(lambda: "", None, token)  # the token leaves the page once used
        deploy_btn.click(
            do_job(steps.deploy),
            [run_box, target, deploy_out, deploy_model],
            deploy_job,
            api_name="deploy",
        )

        def do_ask(run_label, q, tuned_hist, base_hist, cap, think):
            run = pick(run_label)
            if run is None or not (q or "").strip():
                yield gr.skip(), gr.skip(), "⚠️ pick a finished run and type a question"
                return
            tuned_hist = [*(tuned_hist or []), {"role": "user", "content": q}]
            base_hist = [*(base_hist or []), {"role": "user", "content": q}]
            cap = int(_number(cap) or 256)
            mode = {"on": True, "off": False}.get(think)  # a model with no switch ignores it
            try:
                for bot, stream in ((tuned_hist, talk.answer_tuned), (base_hist, talk.answer_base)):
                    asked, start = talk.history(bot), len(bot)
                    for messages in stream(run, asked, cap, mode):
                        bot[start:] = messages
                        yield tuned_hist, base_hist, ""
            except UserError as e:
                yield gr.skip(), gr.skip(), _error(e)
                return
            yield tuned_hist, base_hist, "✅ both answered"

        for trigger in (ask_btn.click, question.submit):
            trigger(
                do_ask,
                [run_box, question, tuned_bot, base_bot, max_new, thinking],
                [tuned_bot, base_bot, chat_msg],
            )

        def thinking_switch(run_label):
            """The thinking control, shown where the run's model has the switch."""
            run = pick(run_label)
            hybrid = run is not None and talk.thinking_style(run) == "hybrid"
            return gr.update(visible=hybrid)

        for trigger in (run_box.change, chat_tab.select):
            trigger(thinking_switch, run_box, thinking, show_progress="hidden")
        clear_btn.click(lambda: ([], [], ""), None, [tuned_bot, base_bot, chat_msg])
    demo.queue(default_concurrency_limit=8)
    return demo


def _job_area(gr, label: str, verb: str):
    """A step's button and, below it, where its job's state and output show."""
    return gr.Button(label, elem_id=f"{verb}-btn"), gr.Markdown(elem_id=f"{verb}-job")


def _number(value: Any) -> Any:
    """A Number field's value as the recipe wants it (5.0 → 5)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _frame(points: list[dict]):
    """The loss curve's DataFrame; typed even when empty (else the plot's axes become
    categories, and stay so when the points come). Every series is in it from the first point
    (one without points yet as an empty value, which is not drawn): the plot fixes its colours
    to the series of its first data, so a series that came later (val) was drawn colourless."""
    import pandas as pd

    types = {"step": "int64", "loss": "float64", "series": "str"}
    have = {p["series"] for p in points}
    first = points[0]["step"] if points else 0
    empty = [{"step": first, "loss": None, "series": s} for s in SERIES if s not in have]
    return pd.DataFrame(points + empty, columns=list(types)).astype(types)
