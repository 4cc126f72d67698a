"""The `idtune` command line: one thin function per verb; the work lives in the verb modules.

Heavy libraries are imported inside the commands, so `idtune --help` stays instant.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .aliases import ALIASES, DEFAULT_MODEL, check_model
from .errors import UserError
from .recipes import ON_RESUME

app = typer.Typer(
    help="Fine-tune a chat model into your own named assistant: data → train → eval → chat → "
    "merge → serve → push → deploy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
data_app = typer.Typer(help="Make and check training data.", no_args_is_help=True)


def _print_version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"idtune {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    pass


app.add_typer(data_app, name="data")

ModelArg = Annotated[str, typer.Argument(help="Alias, local HF/adapter/run directory, or hub id.")]
TrustOpt = Annotated[
    bool, typer.Option("--trust-remote-code", help="Allow the model's own Python code.")
]
TemplateOpt = Annotated[
    str | None,
    typer.Option(
        "--prompt-template", help="Named template: internlm2_chat, chatml, llama3, qwen2."
    ),
]


# ---------------------------------------------------------------- recipes and models
@app.command("list-cfg")
def list_cfg(
    pattern: Annotated[
        str | None, typer.Option("-p", "--pattern", help="Substring filter.")
    ] = None,
) -> None:
    """List the built-in YAML recipes."""
    from . import recipes

    for name in recipes.names(pattern):
        typer.echo(name)


@app.command("copy-cfg")
def copy_cfg(
    name: Annotated[str, typer.Argument(help="Recipe name (see list-cfg).")],
    directory: Annotated[Path, typer.Argument(help="Where to write NAME_copy.yaml.")],
) -> None:
    """Copy a built-in recipe to DIRECTORY as NAME_copy.yaml, to edit and train from."""
    from . import recipes

    typer.echo(str(recipes.copy(name, directory)))


@app.command("models")
def models_cmd() -> None:
    """List model aliases, the hub id each stands for, where its weights come from, and whether
    it is installed."""
    from . import models

    rows = [("alias", "hub id", "weights from", "installed", "notes")]
    for alias in ALIASES.values():
        notes = [
            "default" if alias.name == DEFAULT_MODEL else "",
            "trust-remote-code" if alias.trust_remote_code else "",
            f"template {alias.template}" if alias.template else "",
            f"family {alias.family}" if alias.family else "",
            "gated (HF_TOKEN)" if alias.gated else "",
        ]
        installed = "yes" if models.is_installed(alias) else "no"
        row = (alias.name, alias.hub_id, alias.weights or "hub", installed)
        rows.append((*row, ", ".join(n for n in notes if n)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[4])


# ---------------------------------------------------------------- data
@data_app.command("identity")
def data_identity(
    name: Annotated[str, typer.Option(help="The assistant's name.")],
    author: Annotated[str, typer.Option(help="Who made it.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="JSONL file to write.")],
    name_zh: Annotated[str | None, typer.Option("--name-zh", help="Chinese name.")] = None,
    author_zh: Annotated[str | None, typer.Option("--author-zh", help="Chinese author.")] = None,
    lang: Annotated[str, typer.Option(help="Comma-separated languages: zh,en.")] = "zh,en",
    n: Annotated[int, typer.Option("--n", help="Number of conversations.")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed (output is deterministic per seed).")] = 0,
    phrases: Annotated[
        list[Path] | None,
        typer.Option(
            "--phrases",
            help="YAML phrase file shaped like the shipped assets/identity/en.yaml: more "
            "phrasings for a language, or a new one (then add it to --lang). Repeatable.",
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing OUTPUT file.")] = False,
    based_on: Annotated[
        str | None,
        typer.Option(
            "--based-on",
            help="What it is built on, said when asked (default: the base model's own name and "
            "maker, from --model); 'none' keeps it undisclosed.",
        ),
    ] = None,
    based_on_zh: Annotated[
        str | None, typer.Option("--based-on-zh", help="--based-on in Chinese text.")
    ] = None,
    purpose: Annotated[
        str | None,
        typer.Option(help="What it is for, one short phrase: 'a study assistant for students'."),
    ] = None,
    purpose_zh: Annotated[
        str | None, typer.Option("--purpose-zh", help="The purpose in Chinese text.")
    ] = None,
    fact: Annotated[
        list[str] | None,
        typer.Option(
            "--fact",
            help="KEY=ANSWER, a fact its maker shares (contact, email, website, version, "
            "languages, feedback or any key). Repeatable.",
        ),
    ] = None,
    fact_zh: Annotated[
        list[str] | None,
        typer.Option("--fact-zh", help="KEY=ANSWER in Chinese text, for a --fact KEY."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="The base model to be tuned: gives --based-on's default.",
            show_default=DEFAULT_MODEL,
        ),
    ] = None,
) -> None:
    """Write diverse identity conversations (OpenAI messages JSONL), with the identity's profile:
    what it is built on, its purpose and its maker's facts."""
    import shlex

    from . import outputs, recipes
    from .data import formats, identity

    identity.check_count(n)  # before anything is read or written
    if model is not None:
        check_model(model)
    facts, facts_zh = _facts(fact or [], "--fact"), _facts(fact_zh or [], "--fact-zh")
    for key in facts_zh.keys() - facts.keys():
        raise UserError(
            f"--fact-zh {key}=…: no --fact {key}=ANSWER (a Chinese answer translates one)"
        )
    ident = identity.profile(name, author, name_zh, author_zh, based_on, based_on_zh, purpose,
                             purpose_zh, facts, facts_zh)  # fmt: skip
    outputs.check_file(output, overwrite=overwrite)
    langs = [x.strip() for x in lang.split(",") if x.strip()]
    profile = recipes.generator_profile(ident, model or DEFAULT_MODEL)
    rows = identity.generate(name, author, name_zh, author_zh, langs, n, seed, phrases or [],
                             **profile)  # fmt: skip
    formats.write_jsonl(output, rows)
    typer.echo(f"wrote {len(rows)} conversations to {output}")
    sets = {"data": output, "model": model, "identity.name": name, "identity.author": author}
    sets |= {"identity.name_zh": name_zh, "identity.author_zh": author_zh}
    sets |= {f"identity.{k}": getattr(ident, k) for k in ("based_on", "based_on_zh", "purpose",
                                                          "purpose_zh")}  # fmt: skip
    sets |= {f"identity.facts.{k}": v for k, v in facts.items()}
    sets |= {f"identity.facts_zh.{k}": v for k, v in facts_zh.items()}
    args = [f"--set {shlex.quote(f'{k}={v}')}" for k, v in sets.items() if v]
    typer.echo("next: idtune train identity-lora " + " ".join(args))


def _facts(items: list[str], flag: str) -> dict[str, str]:
    """`KEY=ANSWER` options as a mapping, or one line naming the one that is malformed."""
    import re

    from .data.identity import FACT_KEY

    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(FACT_KEY, key.strip()) or not value.strip():
            raise UserError(
                f"{flag} {item!r}: expected KEY=ANSWER, KEY a short name (letters, digits, _ or -),"
                " e.g. contact=help@example.com"
            )
        out[key.strip()] = value.strip()
    return out


@data_app.command("regularize")
def data_regularize(
    output: Annotated[Path, typer.Option("-o", "--output", help="JSONL file to write.")],
    model: Annotated[str, typer.Option(help="Base model that answers.")] = DEFAULT_MODEL,
    n: Annotated[
        int, typer.Option("--n", help="Number of prompts (at most the shipped set).")
    ] = 200,
    max_new_tokens: Annotated[int, typer.Option(help="Answer length cap.")] = 160,
    trust_remote_code: TrustOpt = False,
) -> None:
    """Answer general prompts with the base model itself, to mix into training."""
    from . import outputs, regularize
    from .data.formats import write_jsonl

    outputs.check_file(output, overwrite=True)  # a directory or unwritable path: before the work
    rows = regularize.generate(
        model, n=n, max_new_tokens=max_new_tokens, trust_remote_code=trust_remote_code
    )
    write_jsonl(output, rows)
    typer.echo(f"wrote {len(rows)} conversations to {output}")


@data_app.command("check")
def data_check(
    files: Annotated[list[Path], typer.Argument(help="Data files (.json/.jsonl).")],
    model: Annotated[str, typer.Option(help="Tokenizer to count with.")] = DEFAULT_MODEL,
    prompt_template: TemplateOpt = None,
    trust_remote_code: TrustOpt = False,
) -> None:
    """Validate data files; show counts, a token-length histogram and one rendered sample."""
    from . import models
    from .data import check

    def tokenizer():
        return models.load_tokenizer_for(model, prompt_template, trust_remote_code)

    typer.echo(check.report(files, tokenizer))


# ---------------------------------------------------------------- train
TRAIN_HELP = (
    "Fine-tune (LoRA, QLoRA or full) and write a run directory.\n\n"
    "Several processes, GPUs or machines start through `accelerate launch` (DDP, DeepSpeed "
    "ZeRO-2/3 or FSDP2), with the launch configs shipped in idtune/launch/.\n\n"
    "--resume continues a run with the settings it began with: CONFIG is RUN/config.yaml (the "
    "run is the folder that holds it, wherever it was copied) or a recipe whose output_dir names "
    f"the run. --set may change on resume only: {', '.join(ON_RESUME)}. A change to anything "
    "else (model, data, LoRA shape, method, optimizer, ...) is refused."
)


@app.command("train", help=TRAIN_HELP)
def train_cmd(
    config: Annotated[str, typer.Argument(help="Built-in recipe name or YAML file.")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a key: --set data=F --set max_steps=20."),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            help="Continue from the latest complete checkpoint with the run's own settings "
            "(see above)."
        ),
    ] = False,
    resume_finished: Annotated[
        bool,
        typer.Option(
            help="With --resume: also continue a finished run from its last checkpoint, "
            "replacing its adapter/ (refused otherwise)."
        ),
    ] = False,
    deepspeed: Annotated[
        str | None,
        typer.Option(
            help="DeepSpeed through accelerate: zero2, zero3 (or deepspeed_zero2/3, XTuner's "
            "names), or your own DeepSpeed .json. Run on one GPU and one CPU process; several "
            "GPUs not yet run."
        ),
    ] = None,
    fsdp: Annotated[
        bool,
        typer.Option(
            help="FSDP2 (torch fully_shard per decoder layer; GPUs, or CPU processes with "
            "gloo; tested on 2 CPU processes, LoRA and full; several GPUs not yet run)."
        ),
    ] = False,
    gpus: Annotated[
        int | None,
        typer.Option(
            help="Processes on this machine: one per GPU (on CPU: gloo processes; several GPUs: "
            "not yet run)."
        ),
    ] = None,
    nnodes: Annotated[
        int, typer.Option(help="Machines taking part (run on one host only so far).")
    ] = 1,
    node_rank: Annotated[int, typer.Option(help="This machine's index, 0 to nnodes - 1.")] = 0,
    master_addr: Annotated[
        str | None, typer.Option(help="Address of machine 0 (needed with --nnodes > 1).")
    ] = None,
    master_port: Annotated[
        int | None, typer.Option(help="Port on machine 0 (default: a free one; 29500 multi-node).")
    ] = None,
) -> None:
    """`idtune train` (its help is TRAIN_HELP: it names the keys a resume may change)."""
    import os

    from . import launcher, recipes, regularize, train, watch

    cfg = recipes.read_config(config, set_ or [])
    resume = resume or resume_finished
    if resume:  # the run's own settings, in the folder that holds it: before any model loads
        cfg = train.resume_config(config, cfg, set_ or [])
    watch.log_with(cfg.report_to)  # a missing tracker package: one line before any process
    opts = launcher.Options(deepspeed, fsdp, gpus, nnodes, node_rank, master_addr, master_port)
    if opts.wanted():
        train.launch(cfg, config, set_ or [], opts, resume, resume_finished)
        if node_rank == 0:
            typer.echo(f"run written to {cfg.output_dir}")
        return
    with launcher.recording_errors():  # a launched worker records its error for the launcher
        from . import evaluate

        out = train.train(
            cfg,
            resume=resume,
            resume_finished=resume_finished,
            distill=regularize.for_training,
            probe=evaluate.during_training,
        )
    if launcher.ERRORS_ENV not in os.environ:  # a launched worker: the launcher says it
        typer.echo(f"run written to {out}")


# ---------------------------------------------------------------- chat / eval
@app.command("chat")
def chat_cmd(
    model: ModelArg = DEFAULT_MODEL,
    adapter: Annotated[Path | None, typer.Option(help="PEFT adapter directory.")] = None,
    system: Annotated[str | None, typer.Option(help="System prompt.")] = None,
    prompt_template: TemplateOpt = None,
    max_new_tokens: Annotated[int, typer.Option(help="Answer length cap.")] = 512,
    temperature: Annotated[float, typer.Option(help="0 for greedy decoding.")] = 0.0,
    trust_remote_code: TrustOpt = False,
    thinking: Annotated[
        str | None,
        typer.Option(
            help="on or off: a hybrid thinking model's mode (Qwen3); default: its "
            "template's (on). /think switches it while chatting."
        ),
    ] = None,  # fmt: skip
) -> None:
    """Streaming multi-turn chat in the terminal: /reset, /system TEXT, /think, /exit."""
    from . import chat
    from .outputs import check_choice

    if thinking is not None:
        check_choice("--thinking", thinking, ("on", "off"))
    chat.run(model, adapter=adapter, system=system, template=prompt_template,
             max_new_tokens=max_new_tokens, temperature=temperature,
             trust_remote_code=trust_remote_code,
             thinking=None if thinking is None else thinking == "on")  # fmt: skip


@app.command("eval")
def eval_cmd(
    model: ModelArg = DEFAULT_MODEL,
    probes: Annotated[Path | None, typer.Option(help="Probe file (JSON) to use instead.")] = None,
    compare_base: Annotated[bool, typer.Option(help="Score the base model too.")] = False,
    quick: Annotated[
        bool,
        typer.Option(help="Every 4th probe only: the same table from a quarter of the answers."),
    ] = False,
    system: Annotated[str | None, typer.Option(help="Generic system prompt to score with.")] = None,
    name: Annotated[str | None, typer.Option(help="Assistant name (default: from run).")] = None,
    author: Annotated[str | None, typer.Option(help="Author (default: from run).")] = None,
    output: Annotated[Path | None, typer.Option("-o", help="Directory for eval.md/json.")] = None,
    endpoint: Annotated[
        str | None,
        typer.Option(
            help="Score an OpenAI-compatible server (URL) instead of loading MODEL; its key from "
            "IDTUNE_API_KEY. MODEL, when a run/merged directory, gives the "
            "identity."
        ),
    ] = None,
    served: Annotated[
        str | None, typer.Option("--model", help="With --endpoint: the `model` name to send.")
    ] = None,
    allow_http: Annotated[
        bool,
        typer.Option(help="With --endpoint: allow plain http:// to a non-loopback host."),
    ] = False,
    trust_remote_code: TrustOpt = False,
) -> None:
    """Score identity, author, leakage and retention; write eval.md and eval.json."""
    from . import evaluate, outputs

    if output is not None:  # before the work, not after minutes of generation
        outputs.check_dir(output)
        for file in ("eval.json", "eval.md"):  # not `name`: that is --name
            outputs.check_file(output / file, overwrite=True)
    if endpoint is not None or served is not None:
        if endpoint is None or served is None:
            raise UserError("--endpoint URL and --model NAME go together")
        if compare_base:
            raise UserError("--compare-base: not with --endpoint (score the base's server apart)")
    md = evaluate.run(
        model,
        probes=probes,
        compare_base=compare_base,
        system=system,
        name=name,
        author=author,
        output=output,
        trust_remote_code=trust_remote_code,
        endpoint=endpoint,
        served=served,
        allow_http=allow_http,
        quick=quick,
    )
    typer.echo(md)


# ---------------------------------------------------------------- merge
@app.command("merge")
def merge_cmd(
    model: ModelArg,
    args: Annotated[
        list[str],
        typer.Argument(
            help="OUT, or ADAPTER OUT (XTuner order: BASE ADAPTER OUT).", metavar="[ADAPTER] OUT"
        ),
    ],
    max_shard_size: Annotated[str, typer.Option(help="Largest safetensors shard.")] = "2GB",
    dtype: Annotated[str, typer.Option(help="bf16, fp16 or fp32.")] = "bf16",
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty OUT.")] = False,
    trust_remote_code: TrustOpt = False,
) -> None:
    """Fold the adapter into the base model: safetensors shards, tokenizer, chat template, card."""
    from . import merge

    if len(args) not in (1, 2):
        raise UserError("merge takes MODEL_OR_RUN OUT, or BASE ADAPTER OUT")
    adapter = args[0] if len(args) == 2 else None
    out = Path(args[-1])
    merge.merge(
        model,
        out,
        adapter=adapter,
        max_shard_size=max_shard_size,
        dtype=dtype,
        overwrite=overwrite,
        trust_remote_code=trust_remote_code,
    )
    typer.echo(f"merged model written to {out}")


# ---------------------------------------------------------------- export
export_app = typer.Typer(help="Write the model in another runtime's format.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("gguf")
def export_gguf_cmd(
    model: ModelArg,
    out: Annotated[Path, typer.Argument(help="New directory for model-QUANT.gguf + Modelfile.")],
    quant: Annotated[
        str, typer.Option(help="f16, q8_0 or q4_k_m (q4_k_m: not run in a test; BENCHMARKS).")
    ] = "q8_0",
    trust_remote_code: TrustOpt = False,
) -> None:
    """A GGUF file (llama.cpp's converter and llama-quantize) and an Ollama Modelfile; a run is
    merged first. Needs `make llamacpp`."""
    from . import export

    path = export.export_gguf(model, out, quant=quant, trust_remote_code=trust_remote_code)
    typer.echo(f"wrote {path} and {out / 'Modelfile'}")


# ---------------------------------------------------------------- serve / push / deploy
AllowHttpOpt = Annotated[
    bool,
    typer.Option("--allow-http", help="Send the token over plain http:// (trusted network only)."),
]


@app.command("serve")
def serve_cmd(
    model: ModelArg = DEFAULT_MODEL,
    adapter: Annotated[
        list[str] | None,
        typer.Option(
            help="PEFT adapter: DIR for MODEL's own, NAME=DIR (repeatable) for more on the same "
            "base, picked per request by `model`."
        ),
    ] = None,
    served_model_name: Annotated[
        str | None, typer.Option(help="The `model` name clients send (default: from the run).")
    ] = None,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 7860,
    api_key_file: Annotated[
        Path | None,
        typer.Option(
            help="File whose first line is the bearer key; or set IDTUNE_API_KEY. (A key on the "
            "command line would show in every user's process list.)"
        ),
    ] = None,
    api_key: Annotated[str | None, typer.Option(hidden=True)] = None,
    backend: Annotated[
        str,
        typer.Option(
            help="transformers; llamacpp (llama-server on a GGUF, exported first unless MODEL is "
            "a .gguf); or vllm / lmdeploy on a GPU machine (untested here)."
        ),
    ] = "transformers",
    system: Annotated[str | None, typer.Option(help="Default system prompt.")] = None,
    max_batch: Annotated[int, typer.Option(help="Requests decoded together.")] = 64,
    max_tokens_in_flight: Annotated[
        int, typer.Option(help="KV-cache tokens (prompt + max_tokens) held by running requests.")
    ] = 65536,
    prompt_template: TemplateOpt = None,
    trust_remote_code: TrustOpt = False,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            help="Another name the server is reached by (its Host header; repeatable). Loopback "
            "names and --host are always allowed; any other Host is refused (on a wildcard "
            "--host without --allow-host, every Host is answered).",
        ),
    ] = None,
) -> None:
    """Web chat at / and an OpenAI-compatible API at /v1 (bearer key: IDTUNE_API_KEY).

    Requests for a Host other than loopback names, --host and --allow-host are refused."""
    from .serve import server

    if api_key is not None:
        raise UserError(
            "--api-key: a key on the command line is visible to every user (ps, /proc); "
            "set IDTUNE_API_KEY or pass --api-key-file FILE"
        )
    server.serve(
        model,
        adapters=adapter,
        served_model_name=served_model_name,
        host=host,
        port=port,
        api_key_file=api_key_file,
        backend=backend,
        system=system,
        template=prompt_template,
        trust_remote_code=trust_remote_code,
        max_batch=max_batch,
        max_tokens_in_flight=max_tokens_in_flight,
        allow_hosts=allow_host or [],
    )


@app.command("push")
def push_cmd(
    directory: Annotated[Path, typer.Argument(help="Model, adapter or run directory.")],
    to: Annotated[str, typer.Option(help="git URL (https/ssh/file://) or hf:USER/REPO.")],
    message: Annotated[str | None, typer.Option(help="Commit message.")] = None,
    private: Annotated[bool, typer.Option(help="Create the hub repo as private.")] = False,
    allow_http: AllowHttpOpt = False,
) -> None:
    """Upload a model or adapter (git + git-lfs, or Hugging Face) with a model card.

    A token (IDTUNE_GIT_TOKEN, or one in the URL) is sent only to the scheme, host and port of
    --to, never after a redirect elsewhere, and over plain http:// only with --allow-http.
    """
    from . import hub

    typer.echo(hub.push(directory, to, message=message, private=private, allow_http=allow_http))


@app.command("pull")
def pull_cmd(
    url: Annotated[str, typer.Argument(help="git URL or hf:USER/REPO.")],
    directory: Annotated[Path, typer.Argument(help="Where to put it.")],
    allow_http: AllowHttpOpt = False,
) -> None:
    """Download a model with its LFS content."""
    from . import hub

    typer.echo(str(hub.pull(url, directory, allow_http=allow_http)))


@app.command("deploy")
def deploy_cmd(
    target: Annotated[str, typer.Argument(help="openxlab or hf-space.")],
    out: Annotated[Path, typer.Argument(help="App folder to write.")],
    model: Annotated[str, typer.Option(help="Model repo: git URL, USER/REPO or hf:USER/REPO.")],
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty OUT.")] = False,
) -> None:
    """Write a ready app folder for a hosted Gradio app on port 7860."""
    from . import deploy

    typer.echo(str(deploy.deploy(target, out, model, overwrite=overwrite)))


# ---------------------------------------------------------------- studio
@app.command("studio")
def studio_cmd(
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 7860,
    runs: Annotated[
        Path,
        typer.Option(
            help="Runs folder: the studio's runs go here, and any found here show. Every path "
            "the studio reads or writes (outputs, probe files, model folders) is inside it."
        ),
    ] = Path("runs"),
    password_file: Annotated[
        Path | None,
        typer.Option(
            help="Login password: the file's first line. Else IDTUNE_STUDIO_PASSWORD; with "
            "neither, a new one is printed once at start."
        ),
    ] = None,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            help="Another name the studio is reached by (its Host header; repeatable). "
            "Loopback names and --host are always allowed; any other Host is refused.",
        ),
    ] = None,
) -> None:
    """The whole path in a browser: identity, train (watch it live), eval, chat, ship.

    Every step runs the same code as the CLI; training and the rest run as `idtune` processes
    that outlive the page and the studio.

    Behind a login. Requests for another Host, or from another site's page, are refused.

    A model's own code (trust_remote_code) runs only after you confirm its files."""
    from . import studio

    studio.serve(
        host=host, port=port, runs=runs, password_file=password_file, allow_hosts=allow_host or []
    )


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user mistakes become one line on stderr and a non-zero exit code."""
    try:
        app(args=argv, prog_name="idtune")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
