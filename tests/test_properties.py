"""Property tests (issue 14): any bytes given to a dataset reader or the recipe reader either load
or fail with the one-line UserError the CLI prints, never another exception."""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from idtune import recipes
from idtune.data import formats
from idtune.errors import UserError

SETTINGS = settings(
    max_examples=int(__import__("os").environ.get("IDTUNE_HYPOTHESIS_EXAMPLES", 250)),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
FIELDS = ["messages", "conversation", "conversations", "instruction", "input", "output"]
FIELDS += ["system", "role", "content", "from", "value", "identity"]
ROLES = ["system", "user", "assistant", "human", "gpt", "bot", "tool"]

json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_leaf |= st.sampled_from(ROLES + FIELDS)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=25,
)
# records close to the real formats, so the parsers get past "not JSON" most of the time
turn = st.fixed_dictionaries(
    {"role": st.sampled_from(ROLES) | json_value, "content": st.text(max_size=30) | json_value}
)
sharegpt_turn = st.fixed_dictionaries(
    {"from": st.sampled_from(ROLES) | json_value, "value": st.text(max_size=30) | json_value}
)
xtuner_turn = st.dictionaries(
    st.sampled_from(["input", "output", "system"]), st.text(max_size=30) | json_value
)
answer = st.text(min_size=1, max_size=30).filter(str.strip)
valid = st.lists(st.tuples(st.text(max_size=30), answer), min_size=1, max_size=3).map(
    lambda turns: {
        "messages": [
            m
            for q, a in turns
            for m in ({"role": "user", "content": q}, {"role": "assistant", "content": a})
        ]
    }
)
record = st.one_of(
    valid,
    valid.map(lambda r: {"conversation": [{"input": m["content"]} for m in r["messages"][:1]]}),
    st.fixed_dictionaries({"messages": st.lists(turn, max_size=5) | json_value}),
    st.fixed_dictionaries({"conversations": st.lists(sharegpt_turn, max_size=5)}),
    st.fixed_dictionaries({"conversation": st.lists(xtuner_turn, max_size=3) | json_value}),
    st.dictionaries(st.sampled_from(["instruction", "input", "output", "system"]), json_value),
    json_value,
)


def _serialize(records: list, suffix: str) -> bytes:
    if suffix == ".jsonl":
        return "\n".join(json.dumps(r, ensure_ascii=False) for r in records).encode()
    return json.dumps(records, ensure_ascii=False).encode()


# what JSON allows and Python's json refuses with other exceptions: deep nesting, long numbers
nested = st.integers(500, 3000).map(lambda n: b'{"messages": ' + b"[" * n + b"]" * n + b"}")
long_number = st.integers(4000, 6000).map(lambda n: b'{"instruction": ' + b"7" * n + b"}")
data_bytes = st.one_of(
    nested,
    long_number,
    st.tuples(st.lists(valid, min_size=1, max_size=4), st.sampled_from([".json", ".jsonl"])).map(
        lambda t: _serialize(*t)
    ),
    st.binary(max_size=300),
    st.text(alphabet=string.printable + '{}[]":,\u2028é你', max_size=300).map(str.encode),
    st.tuples(st.lists(record, max_size=4), st.sampled_from([".json", ".jsonl"])).map(
        lambda t: _serialize(*t)
    ),
)


@st.composite
def damaged(draw, source: st.SearchStrategy[bytes]) -> bytes:
    """Bytes, sometimes cut short or with a few bytes changed (a torn or corrupted file)."""
    data = bytearray(draw(source))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2, 3]))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.sampled_from([False, False, False, True])) and data:
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def _one_line(e: UserError) -> None:
    text = str(e)
    assert text and "\n" not in text and "\r" not in text, repr(text)
    assert len(text) < 1000, text[:200]


@SETTINGS
@given(data=damaged(data_bytes), suffix=st.sampled_from([".json", ".jsonl"]))
def test_data_readers_load_or_fail_with_one_line(data, suffix):
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / f"data{suffix}"
        f.write_bytes(data)
        try:
            convs = formats.load_files([f])
        except UserError as e:
            event("refused")
            _one_line(e)
            assert str(e).startswith(str(f)), str(e)
            return
    event("loaded")
    assert convs
    for messages in convs:  # what loads is a well-formed conversation
        formats.validate(messages)
        assert all(isinstance(m["content"], str) for m in messages)


KEYS = [f.name for f in recipes.dataclasses.fields(recipes.TrainConfig)]
KEYS += [f"lora.{k}" for k in ("r", "alpha", "dropout", "target_modules", "top_layers")]
KEYS += ["rejected.share", "regularization.n", "regularization.files", "identity.name"]
yaml_value = st.recursive(
    json_leaf | st.sampled_from(["2e-4", "-1", "1e999", ".nan", "lora", "auto", "[", "{a: 1}"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=15,
)


def _nest(pairs: list[tuple[str, object]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {}) if isinstance(node.get(p, {}), dict) else {}
        node[leaf] = value
    return out


recipe_bytes = st.one_of(
    st.sampled_from(sorted(recipes.RECIPES_DIR.glob("*.yaml"))).map(Path.read_bytes),
    st.binary(max_size=300),
    st.text(alphabet=string.printable + "é你\u2028", max_size=300).map(str.encode),
    st.lists(st.tuples(st.sampled_from(KEYS), yaml_value), max_size=6).map(
        lambda pairs: yaml.safe_dump(_nest(pairs), allow_unicode=True).encode()
    ),
)
override = st.tuples(
    st.sampled_from(KEYS) | st.text(max_size=8),
    st.text(max_size=12) | yaml_value.map(lambda v: yaml.safe_dump(v, default_flow_style=True)),
).map(lambda kv: f"{kv[0]}={kv[1].strip()}")


good_override = st.sampled_from(
    ["lora.r=8", "lr=1e-3", "epochs=2", "max_steps=5", "method=full", "data=a.jsonl,b.json"]
    + ["rejected.share=0.5", "seed=7", "eval_prompts=", "identity.name=Nova", "dtype=bf16"]
)


@SETTINGS
@given(
    data=damaged(recipe_bytes),
    overrides=st.lists(good_override | override | st.text(max_size=10), max_size=3),
)
def test_recipe_reader_loads_or_fails_with_one_line(data, overrides):
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "recipe.yaml"
        f.write_bytes(data)
        try:
            cfg = recipes.read_config(str(f), overrides)
        except UserError as e:
            event("refused")
            _one_line(e)
            return
    event("loaded")
    assert isinstance(cfg, recipes.TrainConfig)
    assert (
        cfg.lora.r >= 1
        and cfg.lr > 0
        and cfg.grad_accum >= 1
        and cfg.method
        in (
            "lora",
            "qlora",
            "full",
        )
    )
