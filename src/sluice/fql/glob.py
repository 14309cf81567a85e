"""``match()`` glob patterns: ``*``, ``?``, ``[abc]``, ``[a-z]``, ``[^a-z]``, ``\\x`` — full-string, case-sensitive.

The rules are those of Go's ``path.Match`` (which Segment's engine uses) minus the path-separator special
case: ``*`` and ``?`` match ``/`` too. A malformed pattern (``[``, ``[]a]``, ``[x-]``, ``[a-b-c]``, a trailing
``\\``) never matches anything. ``?`` and classes match one code point.

Matching never backtracks exponentially: the pattern is split at its stars into fixed-width chunks and each
chunk is found at its leftmost position (which is exact for globs), so a match costs O(len(text) × len(pattern))
at worst. Compiled patterns are cached.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

__all__ = ["compile_glob", "glob_match"]

Matcher = Callable[[str], bool]


def glob_match(text: str, pattern: str) -> bool:
    """Whether ``pattern`` matches all of ``text`` (``False`` for a malformed pattern)."""
    matcher = compile_glob(pattern)
    return matcher is not None and matcher(text)


def _escape_at(pattern: str, i: int) -> tuple[str, int] | None:
    """One (possibly ``\\``-escaped) character of a class range at ``i``, Go's ``getEsc``."""
    n = len(pattern)
    if i >= n or pattern[i] in "-]":
        return None
    if pattern[i] == "\\":
        i += 1
        if i >= n:
            return None
    char = pattern[i]
    i += 1
    if i >= n:  # a class must still be closed after this character
        return None
    return char, i


def _class_regex(ranges: list[tuple[str, str]], negated: bool) -> str:
    parts = [re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}" for lo, hi in ranges if lo <= hi]
    if not parts:
        return "." if negated else "(?!)"
    return f"[{'^' if negated else ''}{''.join(parts)}]"


def _parse(pattern: str) -> list[list[tuple[bool, str]]] | None:
    """Chunks between stars; each a list of (is_literal, literal char or one-character regex)."""
    chunks: list[list[tuple[bool, str]]] = [[]]
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            chunks.append([])
            i += 1
        elif c == "?":
            chunks[-1].append((False, "."))
            i += 1
        elif c == "\\":
            if i + 1 >= n:
                return None
            chunks[-1].append((True, pattern[i + 1]))
            i += 2
        elif c == "[":
            i += 1
            negated = i < n and pattern[i] == "^"
            if negated:
                i += 1
            ranges: list[tuple[str, str]] = []
            while True:
                if i < n and pattern[i] == "]" and ranges:
                    i += 1
                    break
                got = _escape_at(pattern, i)
                if got is None:
                    return None
                lo, i = got
                hi = lo
                if pattern[i] == "-":
                    got = _escape_at(pattern, i + 1)
                    if got is None:
                        return None
                    hi, i = got
                ranges.append((lo, hi))
            chunks[-1].append((False, _class_regex(ranges, negated)))
        else:
            chunks[-1].append((True, c))
            i += 1
    return chunks


class _Chunk:
    __slots__ = ("literal", "regex", "width")

    def __init__(self, atoms: list[tuple[bool, str]]) -> None:
        self.width = len(atoms)
        if all(is_literal for is_literal, _ in atoms):
            self.literal: str | None = "".join(a for _, a in atoms)
            self.regex: re.Pattern[str] | None = None
        else:
            self.literal = None
            self.regex = re.compile("".join(re.escape(a) if lit else a for lit, a in atoms), re.DOTALL)

    def match_at(self, text: str, pos: int) -> bool:
        if self.literal is not None:
            return text.startswith(self.literal, pos)
        assert self.regex is not None
        return self.regex.match(text, pos) is not None

    def find(self, text: str, pos: int, end: int) -> int:
        """End of the leftmost occurrence within ``text[pos:end]``, or -1."""
        if self.literal is not None:
            at = text.find(self.literal, pos, end)
            return -1 if at < 0 else at + self.width
        assert self.regex is not None
        found = self.regex.search(text, pos, end)
        return -1 if found is None else found.end()


@lru_cache(maxsize=4096)
def compile_glob(pattern: str) -> Matcher | None:
    """A matcher for ``pattern``, or ``None`` when the pattern is malformed (it then matches nothing)."""
    parsed = _parse(pattern)
    if parsed is None:
        return None
    if len(parsed) == 1:
        only = _Chunk(parsed[0])
        if only.literal is not None:
            literal = only.literal
            return lambda text: text == literal
        width = only.width
        return lambda text: len(text) == width and only.match_at(text, 0)
    first, last = _Chunk(parsed[0]), _Chunk(parsed[-1])
    middle = [_Chunk(atoms) for atoms in parsed[1:-1] if atoms]
    if not middle and first.literal is not None and last.literal is not None:
        prefix, suffix, min_len = first.literal, last.literal, first.width + last.width
        return lambda text: len(text) >= min_len and text.startswith(prefix) and text.endswith(suffix)

    def match(text: str) -> bool:
        end = len(text) - last.width
        if end < first.width or not first.match_at(text, 0):
            return False
        pos = first.width
        for chunk in middle:
            pos = chunk.find(text, pos, end)
            if pos < 0:
                return False
        return last.match_at(text, end)

    return match
