"""`idtune chat`: streaming multi-turn chat in the terminal (/reset, /system TEXT, /think,
/exit).

A thinking model's reasoning is printed as it comes; only the answer after it
is kept in the history (as the templates themselves keep earlier turns).

With stdin not a terminal, each input line is one user turn; a transcript (`>>> question`, then
the answer) is printed and the program ends at end of input.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import generate, models

HELP = (
    "commands: /reset (forget the conversation), /system TEXT (set the system prompt), "
    "/think (thinking on or off, where the model has the switch), /exit"
)


def run(
    model: str,
    *,
    adapter: Path | None = None,
    system: str | None = None,
    template: str | None = None,
    max_new_tokens: int = 512,
    temperature: float = 0.0,
    trust_remote_code: bool = False,
    thinking: bool | None = None,
    stdin=None,
    stdout=None,
) -> None:
    """Load MODEL_OR_RUN and chat until /exit or end of input. `thinking`: on / off for a
    hybrid thinking model (Qwen3), None for its template's default."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    loaded = models.load(model, adapter, template=template, trust_remote_code=trust_remote_code)
    if system is None and loaded.info is not None:
        system = loaded.info.system_prompt
    interactive = stdin.isatty()
    title = loaded.info.identity.name if loaded.info and loaded.info.identity else model
    if interactive:
        stdout.write(f"chatting with {title}; {HELP}\n")
    history: list[dict[str, str]] = []
    while True:
        if interactive:
            stdout.write("\n>>> ")
            stdout.flush()
        line = stdin.readline()
        if not line:
            break
        text = line.rstrip("\n")
        if not text.strip():
            continue
        if text.strip() in ("/exit", "/quit"):
            break
        if text.strip() == "/reset":
            history = []
            stdout.write("(conversation reset)\n")
            continue
        if text.startswith("/system"):
            system = text[len("/system") :].strip() or None
            history = []
            stdout.write(f"(system prompt: {system or 'template default'})\n")
            continue
        if text.strip() == "/think":
            if not generate.thinking_kwargs(loaded.tokenizer, True):
                stdout.write("(this model has no thinking switch)\n")
                continue
            thinking = not (thinking is None or thinking)  # the template's default is on
            stdout.write(f"(thinking {'on' if thinking else 'off'})\n")
            continue
        if text.startswith("/"):
            stdout.write(f"unknown command {text.split()[0]}; {HELP}\n")
            continue
        if not interactive:
            stdout.write(f">>> {text}\n")  # a transcript, as it would look in a terminal
        history.append({"role": "user", "content": text})
        answer = []
        asked = generate.with_system(history, system)
        kwargs = generate.thinking_kwargs(loaded.tokenizer, thinking)
        for piece in generate.stream(
            loaded.model,
            loaded.tokenizer,
            asked,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            template=loaded.template,
            template_kwargs=kwargs,
        ):
            answer.append(piece)
            stdout.write(piece)
            stdout.flush()
        stdout.write("\n")
        stdout.flush()
        said = generate.split_reasoning(loaded.tokenizer, asked, "".join(answer), **kwargs)[1]
        history.append({"role": "assistant", "content": said})
