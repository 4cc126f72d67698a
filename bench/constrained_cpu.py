"""Constrained decoding on CPU: which library should back `response_format` in `idtune serve`?

For each candidate (xgrammar, llguidance, outlines-core, lm-format-enforcer) and the default
model's tokenizer: the time to build the tokenizer data, to compile a JSON schema and the
any-JSON grammar (`json_object`), and the mean time per token to compute the allowed-token mask,
apply it to a logits row and advance, while force-feeding the tokens of a valid document (best
of --repeat; the same tokens for every library; a library that rejects one of them fails the
row). Install the candidates first: pip install xgrammar llguidance outlines-core
lm-format-enforcer.

    .venv/bin/python bench/constrained_cpu.py            # default model's tokenizer
    .venv/bin/python bench/constrained_cpu.py --repeat 3

Prints a table and writes bench/results/constrained_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer", "minimum": 0},
        "languages": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
        "role": {"enum": ["assistant", "tutor", "critic"]},
        "score": {"type": "number"},
    },
    "required": ["name", "age", "languages", "role"],
    "additionalProperties": False,
}
DOCUMENT = {
    "name": "ZK-Jackie's assistant",
    "age": 2,
    "languages": ["English", "中文", "Français"],
    "role": "assistant",
    "score": 0.975,
}


def bytes_of_tokens(tok, vocab_size: int) -> dict[int, bytes]:
    """Each token id's bytes (byte-level BPE: undo GPT-2's byte-to-unicode mapping)."""
    inverse = {c: b for b, c in _gpt2_bytes_to_unicode().items()}
    special = set(tok.all_special_ids)
    out = {}
    for i in range(min(vocab_size, len(tok))):
        if i in special:
            continue
        piece = tok.convert_ids_to_tokens(i)
        if piece is None:
            continue
        try:
            out[i] = bytes(inverse[c] for c in piece)
        except KeyError:
            out[i] = piece.encode()
    return out


def _gpt2_bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte → printable character table (byte-level BPE vocabularies)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    keep += range(ord("®"), ord("ÿ") + 1)
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


class XGrammar:
    name = "xgrammar"

    def __init__(self, tok, vocab_size, stops):
        import xgrammar as xgr

        self.xgr, self.V = xgr, vocab_size
        info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=vocab_size, stop_token_ids=stops)
        self.compiler = xgr.GrammarCompiler(info, cache_enabled=False)
        self.bitmask = xgr.allocate_token_bitmask(1, vocab_size)

    def compile(self, schema):
        if schema is None:
            return self.compiler.compile_builtin_json_grammar()
        return self.compiler.compile_json_schema(json.dumps(schema))

    def start(self, compiled):
        return self.xgr.GrammarMatcher(compiled)

    def step(self, m, logits, token) -> bool:
        m.fill_next_token_bitmask(self.bitmask)
        self.xgr.apply_token_bitmask_inplace(logits, self.bitmask)
        return m.accept_token(token)


class LLGuidance:
    name = "llguidance"

    def __init__(self, tok, vocab_size, stops):
        import llguidance
        import llguidance.hf
        import llguidance.torch

        self.ll = llguidance
        self.tok = llguidance.hf.from_tokenizer(tok, n_vocab=vocab_size, eos_token=stops)
        self.bitmask = llguidance.torch.allocate_token_bitmask(1, self.tok.vocab_size)

    def compile(self, schema):
        grammar = self.ll.LLMatcher.grammar_from_json_schema(
            schema if schema is not None else {"type": "object"}
        )
        err = self.ll.LLMatcher.validate_grammar(grammar, self.tok)
        assert not err, err
        return grammar

    def start(self, compiled):
        return self.ll.LLMatcher(self.tok, compiled)

    def step(self, m, logits, token) -> bool:
        self.ll.torch.fill_next_token_bitmask(m, self.bitmask, 0)
        self.ll.torch.apply_token_bitmask_inplace(logits, self.bitmask)
        return m.consume_token(token) and not m.is_error()


class OutlinesCore:
    name = "outlines-core"

    def __init__(self, tok, vocab_size, stops):
        from outlines_core import Vocabulary

        by_bytes: dict[bytes, list[int]] = {}
        for i, b in bytes_of_tokens(tok, vocab_size).items():
            by_bytes.setdefault(b, []).append(i)
        self.vocab = Vocabulary(stops[0], by_bytes)
        self.V = vocab_size

    def compile(self, schema):
        from outlines_core import Index
        from outlines_core.json_schema import build_regex_from_schema

        regex = build_regex_from_schema(json.dumps(schema if schema is not None else SCHEMA_ANY))
        return Index(regex, self.vocab)

    def start(self, compiled):
        from outlines_core import Guide

        return Guide(compiled)

    def step(self, m, logits, token) -> bool:
        import torch

        allowed = m.get_tokens()
        keep = torch.zeros(self.V, dtype=torch.bool)
        keep[allowed] = True
        logits[0].masked_fill_(~keep, float("-inf"))
        if token not in allowed:
            return False
        m.advance(token)
        return True


class LMFormatEnforcer:
    name = "lm-format-enforcer"

    def __init__(self, tok, vocab_size, stops):
        # Its transformers integration does not import on transformers 5
        # (transformers.tokenization_utils moved); the same data, built as that module does.
        from lmformatenforcer import TokenEnforcerTokenizerData

        zero = tok.encode("0", add_special_tokens=False)[-1]
        special = set(tok.all_special_ids)
        regular = []
        for i in range(min(vocab_size, len(tok))):
            if i in special:
                continue
            after_zero = tok.decode([zero, i])[1:]
            regular.append((i, after_zero, len(after_zero) > len(tok.decode([i]))))

        def decode(ids):
            return tok.decode(ids).rstrip("\ufffd")

        self.data = TokenEnforcerTokenizerData(regular, decode, stops, False, vocab_size)
        self.V = vocab_size

    def compile(self, schema):
        return schema

    def start(self, compiled):
        from lmformatenforcer import JsonSchemaParser, TokenEnforcer

        return [TokenEnforcer(self.data, JsonSchemaParser(compiled)), []]

    def step(self, m, logits, token) -> bool:
        import torch

        enforcer, seq = m
        allowed = enforcer.get_allowed_tokens(seq)
        allowed = list(allowed.allowed_tokens if hasattr(allowed, "allowed_tokens") else allowed)
        keep = torch.zeros(self.V, dtype=torch.bool)
        keep[allowed] = True
        logits[0].masked_fill_(~keep, float("-inf"))
        seq.append(token)
        return token in set(allowed)


SCHEMA_ANY = {"type": "object"}
LIBRARIES = [XGrammar, LLGuidance, OutlinesCore, LMFormatEnforcer]


def measure(lib_cls, tok, vocab_size, stops, tokens, repeat: int) -> dict:
    import torch

    row: dict = {"library": lib_cls.name}
    try:
        t = time.perf_counter()
        lib = lib_cls(tok, vocab_size, stops)
        row["tokenizer_setup_s"] = round(time.perf_counter() - t, 3)
        for label, schema in (("json_schema", SCHEMA), ("json_object", None)):
            t = time.perf_counter()
            compiled = lib.compile(schema)
            row[f"compile_{label}_s"] = round(time.perf_counter() - t, 3)
            best = None
            for _ in range(repeat):
                m = lib.start(compiled)
                logits = torch.zeros(1, vocab_size)
                t = time.perf_counter()
                for k, token in enumerate(tokens):
                    logits.zero_()
                    if not lib.step(m, logits, token):
                        raise RuntimeError(f"{label}: token {k} ({token}) rejected")
                per = (time.perf_counter() - t) / len(tokens) * 1000
                best = per if best is None else min(best, per)
            row[f"mask_{label}_ms_per_token"] = round(best, 3)
    except Exception as e:
        row["error"] = f"{type(e).__name__}: {str(e)[:200]}"
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench/results/constrained_cpu.json"))
    args = ap.parse_args()

    import importlib.metadata as md

    import torch
    from transformers import AutoConfig

    from idtune import models
    from idtune.generate import stop_token_ids

    src = models.locate(args.model)
    tok = models.load_tokenizer(src.base, models.template_for(args.model, None))
    vocab_size = AutoConfig.from_pretrained(src.base).vocab_size
    stops = stop_token_ids(tok)
    text = json.dumps(DOCUMENT, ensure_ascii=False)
    tokens = tok(text, add_special_tokens=False)["input_ids"]
    load = os.getloadavg()
    rows = [measure(lib, tok, vocab_size, stops, tokens, args.repeat) for lib in LIBRARIES]
    versions = {}
    for pkg in ("xgrammar", "llguidance", "outlines-core", "lm-format-enforcer"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    cols = [
        "tokenizer_setup_s",
        "compile_json_schema_s",
        "mask_json_schema_ms_per_token",
        "compile_json_object_s",
        "mask_json_object_ms_per_token",
    ]
    print(f"{args.model}: vocabulary {vocab_size}, document of {len(tokens)} tokens")
    print(f"{'library':<20}" + "".join(f"{c[:22]:>24}" for c in cols))
    for r in rows:
        line = f"{r['library']:<20}" + "".join(f"{str(r.get(c, '-')):>24}" for c in cols)
        print(line + (f"  {r['error']}" if "error" in r else ""))
    result = {
        "benchmark": "constrained_cpu",
        "model": args.model,
        "vocab_size": vocab_size,
        "document_tokens": len(tokens),
        "versions": versions,
        "machine": {
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "load_average_before": [round(x, 2) for x in load],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
