"""`idtune data check` on data people really have (issue 14, item 16): a 5 MB record shows
as a bounded excerpt, and a dataset of copies says how few distinct conversations it holds."""

from __future__ import annotations

import json

from helpers import cli


def test_data_check_shows_an_excerpt_of_a_huge_record(tmp_path, capsys, tiny_model):
    f = tmp_path / "big.jsonl"
    answer = "word " * 1_000_000  # a 5 MB record on one line
    row = {
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": answer}]
    }
    f.write_text(json.dumps(row) + "\n")
    assert cli("data", "check", f, "--model", tiny_model) == 0
    out = capsys.readouterr().out
    assert len(out) < 10_000
    assert "more characters not shown" in out
    assert "1 conversation over 50,000 characters, counted up to that" in out


def test_data_check_reports_duplicates(tmp_path, capsys, tiny_model):
    pairs = [("Who are you?", "I am Nova."), ("你是谁？", "我是Nova。"), ("Who made you?", "Acme.")]
    rows = [
        {"conversation": [{"input": q, "output": a}]} for _ in range(2000) for q, a in pairs
    ]  # the tutorial's one question copied thousands of times
    f = tmp_path / "copied.json"
    f.write_text(json.dumps(rows, ensure_ascii=False))
    assert cli("data", "check", f, "--model", tiny_model) == 0
    out = capsys.readouterr().out
    assert "conversations: 6000" in out
    assert "only 3 distinct conversations among 6000 (the most repeated appears 2000 times)" in out

    f.write_text(json.dumps(rows[:3], ensure_ascii=False))
    assert cli("data", "check", f, "--model", tiny_model) == 0
    assert "duplicates: none" in capsys.readouterr().out
