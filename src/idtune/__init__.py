"""idtune: turn a chat LLM into your own named assistant."""

__version__ = "0.1.0"
