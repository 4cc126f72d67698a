"""Function calling through the model's own chat template: render `tools`, parse `tool_calls`.

A template supports tools when it renders a `tools` list (a probe function's name appears in the
prompt). Calls come back in the two forms chat templates teach: Hermes / Qwen2.5's
`<tool_call>{"name": …, "arguments": …}</tool_call>` and Llama 3.1's bare
`{"name": …, "parameters": …}`. With `tool_choice` "required" or a named function the answer is
constrained to such a JSON object by the grammar (`grammar.py`).
"""

from __future__ import annotations

import json
import re
import uuid
from functools import lru_cache
from typing import Any

PROBE = {
    "type": "function",
    "function": {
        "name": "idtune_probe_function",
        "description": "probe",
        "parameters": {"type": "object", "properties": {}},
    },
}
_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)


def encode_chat(
    tokenizer: Any,
    messages: list[dict[str, Any]],
    tools: list | None,
    template_kwargs: dict | None = None,
) -> list[int]:
    """Chat-template a conversation (with its tools and the request's template arguments, such
    as `enable_thinking`) and add the assistant generation prompt."""
    kw = {**(template_kwargs or {}), **({"tools": tools} if tools else {})}
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kw)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def template_renders_tools(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template shows a `tools` list to the model."""
    return _renders_tools(id(tokenizer), tokenizer.chat_template or "", tokenizer)


@lru_cache(maxsize=32)
def _renders_tools(_key: int, template: str, tokenizer: Any) -> bool:
    if "tools" not in template:
        return False
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "hi"}],
            tools=[PROBE],
            tokenize=False,
            add_generation_prompt=True,
        )
    except Exception:
        return False
    return PROBE["function"]["name"] in text


def call_schema(tools: list[dict[str, Any]], choice: Any) -> dict[str, Any]:
    """The JSON schema of one call to the allowed tool(s): `{"name": …, "arguments": {…}}`."""
    if isinstance(choice, dict):
        name = choice["function"]["name"]
        tools = [t for t in tools if t["function"]["name"] == name]
    options = [
        {
            "type": "object",
            "properties": {
                "name": {"const": t["function"]["name"]},
                "arguments": t["function"].get("parameters") or {"type": "object"},
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
    ]
    return options[0] if len(options) == 1 else {"anyOf": options}


def parse_tool_calls(text: str, names: set[str]) -> tuple[str | None, list[dict[str, Any]]]:
    """Split an answer into its remaining text and OpenAI `tool_calls` (calls to known names)."""
    calls, rest = [], text
    found = _TAGGED.findall(text)
    if found:
        rest = _TAGGED.sub("", text).strip()
    else:
        found = [text.strip()]
    for raw in found:
        try:
            obj = json.loads(raw)
        except ValueError:
            continue
        for item in obj if isinstance(obj, list) else [obj]:
            call = _as_call(item, names)
            if call is not None:
                calls.append(call)
    if not calls:
        return text, []
    if not _TAGGED.search(text):
        rest = ""
    return rest or None, calls


def _as_call(item: Any, names: set[str]) -> dict[str, Any] | None:
    if not isinstance(item, dict) or item.get("name") not in names:
        return None
    args = item.get("arguments", item.get("parameters", {}))
    if not isinstance(args, str):
        args = json.dumps(args, ensure_ascii=False)
    return {
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": item["name"], "arguments": args},
    }


def template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI's assistant `tool_calls` (arguments as JSON text) in the form templates expect."""
    out = []
    for m in messages:
        if m.get("tool_calls"):
            m = dict(m)
            m["tool_calls"] = [
                {
                    "type": "function",
                    "id": c.get("id"),
                    "function": {
                        "name": c["function"]["name"],
                        "arguments": _loads(c["function"].get("arguments")),
                    },
                }
                for c in m["tool_calls"]
            ]
        out.append(m)
    return out


def _loads(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except ValueError:
            return arguments
    return arguments
