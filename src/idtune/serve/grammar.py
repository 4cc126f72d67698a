"""`response_format` for the local engine: JSON constrained by llguidance's token masks.

llguidance was chosen over xgrammar, outlines-core and lm-format-enforcer by
`bench/constrained_cpu.py` (BENCHMARKS.md): xgrammar-like mask speed on this CPU, one small wheel
with no dependencies (xgrammar pulls in ~1 GB of triton), released monthly.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from .engine import RequestError

log = logging.getLogger("idtune.serve")

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
    """One request's grammar state: masks a logits row, follows the sampled tokens.

    A schema llguidance compiles may still admit no document (`{"$ref": "#"}`), or dead-end
    part way (a `$ref` cycle under a required key): that is the request's own error, a
    `RequestError` (400) naming `param`, never llguidance's internal state.
    """

    def __init__(self, matcher: Any, vocab_size: int, param: str = "response_format"):
        import torch

        self.m, self.vocab_size, self.param = matcher, vocab_size, param
        self.bitmask = torch.zeros((1, (vocab_size + 31) // 32), dtype=torch.int32)
        self._shifts = torch.arange(32, dtype=torch.int32)
        self._filled = False  # the bitmask holds the mask for the current state
        self.consumed = 0

    def _fill(self):
        """The allowed-token mask for the current state (computed once per state)."""
        import llguidance.torch

        if not self._filled:
            llguidance.torch.fill_next_token_bitmask(self.m, self.bitmask, 0)
            self._filled = True
        allowed = ((self.bitmask[0].unsqueeze(-1) >> self._shifts) & 1).view(-1).bool()
        if self.m.is_error() or not bool(allowed.any()):
            raise self._dead_end()
        return allowed

    def check_start(self) -> None:
        """Raise the request's 400 now if the grammar cannot even begin a document."""
        self._fill()

    def mask(self, row):
        """A copy of `row` with every token the grammar forbids next set to -inf."""
        allowed = self._fill()[: row.shape[-1]].to(row.device)
        return row.masked_fill(~allowed, float("-inf"))

    def accept(self, token: int) -> None:
        """Advance past a sampled token (always one the mask allowed)."""
        self._filled = False
        if not self.m.consume_token(token) or self.m.is_error():
            raise self._dead_end()
        self.consumed += 1

    def done(self) -> bool:
        """True once the document is complete and nothing but the end may follow."""
        return bool(self.m.is_stopped())

    def _dead_end(self) -> RequestError:
        detail = (self.m.get_error() or "no token allowed").splitlines()[0]
        log.info("grammar dead end after %d tokens: %s", self.consumed, detail)
        where = f" (generation stopped after {self.consumed} tokens)" if self.consumed else ""
        return RequestError(
            f"{self.param}: no JSON document satisfies this schema{where}; "
            "check it for a $ref that only refers to itself or for contradicting keywords",
            400,
            "invalid_value",
            self.param,
        )


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
        matcher = Matcher(m, self.vocab_size, param)
        matcher.check_start()  # a schema with no document at all is refused before admission
        return matcher
