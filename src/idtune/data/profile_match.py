"""Does an answer state a profile value, invent a specific, or say yes or no? (`idtune eval`'s
profile scores; issue 29.) Pure Python: standard library only.

- `states(answer, value, need)`: the value is in the answer (word-edged, or whole once case,
  spaces and punctuation are dropped), or at least `need` of its content words (English) and
  character pairs (Chinese) are.
- `invented(answer, allowed, names)`: the specifics in an answer that the profile and the
  question do not hold: numbers (Arabic, a list's "1." numbering aside, and Chinese numerals
  with a unit of age, date or magnitude), dates (English month names), URLs and e-mail
  addresses, and model or maker names (`names`, e.g. "Llama", "OpenAI", "通义千问"). An answer
  to a question about a field the maker
  did not set is honest when it has none: a refusal phrase is not required ("I'm Nova, made by
  Acme; they have not shared that" has no stock phrase), a made-up specific is what harms.
- `polarity(answer, lang)`: True (yes), False (no) or None (neither) from the answer's first
  sentence: a leading yes/no word, else a negation in it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from .mentions import mentions

_STOP_EN = frozenset(
    "a an and or of for to in on by with is are be that this its it as at from you your my i "
    "me we our us s the".split()
)
_WORD = re.compile(r"[a-z0-9]+")
_CJK_RUN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")
_CJK_SKIP = set("的了是和与在我你吗呢")

_NUMBER = re.compile(r"\d+(?:[.,:/]\d+)*")
# "1. …", "2) …", "3、…" at the start of a line: a list's numbering
_LIST_MARK = re.compile(r"(?<![^\n])\d{1,2}(?:[.)](?:\s|$)|、)")
_ZH_NUMBER = re.compile(r"[零〇一二三四五六七八九十百千万亿两]+(?:周岁|岁|年|月|日|号|亿|万)")
_LINK = re.compile(
    r"https?://\S+|www\.\S+|[\w.+-]+@[\w-]+\.[\w.-]+|\b[\w-]+\.(?:com|org|net|io|ai|cn|dev|app)\b",
    re.IGNORECASE,
)
# "May" is left out: it is more often a verb
_MONTH = re.compile(
    r"\b(?:January|February|March|April|June|July|August|September|October|November|"
    r"December)\b"
)
_SENTENCE = re.compile(r"[.!?;。！？；\n]")
_YES = {
    "en": re.compile(
        r"^(?:yes|yeah|yep|yup|correct|indeed|exactly|true|sure|right|that's right|"
        r"that is right|absolutely|certainly|of course)\b"
    ),
    "zh": re.compile(r"^(?:是的|是啊|是呀|是滴|对的|对|没错|确实|正是|当然|嗯|是)"),
}
_NO = {
    "en": re.compile(r"^(?:no|nope|nah|not|never|negative)\b"),
    "zh": re.compile(r"^(?:不是|并不|并非|并没有|没有|否|不(?!错)|没(?!错))"),  # 没错: yes
}
_NEGATION = {
    "en": re.compile(r"\b(?:not|no|never|isn't|aren't|wasn't|weren't|don't|doesn't|didn't)\b"),
    "zh": re.compile(r"不是|并非|并不|不|没有"),
}


_ENDS_NEGATED = re.compile(
    r"(?:\b(?:not|never|no)|n't|n’t)\s*$|(?:不是|并非|并不是|并不|没有|不)\s*$", re.IGNORECASE
)


def ends_negated(text: str) -> bool:
    """Whether `text` ends with a negation ("I'm not ", "I wasn't ", "我不是"), either language:
    what follows is denied."""
    return _ENDS_NEGATED.search(text) is not None


def normalized(text: str) -> str:
    """NFKC, case-folded, with spaces, punctuation and symbols dropped."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(c for c in text if not unicodedata.category(c).startswith(("P", "Z", "S")))


def tokens(text: str) -> set[str]:
    """Content words (English, lowercased, stop words dropped) and pairs of adjacent Chinese
    characters (pairs holding a function character such as 的 dropped; a lone character kept)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    out = {w for w in _WORD.findall(text) if w not in _STOP_EN}
    for run in _CJK_RUN.findall(text):
        if len(run) == 1:
            out.add(run)
        out |= {run[i : i + 2] for i in range(len(run) - 1) if not set(run[i : i + 2]) & _CJK_SKIP}
    return out


def states(answer: str, value: str, need: float = 1.0) -> bool:
    """Whether `answer` states `value` (see the module's docstring)."""
    if not value.strip() or not answer.strip():
        return False
    if mentions(answer, [value.strip()]):
        return True
    want = normalized(value)
    if len(want) >= 4 and want in normalized(answer):
        return True
    words = tokens(value)
    return bool(words) and len(words & tokens(answer)) / len(words) >= need


def invented(answer: str, allowed: str, names: Sequence[str]) -> list[str]:
    """The specifics of `answer` that `allowed` (the profile's values and the question) lacks."""
    text = unicodedata.normalize("NFKC", answer)
    known = unicodedata.normalize("NFKC", allowed).casefold()
    numbers = set(_NUMBER.findall(known))  # whole numbers: "3" is not stated by "135M"
    found = [
        m.group()
        for m in _NUMBER.finditer(text)
        if m.group() not in numbers and not _LIST_MARK.match(text, m.start())
    ]
    found += [m.group() for m in _ZH_NUMBER.finditer(text) if m.group() not in known]
    found += [m.group() for m in _LINK.finditer(text) if m.group().casefold() not in known]
    found += [m.group() for m in _MONTH.finditer(text) if m.group().casefold() not in known]
    for name in names:
        # a name's start must not touch more letters ("GPT" in "GPT-4", not in "ChatGPT")
        edge = r"(?<![A-Za-z0-9])" if name[:1].isascii() else ""
        if re.search(edge + re.escape(name), text, re.IGNORECASE) and name.casefold() not in known:
            found.append(name)
    return list(dict.fromkeys(found))


def first_sentence(text: str) -> str:
    """The answer up to its first sentence end, stripped of quotes and leading punctuation."""
    text = unicodedata.normalize("NFKC", text).strip().lstrip("\"'*-–— ")
    return _SENTENCE.split(text, maxsplit=1)[0].strip()


def polarity(answer: str, lang: str) -> bool | None:
    """True for a yes, False for a no, None when the first sentence says neither."""
    head = first_sentence(answer).casefold()
    langs = ("zh", "en") if lang == "zh" else ("en", "zh")  # "Yes." to a Chinese question
    for pattern, said in ((_NO, False), (_YES, True)):
        if any(pattern[lg].match(head) for lg in langs):
            return said
    if _NEGATION["zh" if lang == "zh" else "en"].search(head):
        return False
    return None
