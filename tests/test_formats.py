"""Loading XTuner / OpenAI / Alpaca / ShareGPT data, and one-line errors for bad records."""

import json

import pytest
from helpers import cli

from idtune.data import formats
from idtune.errors import UserError

SEED_ANSWER = "我是ZK-Jackie的小助手，内在是上海AI实验室书生·浦语的7B大模型哦"


def seed_dataset(path, scale=3):
    """myDataset.json exactly as the course note's build_dataset.py writes it."""
    data = [
        {"conversation": [{"input": q, "output": SEED_ANSWER}]}
        for q in ("请做一下自我介绍", "请介绍一下你自己", "说说你自己")
    ]
    for _ in range(scale):
        for j in range(3):
            data.append(data[j])
    path.write_text(json.dumps(data, ensure_ascii=False, indent=4))
    return path


def test_seed_dataset_loads_unchanged(tmp_path):
    convs = formats.load_files([seed_dataset(tmp_path / "myDataset.json")])
    assert len(convs) == 12
    assert convs[1] == [
        {"role": "user", "content": "请介绍一下你自己"},
        {"role": "assistant", "content": SEED_ANSWER},
    ]


def test_all_formats_map_to_messages(tmp_path):
    rows = [
        {
            "conversation": [
                {"system": "S", "input": "a", "output": "b"},
                {"input": "c", "output": "d"},
            ]
        },
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
        {"instruction": "Translate", "input": "hola", "output": "hello"},
        {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]},
    ]
    f = tmp_path / "mixed.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    convs = formats.load_files([f])
    assert [m["role"] for m in convs[0]] == ["system", "user", "assistant", "user", "assistant"]
    assert convs[2][0] == {"role": "user", "content": "Translate\n\nhola"}
    assert convs[3][1] == {"role": "assistant", "content": "b"}


@pytest.mark.parametrize(
    "record, message",
    [
        ({"conversation": [{"input": "q"}]}, "has no field 'output'"),
        ({"messages": [{"role": "user", "content": "q"}]}, "must end with an assistant turn"),
        ({"messages": [{"role": "bot", "content": "q"}]}, "role 'bot' is not one of"),
        ({"prompt": "x"}, "unknown record format"),
        (
            {"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "a"}]},
            "must be a string",
        ),
    ],
)
def test_bad_record_names_file_and_line(tmp_path, record, message):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps(good) + "\n\n" + json.dumps(good) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(UserError) as e:
        formats.load_files([f])
    assert str(e.value).startswith(f"{f}:4: ")
    assert message in str(e.value)


def test_bad_record_in_json_array_names_its_line(tmp_path):
    f = tmp_path / "d.json"
    f.write_text(
        '[\n  {"conversation": [{"input": "a", "output": "b"}]},\n  {"conversation": 5}\n]'
    )
    with pytest.raises(UserError, match=r"d.json:3: field 'conversation' must be a non-empty list"):
        formats.load_files([f])


def test_cli_reports_bad_data_in_one_line_exit_2(tmp_path, tiny_model, capsys):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    assert cli("data", "check", f, "--model", tiny_model) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {f}:1: the conversation must end with an assistant turn"


def test_invalid_json_is_reported_with_line(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"messages": []}\n{not json}\n')
    with pytest.raises(UserError, match=r"d.jsonl:1: field 'messages' must be a non-empty list"):
        formats.load_files([f])
    f.write_text(
        '{"messages": [{"role": "user", "content": "q"}, '
        '{"role": "assistant", "content": "a"}]}\n{not json}\n'
    )
    with pytest.raises(UserError, match=r"d.jsonl:2: invalid JSON"):
        formats.load_files([f])


def test_data_check_reports_counts_histogram_and_marked_sample(tmp_path, tiny_model, capsys):
    f = seed_dataset(tmp_path / "myDataset.json")
    assert cli("data", "check", f, "--model", tiny_model) == 0
    out = capsys.readouterr().out
    assert f"{f}: 12 conversations" in out
    assert "conversations: 12 (0 with a system prompt; 1 assistant turn: 12)" in out
    assert "token lengths:" in out
    assert f"[[{SEED_ANSWER}<|im_end|>]]" in out  # exactly the answer and its end-of-turn token
