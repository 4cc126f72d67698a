"""Load XTuner, OpenAI `messages`, Alpaca and ShareGPT records into one message format.

Every record becomes a list of `{"role", "content"}` dicts: an optional system message, then
user/assistant turns ending with an assistant turn. A bad record stops loading with
`FILE:LINE: what is wrong`; nothing is silently dropped.
"""

from __future__ import annotations

import json
import os
import reprlib
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import UserError

Messages = list[dict[str, str]]
ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "bot": "assistant",
}


class RecordError(ValueError):
    """A record that cannot be turned into a conversation."""


def _records(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield (line number, parsed record) from a .json array/object or a .jsonl file."""
    text = read_text(path)
    if path.suffix == ".jsonl":
        # split on "\n" only: str.splitlines() would also split at U+2028 and other separators
        # that JSON allows inside strings
        for lineno, line in enumerate(text.split("\n"), 1):
            if line.strip():
                try:
                    yield lineno, json.loads(line)
                except json.JSONDecodeError as e:
                    raise UserError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
                except (ValueError, RecursionError) as e:  # 5000-digit numbers, deep nesting
                    raise UserError(f"{path}:{lineno}: invalid JSON ({_reason(e)})") from None
        return
    decoder = json.JSONDecoder()
    idx = _skip_ws(text, 0)
    try:
        if text[idx : idx + 1] != "[":
            record, end = decoder.raw_decode(text, idx)
            _expect_end(text, end)
            yield text.count("\n", 0, idx) + 1, record
            return
        idx = _skip_ws(text, idx + 1)
        while text[idx : idx + 1] != "]":
            record, end = decoder.raw_decode(text, idx)
            yield text.count("\n", 0, idx) + 1, record
            idx = _skip_ws(text, end)
            if text[idx : idx + 1] == ",":
                idx = _skip_ws(text, idx + 1)
            elif text[idx : idx + 1] != "]":
                raise json.JSONDecodeError("expected ',' or ']'", text, idx)
        _expect_end(text, idx + 1)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    except (ValueError, RecursionError) as e:
        line = text.count("\n", 0, idx) + 1
        raise UserError(f"{path}:{line}: invalid JSON ({_reason(e)})") from None


def _expect_end(text: str, idx: int) -> None:
    """Only whitespace may follow the top-level JSON value (several values make a .jsonl)."""
    idx = _skip_ws(text, idx)
    if idx < len(text):
        raise json.JSONDecodeError("extra data after the JSON value (JSONL? use .jsonl)", text, idx)


_NOT_REGULAR = {
    stat.S_IFIFO: "a named pipe",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def read_text(path: str | os.PathLike, what: str = "data file") -> str:
    """A user's file as UTF-8 text, or one line saying why not: missing, a directory, not a
    regular file (a named pipe or a device would block the read or never end), unreadable, or
    not UTF-8 (with the line of the first bad byte). `what` names the file in messages."""
    path = Path(path)
    try:  # O_NONBLOCK: opening a named pipe does not wait for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory, not a {what}") from None
    except (OSError, ValueError) as e:  # permissions, a NUL in the name, ...
        raise UserError(f"{path}: cannot read ({_reason(e)})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise UserError(f"{path} is a directory, not a {what}")
        kind = _NOT_REGULAR.get(stat.S_IFMT(mode), "not a regular file")
        raise UserError(f"{path} is {kind}, not a {what}")
    with os.fdopen(fd, "rb") as fh:
        try:
            data = fh.read()
        except OSError as e:
            raise UserError(f"{path}: cannot read ({_reason(e)})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise UserError(f"{path}:{line}: not UTF-8 text ({e.reason})") from None


def _reason(e: BaseException) -> str:
    """An exception as a short single line."""
    if isinstance(e, RecursionError):
        return "nested too deeply"
    text = " ".join((getattr(e, "strerror", None) or str(e)).split())
    return (text[:200] + "…" if len(text) > 200 else text) or type(e).__name__


def _show(value: Any) -> str:
    """A bounded one-line repr of a value from the data, for messages."""
    return reprlib.repr(value)


def _skip_ws(text: str, idx: int) -> int:
    while idx < len(text) and text[idx] in " \t\r\n":
        idx += 1
    return idx


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise RecordError(f"field {field!r} must be a string, got {type(value).__name__}")
    return value


def _objects(value: Any, field: str, needs: tuple[str, ...] = ()) -> list[dict]:
    """`value` checked to be a non-empty list of objects, each with the keys `needs`."""
    if not isinstance(value, list) or not value:
        raise RecordError(f"field {field!r} must be a non-empty list")
    for i, item in enumerate(value):
        if not isinstance(item, dict) or any(k not in item for k in needs):
            what = f"needs {' and '.join(map(repr, needs))}" if needs else "must be an object"
            raise RecordError(f"{field}[{i}] {what}")
    return value


def _from_xtuner(turns: Any) -> Messages:
    out: Messages = []
    for i, turn in enumerate(_objects(turns, "conversation")):
        if turn.get("system"):
            out.append({"role": "system", "content": _text(turn["system"], "system")})
        if "input" not in turn or "output" not in turn:
            missing = "input" if "input" not in turn else "output"
            raise RecordError(f"conversation[{i}] has no field {missing!r}")
        out.append({"role": "user", "content": _text(turn["input"], f"conversation[{i}].input")})
        out.append(
            {"role": "assistant", "content": _text(turn["output"], f"conversation[{i}].output")}
        )
    return out


def _from_messages(messages: Any) -> Messages:
    out: Messages = []
    for i, m in enumerate(_objects(messages, "messages", ("role", "content"))):
        if m["role"] not in ROLES:
            raise RecordError(
                f"messages[{i}].role {_show(m['role'])} is not one of {', '.join(ROLES)}"
            )
        out.append({"role": m["role"], "content": _text(m["content"], f"messages[{i}].content")})
    return out


def _from_alpaca(rec: dict) -> Messages:
    instruction = _text(rec["instruction"], "instruction")
    extra = _text(rec.get("input") or "", "input")
    out: Messages = []
    if rec.get("system"):
        out.append({"role": "system", "content": _text(rec["system"], "system")})
    user = f"{instruction}\n\n{extra}" if extra else instruction
    if "output" not in rec:
        raise RecordError("no field 'output'")
    out += [
        {"role": "user", "content": user},
        {"role": "assistant", "content": _text(rec["output"], "output")},
    ]
    return out


def _from_sharegpt(turns: Any) -> Messages:
    out: Messages = []
    for i, t in enumerate(_objects(turns, "conversations", ("from", "value"))):
        role = SHAREGPT_ROLES.get(t["from"]) if isinstance(t["from"], str) else None
        if role is None:
            raise RecordError(f"conversations[{i}].from {_show(t['from'])} is not a known role")
        out.append({"role": role, "content": _text(t["value"], f"conversations[{i}].value")})
    return out


def to_messages(record: Any) -> Messages:
    """Convert one record of any supported format; raises RecordError when it is malformed."""
    if not isinstance(record, dict):
        raise RecordError(f"a record must be a JSON object, got {type(record).__name__}")
    if "conversation" in record:
        messages = _from_xtuner(record["conversation"])
    elif "messages" in record:
        messages = _from_messages(record["messages"])
    elif "conversations" in record:
        messages = _from_sharegpt(record["conversations"])
    elif "instruction" in record:
        messages = _from_alpaca(record)
    else:
        keys = _show(", ".join(sorted(record))) if record else "none"
        raise RecordError(
            f"unknown record format (keys: {keys}); expected 'conversation' (XTuner), "
            "'messages' (OpenAI), 'instruction' (Alpaca) or 'conversations' (ShareGPT)"
        )
    validate(messages)
    return messages


def validate(messages: Messages) -> None:
    """Check turn order: optional system, then user/assistant alternating, ending on assistant."""
    body = messages[1:] if messages and messages[0]["role"] == "system" else messages
    if not body:
        raise RecordError("no user/assistant turns")
    for i, m in enumerate(body):
        want = "user" if i % 2 == 0 else "assistant"
        if m["role"] != want:
            raise RecordError(f"turn {i + 1} should be {want!r}, is {m['role']!r}")
        if want == "assistant" and not m["content"].strip():
            raise RecordError(f"turn {i + 1}: empty assistant answer")
    if body[-1]["role"] != "assistant":
        raise RecordError("the conversation must end with an assistant turn")


def load_files(files: Iterable[str | os.PathLike]) -> list[Messages]:
    """Load and validate every record of every file, in order."""
    out: list[Messages] = []
    for f in files:
        path = Path(f)
        if path.suffix not in (".json", ".jsonl"):
            raise UserError(f"{path}: expected a .json or .jsonl file")
        before = len(out)
        for lineno, record in _records(path):
            try:
                out.append(to_messages(record))
            except RecordError as e:
                raise UserError(f"{path}:{lineno}: {e}") from None
        if len(out) == before:
            raise UserError(f"{path}: no records")
    return out


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Write rows as UTF-8 JSONL (via a temporary file, so a failure leaves no partial file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        tmp.replace(path)
    except BaseException as e:
        if tmp.is_file():
            tmp.unlink()
        if isinstance(e, OSError):
            raise UserError(f"{path}: cannot write ({_reason(e)})") from None
        raise
