"""`profile_steps`: torch.profiler over chosen training steps, through the real CLI (CPU)."""

import json

import pytest
from helpers import cli
from test_train import identity_data, train_args  # noqa: F401 (a fixture)

from idtune import profiling


def test_parse_steps():
    assert profiling.parse_steps("6-7") == (6, 7)
    assert profiling.parse_steps(" 6 - 7 ") == (6, 7)
    assert profiling.parse_steps(6) == (6, 6)
    assert profiling.parse_steps("") is None and profiling.parse_steps(None) is None
    for bad in ("7-6", "0-2", "a", "6-", True, "1-2-3"):
        with pytest.raises(ValueError):
            profiling.parse_steps(bad)


def test_profiled_steps_write_a_trace_and_a_table(tmp_path, tiny_model, identity_data):  # noqa: F811
    run = tmp_path / "run"
    args = train_args(tiny_model, identity_data, run, "--set", "max_steps=4",
                      "--set", "profile_steps=2-3")  # fmt: skip
    assert cli(*args) == 0
    table = (run / "profile" / "top_rank0.md").read_text()
    assert table.startswith("# torch.profiler, steps 2-3")
    assert "for 2 step(s)" in table and "aten::" in table and "by CPU self time" in table
    trace = json.loads((run / "profile" / "trace_rank0.json").read_text())
    names = {e.get("name") for e in trace["traceEvents"]}
    assert any(str(n).startswith("aten::") for n in names)
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]  # the run itself goes on to its end


@pytest.mark.parametrize(
    ("value", "says"), [("3-2", "FIRST-LAST"), ("5-6", "past the run's last step")]
)
def test_bad_profile_steps_are_one_line_before_training(tmp_path, tiny_model, identity_data,  # noqa: F811
                                                        capsys, value, says):  # fmt: skip
    run = tmp_path / "run"
    args = train_args(tiny_model, identity_data, run, "--set", "max_steps=4",
                      "--set", f"profile_steps={value}")  # fmt: skip
    assert cli(*args) == 2
    err = capsys.readouterr().err
    assert "profile_steps" in err and says in err and "Traceback" not in err
    assert not (run / "log.jsonl").exists()
