"""Shared fixtures: a tiny random model directory, an isolated idtune cache."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything imports huggingface_hub

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny import build_model_dir, build_tokenizer  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random Llama with a ChatML (SmolLM2-style) template, saved as an HF directory."""
    return build_model_dir(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def tiny_tokenizer():
    """The tiny model's tokenizer, in memory (fresh per test: tests may change its template)."""
    return build_tokenizer()


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """Keep tokens out of tests; leave the idtune cache (the converted default model) shared."""
    for var in ("HF_TOKEN", "IDTUNE_GIT_TOKEN", "IDTUNE_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def browser():
    """Headless chromium through Playwright (tests that use it skip when it is missing)."""
    from chromium import ARGS, CHROMIUM
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()
