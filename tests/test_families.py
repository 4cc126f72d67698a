"""Model families are data (assets/families/*.yaml): each real template (tests/data) is found as
its family, by its template before its name; stop tokens are eos ∪ generation_config ∪ the
family's end of turn."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from idtune import generate
from idtune.data import families, templates
from idtune.errors import UserError

DATA = Path(__file__).parent / "data"
REAL = json.loads((DATA / "chat_templates.json").read_text("utf-8"))
# each real template in tests/data → the family it belongs to
EXPECTED = {"smollm2": "smollm2", "qwen2.5": "qwen2.5", "internlm2": "internlm2_chat"}
# the current families' real templates (tests/data/templates, sources in its SOURCES.md)
for _file in (DATA / "templates").glob("*.jinja"):
    REAL[_file.stem] = _file.read_text("utf-8")
EXPECTED |= {
    "qwen3": "qwen3",
    "deepseek-r1-distill-qwen": "deepseek_r1_distill",
    "gemma3": "gemma3",
    "llama3.1": "llama3.1",
    "llama3.2": "llama3.1",
    "internlm3": "internlm2_chat",
}


def test_every_family_file_loads_and_is_named_for_its_file():
    fams = families.all_families()
    assert {"smollm2", "qwen2", "qwen2.5", "chatml", "internlm2_chat", "llama3"} <= set(fams)
    for fam in fams.values():
        assert fam.end_of_turn, fam.name  # a family that never stops is no family
        if fam.ollama:
            assert set(fam.ollama) == {"template", "stop", "bos"}, fam.name


@pytest.mark.parametrize("real", sorted(EXPECTED))
def test_a_real_template_is_found_as_its_family_whatever_the_name(real):
    fam = families.detect(REAL[real], model="some/renamed-model")
    assert fam is not None and fam.name == EXPECTED[real]
    # no other family scores as high: the match is not an accident of file order
    scores = sorted(
        (sum(map(len, f.template_markers)), f.name)
        for f in families.all_families().values()
        if f.template_markers and all(m in REAL[real] for m in f.template_markers)
    )
    assert len(scores) == 1 or scores[-1][0] > scores[-2][0]


@pytest.mark.parametrize("name", templates.names())
def test_each_named_template_is_found_as_its_own_family(name):
    assert families.by_template(templates.get(name)).name == name


def test_thinking_conventions():
    qwen3, r1 = families.get("qwen3"), families.get("deepseek_r1_distill")
    assert qwen3.thinks and qwen3.thinking["style"] == "hybrid"
    assert qwen3.thinking["kwarg"] == "enable_thinking"
    assert r1.thinks and r1.thinking["style"] == "always"
    assert not families.get("gemma3").thinks and families.get("gemma3").system == "first_user"
    # the MoE model is the same family as the dense ones
    assert families.detect(None, "qwen3_moe", "Qwen/Qwen3-30B-A3B").name == "qwen3"


def test_template_first_then_model_type_then_name():
    llama = families.get("llama3").prompt_template
    # the template wins over a name that says otherwise
    assert families.detect(llama, "internlm2", "Qwen/Qwen2.5-7B").name == "llama3"
    assert (
        families.detect("{{ messages }}", "internlm2", "Qwen/Qwen2.5-7B").name == "internlm2_chat"
    )
    assert families.detect(None, None, "Qwen/Qwen2.5-7B-Instruct").name == "qwen2.5"
    assert families.detect("{{ messages }}", None, "my-model") is None


def test_unknown_family_and_broken_file_are_one_line():
    with pytest.raises(UserError, match="unknown model family 'nope'; known: "):
        families.get("nope")
    with pytest.raises(UserError, match=r"x\.yaml: system 'sideways': one of role, first_user"):
        families._family("x.yaml", {"name": "x", "system": "sideways"})
    with pytest.raises(UserError, match="needs `open` and `close`"):
        families._family("x.yaml", {"name": "x", "thinking": {"style": "hybrid"}})


class _GenConfig:
    def __init__(self, eos):
        self.eos_token_id = eos


class _Model:
    def __init__(self, eos):
        self.generation_config = _GenConfig(eos)


def test_stop_tokens_join_eos_generation_config_and_the_familys_end_of_turn(tiny_tokenizer):
    tok = tiny_tokenizer  # SmolLM2's template: ChatML, eos <|im_end|>
    vocab = tok.get_vocab()
    im_end, eot, endoftext = vocab["<|im_end|>"], vocab["<|eot_id|>"], vocab["<|endoftext|>"]
    assert generate.stop_token_ids(tok) == [im_end]
    # generation_config.json's eos list counts (a Gemma 3 or Llama 3.1 ends on one of several)
    assert generate.stop_token_ids(tok, model=_Model([endoftext, eot])) == sorted(
        {im_end, eot, endoftext}
    )
    assert generate.stop_token_ids(tok, model=_Model(endoftext)) == sorted({im_end, endoftext})
    # a named template's family decides the end of turn
    assert eot in generate.stop_token_ids(tok, "llama3")
    # Gemma 3: <end_of_turn> ends a turn although eos is <eos> and no generation_config says so
    tok.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    tok.chat_template = REAL["gemma3"]
    assert generate.stop_token_ids(tok) == sorted(
        {im_end, tok.convert_tokens_to_ids("<end_of_turn>")}
    )
    # a template of no known family: every family's end-of-turn token the vocabulary has
    tok.chat_template = "{{ messages }}"
    assert {im_end, eot} <= set(generate.stop_token_ids(tok))


def test_every_alias_names_a_family_that_fits_its_hub_id():
    from idtune.aliases import ALIASES

    for alias in ALIASES.values():
        assert alias.family in families.all_families(), alias.name
        # where the name says the family, it says the same (the name is only the last resort)
        by_name = families.detect(None, None, alias.hub_id)
        assert by_name is None or by_name.name == alias.family, alias.name


def test_a_gated_model_without_a_token_is_one_line_before_any_work(tmp_path, capsys):
    from helpers import cli

    data = tmp_path / "d.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "hi"}, '
                    '{"role": "assistant", "content": "hello"}]}\n')  # fmt: skip
    rc = cli("train", "identity-lora", "--set", "model=gemma-3-1b-it", "--set", f"data={data}",
             "--set", f"output_dir={tmp_path / 'run'}")  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "gemma-3-1b-it (google/gemma-3-1b-it) is gated on the hub" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_reasoning_is_split_from_the_answer(tiny_tokenizer):
    tok = tiny_tokenizer
    ask = [{"role": "user", "content": "Who are you?"}]
    tok.chat_template = REAL["qwen3"]
    split = generate.split_reasoning
    assert split(tok, ask, "<think>\nWho am I?\n</think>\n\nI am Nova.") == (
        "Who am I?",
        "I am Nova.",
    )
    assert split(tok, ask, "<think>\nWho am I? Let me") == ("Who am I? Let me", "")  # cut
    assert split(tok, ask, "I am Nova.", enable_thinking=False) == ("", "I am Nova.")
    # an R1 distill's prompt opens the block: its output starts inside the reasoning
    tok.chat_template = REAL["deepseek-r1-distill-qwen"]
    assert split(tok, ask, "Who am I?\n</think>\n\nI am Nova.") == ("Who am I?", "I am Nova.")
    assert split(tok, ask, "Who am I? Let me") == ("Who am I? Let me", "")
    tok.chat_template = REAL["gemma3"]  # no thinking: the whole text is the answer
    assert split(tok, ask, " <think>x</think> I am Nova.") == ("", "<think>x</think> I am Nova.")


def test_thinking_switch_only_where_the_template_has_one(tiny_tokenizer):
    tok = tiny_tokenizer
    tok.chat_template = REAL["qwen3"]
    assert generate.thinking_kwargs(tok, False) == {"enable_thinking": False}
    assert generate.thinking_kwargs(tok, None) == {}
    tok.chat_template = REAL["deepseek-r1-distill-qwen"]
    assert generate.thinking_kwargs(tok, False) == {}  # an R1 distill always thinks


def test_chat_think_toggle_reaches_the_template_and_history_keeps_the_answer(tmp_path, monkeypatch):
    import io

    from tiny import build_family_model_dir

    from idtune import chat

    seen = []

    def fake_stream(model, tokenizer, messages, template_kwargs=None, **kw):
        seen.append(([dict(m) for m in messages], template_kwargs))
        yield "<think>\nhmm\n</think>\n\n"
        yield f"answer {len(seen)}"

    class Script(io.StringIO):
        def isatty(self):
            return False

    model = build_family_model_dir(tmp_path / "qwen3", "qwen3")
    monkeypatch.setattr(chat.generate, "stream", fake_stream)
    out = io.StringIO()
    chat.run(str(model), stdin=Script("hi\n/think\nagain\n/think\nthird\n"), stdout=out)
    lines = out.getvalue().splitlines()
    assert "(thinking off)" in lines and "(thinking on)" in lines
    assert [kw for _, kw in seen] == [{}, {"enable_thinking": False}, {"enable_thinking": True}]
    assert seen[1][0][1] == {"role": "assistant", "content": "answer 1"}  # no reasoning kept


REAL_OF = {"qwen3": "qwen3", "deepseek_r1_distill": "deepseek-r1-distill-qwen", "gemma3": "gemma3",
           "llama3.1": "llama3.1"}  # fmt: skip
CONVERSATIONS = [
    [{"role": "user", "content": "Who are you?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who are you?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
     {"role": "user", "content": "Who made you?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who are you?"},
     {"role": "assistant", "content": "<think>\nName.\n</think>\n\nI am Nova."}],
]  # fmt: skip


@pytest.mark.parametrize("name", sorted(REAL_OF))
def test_named_templates_of_current_families_render_as_the_real_ones(name, tiny_tokenizer):
    """`--prompt-template NAME` for a checkpoint without a template: idtune's own template of
    the family renders plain conversations exactly as the published one does (the last answer
    as training renders it, with and without a generation prompt, both thinking modes)."""
    tok = tiny_tokenizer
    tok.bos_token = "<s>"

    def text(template: str, messages: list[dict], **kw) -> str:
        tok.chat_template = template
        gen = messages[-1]["role"] != "assistant"
        return tok.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=gen, date_string="26 Jul 2024", **kw
        )

    own, real = templates.get(name), REAL[REAL_OF[name]]
    assert families.by_template(own).name == name
    for messages in CONVERSATIONS:
        for kw in ({}, {"enable_thinking": False}):
            assert text(own, messages, **kw) == text(real, messages, **kw), (messages, kw)
