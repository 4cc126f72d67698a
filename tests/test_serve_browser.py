"""The web chat in headless Debian chromium via Playwright: streaming, multi-turn, system box.

Needs /usr/bin/chromium (`scripts/ensure_debian.sh`); skipped with a reason when it is missing.
"""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from chromium import CHROMIUM

from idtune.serve import server
from idtune.serve.engine import Delta, Done, Stream

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="run scripts/ensure_debian.sh"),
]


class ScriptedEngine:
    """Answers word by word, slowly enough to watch the stream, and records what it was sent."""

    model_id, title, system = "scripty", "Scripty the Tester", "You are Scripty."

    def __init__(self) -> None:
        self.seen: list[list[dict[str, str]]] = []

    def health(self) -> dict:
        return {"status": "ok"}

    def answer(self, messages: list[dict[str, str]]) -> str:
        users = [m for m in messages if m["role"] == "user"]
        system = next((m["content"] for m in messages if m["role"] == "system"), "none")
        return f"Heard {len(users)} question(s), last {users[-1]['content']!r}, system {system!r}"

    def submit(self, messages, params) -> Stream:
        self.seen.append(messages)
        stream, words = Stream(), self.answer(messages).split(" ")

        async def run() -> None:
            for i, word in enumerate(words):
                await asyncio.sleep(0.2)
                stream.put(Delta(word if i == 0 else " " + word))
            stream.put(Done("stop", 1, len(words)))

        asyncio.get_running_loop().create_task(run())
        return stream


def bot_texts(page) -> list[str]:
    return [t.strip() for t in page.locator('[data-testid="bot"]').all_inner_texts()]


def ask(page, question: str, done, timeout: float = 30.0) -> list[str]:
    """Send a question; return every distinct state of the newest answer until `done(text)`."""
    count = len(bot_texts(page)) + 1
    box = page.locator('textarea[data-testid="textbox"]').first
    box.fill(question)
    box.press("Enter")
    states: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        texts = bot_texts(page)
        if len(texts) >= count and (not states or texts[-1] != states[-1]):
            states.append(texts[-1])
        if states and done(states[-1]):
            return states
        time.sleep(0.02)
    raise AssertionError(f"no complete answer within {timeout} s; saw {states}")


def letters(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z]", "", text)


def is_subsequence(short: str, long: str) -> bool:
    it = iter(long)
    return all(c in it for c in short)


def test_streamed_multi_turn_chat_with_system_prompt(browser):
    engine = ScriptedEngine()
    bg = server.Background(server.build_app(engine))
    page = browser.new_page()
    try:
        page.goto(f"{bg.url}/")
        assert page.locator("h1").first.inner_text().strip() == "Scripty the Tester"

        first = "Heard 1 question(s), last 'What is two plus two?', system 'You are Scripty.'"
        states = ask(page, "What is two plus two?", lambda text: text == first)
        partial = [s for s in states[:-1] if s]
        assert partial and all(first.startswith(s) for s in partial)  # it streamed

        page.get_by_text("System prompt").first.click()
        system_box = page.get_by_placeholder("Empty: the default system prompt")
        for _ in range(5):  # the accordion can re-render the box as it opens: fill until it holds
            system_box.fill("Answer in French.")
            system_box.press("Tab")
            page.wait_for_timeout(200)
            if system_box.input_value() == "Answer in French.":
                break
        second = "Heard 2 question(s), last 'And three plus three?', system 'Answer in French.'"
        ask(page, "And three plus three?", lambda text: text == second)
        history = engine.seen[-1]
        assert [m["role"] for m in history] == ["system", "user", "assistant", "user"]
        assert history[2]["content"] == first  # the first answer went back in
    finally:
        page.close()
        bg.stop()


class Recorder:
    """Passes conversations to a real engine and keeps the text it streamed back."""

    def __init__(self, engine) -> None:
        self.engine, self.answers = engine, []
        self.model_id, self.title, self.system = engine.model_id, engine.title, engine.system

    def health(self) -> dict:
        return self.engine.health()

    def submit(self, messages, params) -> Stream:
        stream, pieces = self.engine.submit(messages, params), []
        put = stream.put

        def record(event) -> None:
            if isinstance(event, Delta):
                pieces.append(event.text)
            elif isinstance(event, Done):
                self.answers.append("".join(pieces))
            put(event)

        stream.put = record
        return stream


def test_real_engine_answer_appears(browser, tiny_model):
    engine = server.load_engine(
        str(tiny_model), min_tokens=6, default_max_tokens=10, temperature=1.0, top_p=1.0
    )
    recorder = Recorder(engine)
    bg = server.Background(server.build_app(recorder))
    page = browser.new_page()
    try:
        page.goto(f"{bg.url}/")
        assert page.locator("h1").first.inner_text().strip() == "model"

        def complete(text: str) -> bool:
            shown = letters(text)
            return bool(recorder.answers and shown) and is_subsequence(shown, recorder.answers[0])

        ask(page, "Who are you?", complete)
        assert len(recorder.answers) == 1
        deadline = time.monotonic() + 5
        while engine.active and time.monotonic() < deadline:  # the row leaves after its last token
            time.sleep(0.02)
        assert engine.active == 0
    finally:
        page.close()
        bg.stop()
        engine.close()


class ThinkingEngine(ScriptedEngine):
    """Scripty with a Qwen3 tokenizer: it reasons first, then answers."""

    def __init__(self, tokenizer) -> None:
        super().__init__()
        self.tokenizer = tokenizer

    def answer(self, messages: list[dict[str, str]]) -> str:
        turns = sum(m["role"] == "user" for m in messages)
        return f"<think>\nThey ask {turns}; be brief.\n</think>\n\nAnswer {turns} here."


def test_a_thinking_models_reasoning_is_folded_above_its_answer(browser, tiny_tokenizer):
    from pathlib import Path

    tiny_tokenizer.chat_template = (
        Path(__file__).parent / "data" / "templates" / "qwen3.jinja"
    ).read_text("utf-8")
    engine = ThinkingEngine(tiny_tokenizer)
    bg = server.Background(server.build_app(engine))
    page = browser.new_page()
    try:
        page.goto(f"{bg.url}/")
        ask(page, "Who are you?", lambda text: "Answer 1 here." in text)
        fold = page.get_by_text("Reasoning").first
        fold.wait_for()
        assert not page.get_by_text("They ask 1; be brief.").first.is_visible()  # folded
        assert "<think>" not in page.content()
        fold.click()
        page.get_by_text("They ask 1; be brief.").first.wait_for(state="visible")
        ask(page, "And again?", lambda text: "Answer 2 here." in text)
        # the reasoning went back in nowhere: only the answers are history
        assert [m["content"] for m in engine.seen[-1] if m["role"] == "assistant"] == [
            "Answer 1 here."
        ]
    finally:
        page.close()
        bg.stop()
