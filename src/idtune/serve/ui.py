"""The web chat: a Gradio ChatInterface (streaming, multi-turn, system-prompt box) on the engine."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from ..generate import reasoning_split
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
        if (m.get("metadata") or {}).get("title"):
            continue  # a folded reasoning block: templates keep no past reasoning either
        if m.get("role") in ("user", "assistant", "system"):
            out.append({"role": m["role"], "content": text})
    return out


def api_snippet(url: str, model: str, keyed: bool) -> str:
    """Markdown: a `curl` and an `openai` call that work against this server as it runs."""
    auth = ' -H "Authorization: Bearer $IDTUNE_API_KEY"' if keyed else ""
    key = 'os.environ["IDTUNE_API_KEY"]' if keyed else '"unused"'
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "Who are you?"}]},
        ensure_ascii=False,
    )
    return (
        f"OpenAI-compatible API at [`{url}/v1`]({url}/v1/docs) "
        f"(schema: [`/v1/openapi.json`]({url}/v1/openapi.json)).\n\n"
        f"```bash\ncurl {url}/v1/chat/completions -H 'Content-Type: application/json'{auth} "
        f"-d '{body}'\n```\n\n"
        "```python\nimport os\nfrom openai import OpenAI\n\n"
        f'client = OpenAI(base_url="{url}/v1", api_key={key})\n'
        f"answer = client.chat.completions.create(\n    model={model!r},\n"
        '    messages=[{"role": "user", "content": "Who are you?"}],\n)\n'
        "print(answer.choices[0].message.content)\n```"
    )


def build_ui(engine: ChatEngine, url: str = "http://127.0.0.1:7860", keyed: bool = False):
    """A ChatInterface titled with the assistant's name, and how to reach it from code."""
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
        tokenizer = getattr(engine, "tokenizer", None)
        split = reasoning_split(tokenizer, messages) if tokenizer is not None else None
        text, reasoning, answer = "", "", ""

        def shown(done: bool) -> Any:
            """The answer so far; a thinking model's reasoning folded above it."""
            if split is None:
                return text
            fold = {"title": "Reasoning", "status": "done" if done or answer else "pending"}
            return [
                *([gr.ChatMessage(reasoning, metadata=fold)] if reasoning else []),
                gr.ChatMessage(answer),
            ]

        try:
            async for event in stream:
                if isinstance(event, Delta):
                    text += event.text
                    if split is not None:
                        r, a = split.feed(event.text)
                        reasoning, answer = reasoning + r, answer + a
                    yield shown(False)
                elif isinstance(event, Failed):
                    raise gr.Error(event.message)
        finally:  # the tab closed or Stop was pressed: free the engine's row
            stream.cancel()
        if split is not None:
            r, a = split.flush()
            reasoning, answer = reasoning + r, answer + a
        yield shown(True)

    description = getattr(engine, "description", None) or (
        f"Model `{engine.model_id}` · OpenAI-compatible API at [`/v1`]({url}/v1/docs)"
    )
    system_box = gr.Textbox(
        value=engine.system or "",
        label="System prompt",
        placeholder="Empty: the default system prompt",
        lines=2,
    )
    demo = gr.ChatInterface(
        respond,
        additional_inputs=[system_box],
        additional_inputs_accordion=gr.Accordion("System prompt", open=False),
        title=engine.title,
        description=description,
        concurrency_limit=None,
        fill_height=True,
        api_name="chat",
    )
    with demo, gr.Accordion("Use this model from code: the /v1 API", open=False):
        gr.Markdown(api_snippet(url, engine.model_id, keyed), elem_id="api-snippet")
    return demo
