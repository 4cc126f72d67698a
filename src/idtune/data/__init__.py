"""Data: identity generation, format loading, chat-template rendering and packing."""
