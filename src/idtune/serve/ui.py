"""The web chat: a Gradio ChatInterface (streaming, multi-turn, system-prompt box) on the engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from .engine import ChatEngine, Delta, Failed, Params, RequestError


def history_messages(history: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Gradio's chat history (content as a string or a list of parts) → plain messages."""
    out = []
    for m in history or []:
        content = m.get("content")
        if isinstance(content, list):
            text = "".join(
                p.get("text", "")
                for p in content
                if isinstance(p, dict) and p.get("type") == "text"
            )
        else:
            text = content if isinstance(content, str) else ""
        if m.get("role") in ("user", "assistant", "system"):
            out.append({"role": m["role"], "content": text})
    return out


def build_ui(engine: ChatEngine):
    """A ChatInterface titled with the assistant's name; every browser tab shares the engine."""
    import gradio as gr

    async def respond(
        message: str, history: list[dict[str, Any]], system: str
    ) -> AsyncIterator[str]:
        messages = history_messages(history) + [{"role": "user", "content": message}]
        if system and system.strip():
            messages = [{"role": "system", "content": system.strip()}, *messages]
        try:
            stream = engine.submit(messages, Params())
        except RequestError as e:
            raise gr.Error(str(e)) from None
        text = ""
        try:
            async for event in stream:
                if isinstance(event, Delta):
                    text += event.text
                    yield text
                elif isinstance(event, Failed):
                    raise gr.Error(event.message)
        finally:  # the tab closed or Stop was pressed: free the engine's row
            stream.cancel()
        if not text:
            yield text

    system_box = gr.Textbox(
        value=engine.system or "",
        label="System prompt",
        placeholder="Empty: the default system prompt",
        lines=2,
    )
    description = getattr(engine, "description", None) or (
        f"Model `{engine.model_id}` · OpenAI-compatible API at `/v1`"
    )
    return gr.ChatInterface(
        respond,
        additional_inputs=[system_box],
        additional_inputs_accordion=gr.Accordion("System prompt", open=False),
        title=engine.title,
        description=description,
        concurrency_limit=None,
        fill_height=True,
        api_name="chat",
    )
