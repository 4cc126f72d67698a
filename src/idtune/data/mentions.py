"""Does a text name someone? The one matcher behind leakage, identity scores and rejected answers.

Pure Python: standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence


def _pattern(term: str) -> str:
    """A term as a regex; ASCII letters/digits at its ends must not touch more of them.

    So "Nova" is found in "I'm Nova." but not in "innovation", "4" not in "14" and "3" not in
    "3.09"; Chinese terms (no word spaces) match as plain substrings.
    """
    p = re.escape(term)
    if term[:1].isascii() and term[:1].isalnum():
        p = r"(?<![A-Za-z0-9])" + p
        if term[:1].isdigit():
            p = r"(?<![0-9][.,])" + p
    if term[-1:].isascii() and term[-1:].isalnum():
        p = p + r"(?![A-Za-z0-9])"
        if term[-1:].isdigit():
            p = p + r"(?![.,][0-9])"
    return p


def mentions(text: str, terms: Sequence[str]) -> bool:
    """Whether `text` contains any of `terms`, case-insensitively (see `_pattern`)."""
    return bool(mention_spans(text, terms))


def mention_spans(text: str, terms: Sequence[str]) -> list[tuple[int, int]]:
    """(start, end) of every match of `terms` in `text`, as `mentions` matches them."""
    return [m.span() for t in terms if t for m in re.finditer(_pattern(t), text, re.IGNORECASE)]
