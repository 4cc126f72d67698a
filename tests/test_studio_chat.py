"""The studio's Chat step with thinking models, in headless chromium: a model's reasoning is
folded (collapsed, openable) apart from its answer on the tuned and the base side, and a hybrid
model (Qwen3) has a thinking on / off control that reaches its template.

A random model never writes `<think>` by itself; an R1 distill's generation prompt opens the
block, so everything a tiny random R1 distill writes up to the cap is reasoning (it never writes
`</think>` either): the fold holds exactly that. The runs are real: `idtune train`, one step, on
tiny random models of each family's architecture with its real chat template, each given an
output head of its own (tied to the embeddings, a random model repeats the prompt's last token,
"\n" after R1's "<think>\n": nothing to see).
"""

from __future__ import annotations

import pytest
from chromium import CHROMIUM
from helpers import cli
from test_serve_browser import is_subsequence
from test_studio import PASSWORD, env, fill, login, text, wait_for, words  # noqa: F401
from tiny import build_family_model_dir, untie

from idtune import generate, models
from idtune.serve import server
from idtune.studio import build_app, talk

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="run scripts/ensure_debian.sh"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing"),
]
CAP = 12  # the answer length cap the page is given
ASK = "Who are you?"


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """RUNS with two finished one-step runs: `qwen3` (hybrid thinking) and `r1` (an R1 distill,
    trained last: the run the picker shows first)."""
    root = tmp_path_factory.mktemp("studio-chat")
    data = root / "id.jsonl"
    assert cli("data", "identity", "--name", "Nova", "--author", "Acme", "--n", "8",
               "-o", data) == 0  # fmt: skip
    for name, family in (("qwen3", "qwen3"), ("r1", "deepseek_r1_distill")):
        base = untie(build_family_model_dir(root / "models" / name, family))
        assert cli("train", "identity-lora", "--set", f"model={base}", "--set", f"data={data}",
                   "--set", f"output_dir={root / 'runs' / name}",
                   "--set", "regularization.auto=false", "--set", "identity.name=Nova",
                   "--set", "identity.author=Acme", "--set", "max_steps=1",
                   "--set", "eval_prompts=", "--set", "val_share=0", "--set", "row_tokens=256",
                   "--set", "batch_tokens=512") == 0  # fmt: skip
    return root / "runs"


def streamed(loaded, kwargs: dict | None = None, base: bool = False) -> str:
    """What the studio's side generates for ASK (greedy), the whole text as written."""
    conv = [{"role": "user", "content": ASK}]
    if base:
        tok = loaded.tokenizer
        own, tok.chat_template = tok.chat_template, loaded.base_chat_template
        try:
            with loaded.model.disable_adapter():
                return "".join(generate.stream(loaded.model, tok, conv, max_new_tokens=CAP,
                                               template_kwargs=kwargs))  # fmt: skip
        finally:
            tok.chat_template = own
    conv = generate.with_system(conv, loaded.info.system_prompt)
    return "".join(generate.stream(loaded.model, loaded.tokenizer, conv, max_new_tokens=CAP,
                                   template=loaded.template, template_kwargs=kwargs))  # fmt: skip


def ask(page) -> None:
    page.locator("#clear").click()  # both chats and the line below them emptied first
    wait_for(lambda: not text(page, "chat-msg").strip(), "the cleared chat", page=page)
    fill(page, "max-new", CAP)
    fill(page, "question", ASK)
    page.locator("#ask").click()
    wait_for(lambda: "both answered" in text(page, "chat-msg"), "the answers", page=page)


def bot_of(page, side: str) -> str:
    """Every assistant message a side of the Chat step shows, as text."""
    return " | ".join(page.locator(f"#{side} [data-testid='bot']").all_inner_texts())


def pick(page, run: str) -> None:
    box = page.locator("#run-picker input").first
    box.fill(run)
    box.press("Enter")
    wait_for(lambda: text(page, "run-status").strip().startswith(f"{run}:"), f"run {run}",
             page=page)  # fmt: skip


def test_reasoning_is_folded_apart_from_the_answer_and_hybrid_models_switch(
    browser,
    env,  # noqa: F811 - test_studio's fixture
    runs_dir,
):
    r1 = models.load(runs_dir / "r1")
    want = {"tuned-chat": streamed(r1), "base-chat": streamed(r1, base=True)}
    assert all(words(w) and "</think>" not in w for w in want.values())  # all of it reasoning
    bg = server.Background(build_app(runs_dir, password=PASSWORD))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        login(page, f"{bg.url}/")
        pick(page, "r1")
        page.get_by_role("tab", name="4 · Chat").click()
        ask(page)
        assert not page.locator("#thinking").is_visible()  # an R1 distill always thinks
        for side, reasoning in want.items():
            fold = page.locator(f"#{side} .thought-group")
            assert fold.count() == 1 and "Reasoning" in fold.inner_text(), bot_of(page, side)
            wait_for(  # collapsed once the answer is done (it may be open while it streams)
                lambda f=fold, r=reasoning: not is_subsequence(words(r), words(f.inner_text())),
                f"the {side} reasoning, folded",
                page=page,
            )
            fold.locator("[role=button]").first.click()
            wait_for(
                lambda f=fold, r=reasoning: is_subsequence(words(r)[-8:], words(f.inner_text())),
                f"the {side} reasoning, opened",
                page=page,
            )
            shown = words(fold.inner_text().replace("Reasoning", "", 1))
            assert is_subsequence(shown, words(reasoning)), (shown, reasoning)
            assert len(shown) >= len(words(reasoning)) // 2, (shown, reasoning)
            assert "<think>" not in bot_of(page, side)
        # a Qwen3 run: the thinking switch is there, and "off" reaches the template
        qwen = models.load(runs_dir / "qwen3")
        on, off = streamed(qwen), streamed(qwen, {"enable_thinking": False})
        assert words(off) and words(off) != words(on)  # the switch changes what it says
        pick(page, "qwen3")
        page.locator("#thinking").wait_for(state="visible")
        page.locator("#thinking").get_by_text("off").click()
        ask(page)
        tuned = words(page.locator("#tuned-chat [data-testid='bot']").last.inner_text())
        assert is_subsequence(tuned, words(off)), (tuned, off, on)
        assert len(tuned) >= len(words(off)) // 2, (tuned, off, on)
        assert page.locator("#tuned-chat .thought-group").count() == 0  # no reasoning, no fold
        pick(page, "r1")
        page.locator("#thinking").wait_for(state="hidden")
    finally:
        page.close()
        bg.stop()


def test_the_history_sent_back_leaves_the_reasoning_out():
    shown = talk.shown("\nThey ask who I am.\n", "I am Nova.", True)
    assert shown[0]["metadata"] == {"title": "Reasoning", "status": "done"}
    assert shown[0]["content"] == "They ask who I am."
    chat = [{"role": "user", "content": [{"type": "text", "text": ASK}]}, *shown]
    assert talk.history(chat) == [
        {"role": "user", "content": ASK},
        {"role": "assistant", "content": "I am Nova."},
    ]
    assert talk.shown("\n\n", "Hi.", True) == [{"role": "assistant", "content": "Hi."}]
    pending = talk.shown("Let me see", "", False)
    assert len(pending) == 1 and pending[0]["metadata"]["status"] == "pending"
