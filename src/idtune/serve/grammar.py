"""`response_format` for the local engine: JSON constrained by llguidance's token masks.

llguidance was chosen over xgrammar, outlines-core and lm-format-enforcer by
`bench/constrained_cpu.py` (BENCHMARKS.md): xgrammar-like mask speed on this CPU, one small wheel
with no dependencies (xgrammar pulls in ~1 GB of triton), released monthly.
"""

from __future__ import annotations

import json
from typing import Any

from .engine import RequestError

# Compact, ordinary-looking JSON: a random or small model cannot pad it with endless whitespace.
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


def schema_of(response_format: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema a `response_format` asks for (json_object: any object)."""
    kind = response_format.get("type")
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
            raise RequestError(
                "response_format.json_schema needs {name, schema}",
                400,
                "invalid_value",
                "response_format.json_schema",
            )
        return spec.get("schema") or {"type": "object"}
    raise RequestError(
        f"response_format type {kind!r}: use text, json_object or json_schema",
        400,
        "invalid_value",
        "response_format.type",
    )


class Matcher:
    """One request's grammar state: masks a logits row, follows the sampled tokens."""

    def __init__(self, matcher: Any, vocab_size: int):
        import torch

        self.m, self.vocab_size = matcher, vocab_size
        self.bitmask = torch.zeros((1, (vocab_size + 31) // 32), dtype=torch.int32)
        self._shifts = torch.arange(32, dtype=torch.int32)

    def mask(self, row):
        """A copy of `row` with every token the grammar forbids next set to -inf."""
        import llguidance.torch

        llguidance.torch.fill_next_token_bitmask(self.m, self.bitmask, 0)
        allowed = ((self.bitmask[0].unsqueeze(-1) >> self._shifts) & 1).view(-1).bool()
        allowed = allowed[: row.shape[-1]].to(row.device)
        if not bool(allowed.any()):
            raise RuntimeError(f"the grammar allows no next token: {self.m.get_error()}")
        return row.masked_fill(~allowed, float("-inf"))

    def accept(self, token: int) -> None:
        """Advance past a sampled token (always one the mask allowed)."""
        if not self.m.consume_token(token) or self.m.is_error():
            raise RuntimeError(f"the grammar rejected token {token}: {self.m.get_error()}")

    def done(self) -> bool:
        """True once the document is complete and nothing but the end may follow."""
        return bool(self.m.is_stopped())


class Grammars:
    """Compiles `response_format` grammars for one tokenizer (its vocabulary is read once)."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_ids: list[int]):
        import llguidance.hf

        self.vocab_size = vocab_size
        self.tok = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size, eos_token=stop_ids)

    def matcher(self, response_format: dict[str, Any]) -> Matcher:
        """A fresh matcher for a request; an unusable schema is a 400 naming the field."""
        import llguidance

        schema = schema_of(response_format)
        param = (
            "response_format.json_schema.schema"
            if response_format.get("type") == "json_schema"
            else "response_format"
        )
        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(
                json.dumps(schema), defaults=JSON_OPTIONS
            )
        except (ValueError, TypeError) as e:
            raise RequestError(f"{param}: {e}", 400, "invalid_value", param) from None
        err = llguidance.LLMatcher.validate_grammar(grammar, self.tok)
        if err and not err.startswith("WARNING"):
            raise RequestError(f"{param}: {err.splitlines()[0]}", 400, "invalid_value", param)
        m = llguidance.LLMatcher(self.tok, grammar, log_level=0)
        if m.is_error():
            raise RequestError(
                f"{param}: {m.get_error().splitlines()[0]}", 400, "invalid_value", param
            )
        return Matcher(m, self.vocab_size)
