"""`idtune chat`: streaming multi-turn chat in the terminal (/reset, /system TEXT, /exit).

With stdin not a terminal, each input line is one user turn; a transcript (`>>> question`, then
the answer) is printed and the program ends at end of input.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import generate, models

HELP = "commands: /reset (forget the conversation), /system TEXT (set the system prompt), /exit"


def run(
    model: str,
    *,
    adapter: Path | None = None,
    system: str | None = None,
    template: str | None = None,
    max_new_tokens: int = 512,
    temperature: float = 0.0,
    trust_remote_code: bool = False,
    stdin=None,
    stdout=None,
) -> None:
    """Load MODEL_OR_RUN and chat until /exit or end of input."""
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
        if text.startswith("/"):
            stdout.write(f"unknown command {text.split()[0]}; {HELP}\n")
            continue
        if not interactive:
            stdout.write(f">>> {text}\n")  # a transcript, as it would look in a terminal
        history.append({"role": "user", "content": text})
        answer = []
        for piece in generate.stream(
            loaded.model,
            loaded.tokenizer,
            generate.with_system(history, system),
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            template=loaded.template,
        ):
            answer.append(piece)
            stdout.write(piece)
            stdout.flush()
        stdout.write("\n")
        stdout.flush()
        history.append({"role": "assistant", "content": "".join(answer).strip()})
