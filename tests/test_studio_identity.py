"""The studio's Identity step with the identity profile (issue 29), in headless chromium: what the
assistant is built on (prefilled from the Model in step 2, as `idtune data identity --model`
derives it), its purpose and its maker's facts, in both languages, shown in the preview and
passed to the `idtune data identity` the step runs, whose data holds the answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chromium import CHROMIUM
from test_studio import (  # noqa: F401
    PASSWORD,
    env,
    field,
    fill,
    login,
    model_in,
    text,
    wait_for,
)

from idtune import aliases
from idtune.errors import UserError
from idtune.serve import server
from idtune.studio import build_app, jobs, steps

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="run scripts/ensure_debian.sh"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing"),
]
BASED_ON = "TinyLlama-Random by the idtune tests"
BASED_ON_ZH = "idtune测试的TinyLlama-Random"
PURPOSE = "a study assistant for the camp's students"
PURPOSE_ZH = "夏令营学员的学习助手"
FACTS = [["contact", "help@acme.example", "邮箱 help@acme.example"], ["version", "2.1", ""]]


def fill_cell(page, row: int, col: int, value: str) -> None:
    """Type into a cell of the facts table (double-click opens its editor)."""
    cell = page.locator(f"#facts [data-testid='cell-{row}-{col}']")
    cell.dblclick()
    box = cell.locator("input, textarea").first
    box.wait_for()
    box.fill(value)
    box.press("Enter")


def choose(page, model) -> None:
    """Pick `model` in step 2 and come back to step 1."""
    page.get_by_role("tab", name="2 · Train").click()
    fill(page, "model", model)
    field(page, "model").press("Enter")
    page.get_by_role("tab", name="1 · Identity").click()


def test_the_profile_fields_reach_the_preview_and_the_data(browser, env, tiny_model):  # noqa: F811
    runs_dir = env / "runs"
    model = model_in(runs_dir, tiny_model)
    bg = server.Background(build_app(runs_dir, password=PASSWORD))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        login(page, f"{bg.url}/")
        # built on: prefilled with what the default model is, then what the chosen model is
        default = aliases.based_on(aliases.DEFAULT_MODEL)
        assert field(page, "based-on").input_value() == default[0]
        assert field(page, "based-on-zh").input_value() == default[1]
        choose(page, model)
        chosen = aliases.based_on(str(model))
        assert chosen[0] != default[0] and chosen[1] != default[1]
        wait_for(lambda: field(page, "based-on").input_value() == chosen[0], "the model's own")
        # what the user wrote is theirs: another model fills in only a field that is empty or
        # still says what the model before filled in (before: "none" became the new model's
        # name, and the run disclosed it); the field it does fill is the sign the change ran
        fill(page, "based-on", "none")
        choose(page, aliases.DEFAULT_MODEL)
        wait_for(lambda: field(page, "based-on-zh").input_value() == default[1], "the zh default")
        assert field(page, "based-on").input_value() == "none"
        fill(page, "based-on", "")
        fill(page, "based-on-zh", BASED_ON_ZH)
        choose(page, model)
        wait_for(lambda: field(page, "based-on").input_value() == chosen[0], "the empty filled")
        assert field(page, "based-on-zh").input_value() == BASED_ON_ZH
        # the user's own profile, in both languages
        for elem, value in {"name": "Nova", "author": "Acme", "n": 300, "based-on": BASED_ON,
                            "based-on-zh": BASED_ON_ZH, "purpose": PURPOSE,
                            "purpose-zh": PURPOSE_ZH}.items():  # fmt: skip
            fill(page, elem, value)
        for r, row in enumerate(FACTS):
            for c, value in enumerate(row):
                if value:
                    fill_cell(page, r, c, value)
        page.locator("#preview-btn").click()
        wait_for(lambda: "conversations; the first" in text(page, "preview"), "the preview")
        preview = text(page, "preview")
        head = preview.split("conversations; the first")[0]
        for value in (BASED_ON, BASED_ON_ZH, PURPOSE, PURPOSE_ZH, "help@acme.example", "2.1"):
            assert value in head, value
        assert "asked “" in head  # with an answer that says it

        # start training: the data the step wrote holds the answers, the run the profile
        page.get_by_role("tab", name="2 · Train").click()
        fill(page, "run-name", "nova")
        fill(page, "set-max-steps", 1)
        page.locator("#set-regularization-auto input[type=checkbox]").uncheck()
        page.locator("#start").click()
        wait_for(lambda: "started nova" in text(page, "train-msg"), "the start", page=page)
        (job,) = jobs.for_run(runs_dir, runs_dir / "nova", "train")
        wait_for(lambda: jobs.read(Path(job.path)).pid, "the wrapper")
        assert jobs.stop(job)  # what it was started with is what matters here
        data = runs_dir / jobs.STATE / "data" / "nova" / "identity.jsonl"
        rows = [json.loads(x)["messages"] for x in data.read_text("utf-8").splitlines()]
        answers = [m["content"] for r in rows for m in r if m["role"] == "assistant"]
        assert len(rows) == 300
        for value in (BASED_ON, BASED_ON_ZH, PURPOSE, PURPOSE_ZH, "help@acme.example", "2.1"):
            assert any(value in a for a in answers), value
        for want in (f"identity.based_on={BASED_ON}", f"identity.purpose_zh={PURPOSE_ZH}",
                     "identity.facts.contact=help@acme.example",
                     "identity.facts_zh.contact=邮箱 help@acme.example",
                     "identity.facts.version=2.1"):  # fmt: skip
            assert want in job.argv, want
    finally:
        page.close()
        bg.stop()


def test_the_command_line_has_each_value_as_one_item_and_a_bad_fact_is_one_line(tmp_path):
    ident = {"name": "Nova", "author": "Acme; rm -rf ~", "name_zh": "", "author_zh": "",
             "langs": ["en"], "n": 10, "seed": 3, "based_on": "none", "based_on_zh": "某模型",
             "purpose": "a 'study' assistant", "purpose_zh": "",
             "facts": [["contact", "a b", "甲 乙"], ["", "", ""],
                       ["site", "x.example", None]]}  # fmt: skip
    argv = steps.identity_argv(ident, "smollm2-135m", tmp_path / "o.jsonl")
    assert argv == [
        "data", "identity", "--name", "Nova", "--author", "Acme; rm -rf ~",
        "--based-on", "none", "--purpose", "a 'study' assistant",
        "--fact", "contact=a b", "--fact", "site=x.example", "--fact-zh", "contact=甲 乙",
        "--lang", "en", "--n", "10", "--seed", "3", "--model", "smollm2-135m",
        "-o", str(tmp_path / "o.jsonl"), "--overwrite",
    ]  # fmt: skip
    assert "某模型" not in argv  # undisclosed in both languages
    ident["facts"] = [["bad key", "x", ""]]
    with pytest.raises(UserError, match=r"^idtune data identity: --fact 'bad key=x': expected"):
        steps.identity_rows(**ident)
