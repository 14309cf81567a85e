"""FQL source → syntax tree. The parser is recursive descent with an explicit nesting limit, so no input can
raise anything but :class:`~sluice.fql.errors.FqlError`.

Grammar (``and`` binds tighter than ``or``; ``!`` applies to the comparison or group after it)::

    condition  := "all" | or EOF
    or         := and ("or" and)*
    and        := unary ("and" unary)*
    unary      := "!" unary | "(" or ")" | comparison
    comparison := value [("=" | "!=" | "<" | "<=" | ">" | ">=") value | "in" (list | path)]
    value      := path | string | number | "true" | "false" | "null" | list | call
    list       := "[" [value ("," value)*] "]"
    call       := NAME "(" [value ("," value)*] ")"
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from sluice.fql.errors import FqlError
from sluice.fql.values import FUNCTIONS, format_number, parse_number

__all__ = [
    "MAX_DEPTH",
    "MAX_SOURCE_LENGTH",
    "All",
    "And",
    "Call",
    "Compare",
    "ListValue",
    "Literal",
    "Node",
    "Not",
    "Or",
    "Path",
    "Value",
    "format_tree",
    "parse",
]

MAX_SOURCE_LENGTH: Final = 5 * 1024
"""Longest accepted source, in characters (Segment's filter API caps ``if`` at 5 KB)."""

MAX_DEPTH: Final = 64
"""Deepest nesting of groups, ``!``, calls and lists."""


@dataclass(frozen=True, slots=True)
class Path:
    segments: tuple[str, ...]
    text: str


@dataclass(frozen=True, slots=True)
class Literal:
    value: bool | int | float | str | None


@dataclass(frozen=True, slots=True)
class ListValue:
    items: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Value, ...]


Value = Path | Literal | ListValue | Call


@dataclass(frozen=True, slots=True)
class Compare:
    op: str
    left: Value
    right: Value


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class All:
    """The condition ``all``: matches every event."""


Node = All | Or | And | Not | Compare | Value


# --- lexer ----------------------------------------------------------------------------------------------------

_KEYWORDS: Final = frozenset({"and", "or", "in", "true", "false", "null"})
_OPERATORS: Final = ("!=", "<=", ">=", "=", "<", ">", "!", "(", ")", "[", "]", ",")
_WHITESPACE: Final = " \t\r\n"


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "path", "name" (a plain identifier), "keyword", "string", "number", "op", "bad", "end"
    text: str  # the source text (for "op"/"keyword"/"bad": the operator, keyword or character)
    pos: int
    value: object = None


def _is_name_char(c: str) -> bool:
    return ("a" <= c <= "z") or ("A" <= c <= "Z") or ("0" <= c <= "9") or c in "_-" or (c > "\x7f" and c.isalnum())


def _is_name_start(c: str) -> bool:
    return ("a" <= c <= "z") or ("A" <= c <= "Z") or c == "_" or (c > "\x7f" and c.isalpha())


def _describe(token: _Token) -> str:
    if token.kind == "end":
        return "end of condition"
    if token.kind == "bad":
        return f"character {token.text!r}"
    if token.kind in ("op", "keyword"):
        return f"'{token.text}'"
    if token.kind in ("path", "name"):
        return f"field path {token.text}"
    return f"{token.kind} {token.text}"


class _Lexer:
    def __init__(self, source: str) -> None:
        self.source = source
        self.pos = 0

    def error(self, message: str, pos: int, expected: str) -> FqlError:
        return FqlError(message, pos, expected)

    def next(self) -> _Token:
        src, n = self.source, len(self.source)
        i = self.pos
        while i < n and src[i] in _WHITESPACE:
            i += 1
        if i >= n:
            self.pos = n
            return _Token("end", "", n)
        c = src[i]
        if c in "'\"":
            return self._string(i, c)
        if ("0" <= c <= "9") or (c in "+-" and i + 1 < n and "0" <= src[i + 1] <= "9"):
            return self._number(i)
        if _is_name_start(c) or c == "\\":
            return self._path(i)
        for op in _OPERATORS:
            if src.startswith(op, i):
                self.pos = i + len(op)
                return _Token("op", op, i)
        self.pos = i + 1
        return _Token("bad", c, i)

    def _string(self, start: int, quote: str) -> _Token:
        src, n = self.source, len(self.source)
        out: list[str] = []
        i = start + 1
        while i < n:
            c = src[i]
            if c == quote:
                self.pos = i + 1
                return _Token("string", src[start : i + 1], start, "".join(out))
            if c == "\\" and i + 1 < n:
                nxt = src[i + 1]
                # \' \" and \\ stand for the character; any other \x is kept as is (glob escapes pass through).
                out.append(nxt if nxt in (quote, "\\") else c + nxt)
                i += 2
                continue
            out.append(c)
            i += 1
        raise self.error(f"unterminated string opened at position {start}", n, f"a closing {quote}")

    def _number(self, start: int) -> _Token:
        src, n = self.source, len(self.source)
        i = start + 1 if src[start] in "+-" else start

        def digits(j: int) -> int:
            while j < n and "0" <= src[j] <= "9":
                j += 1
            return j

        i = digits(i)
        if i < n and src[i] == ".":
            if i + 1 >= n or not ("0" <= src[i + 1] <= "9"):
                raise self.error("malformed number", i + 1, "a digit after '.'")
            i = digits(i + 1)
        if i < n and src[i] in "eE":
            j = i + 1
            if j < n and src[j] in "+-":
                j += 1
            if j >= n or not ("0" <= src[j] <= "9"):
                raise self.error("malformed number", j, "a digit in the exponent")
            i = digits(j)
        text = src[start:i]
        self.pos = i
        value = parse_number(text.lstrip("+"))
        return _Token("number", text, start, value)

    def _path(self, start: int) -> _Token:
        src, n = self.source, len(self.source)
        segments: list[str] = []
        current: list[str] = []
        escaped = False
        i = start
        while True:
            c = src[i] if i < n else ""
            if c == "\\":
                if i + 1 >= n:
                    raise self.error("dangling '\\' in a field path", i + 1, "a character after '\\'")
                current.append(src[i + 1])
                escaped = True
                i += 2
            elif c and _is_name_char(c):
                current.append(c)
                i += 1
            elif c == "." and current:
                segments.append("".join(current))
                current = []
                i += 1
                if i >= n or not (src[i] == "\\" or _is_name_char(src[i])):
                    raise self.error("empty field name in a path", i, "a field name after '.'")
            else:
                break
        segments.append("".join(current))
        self.pos = i
        text = src[start:i]
        if len(segments) == 1 and not escaped:
            if text in _KEYWORDS:
                return _Token("keyword", text, start)
            return _Token("name", text, start, (text,))
        return _Token("path", text, start, tuple(segments))


# --- parser ---------------------------------------------------------------------------------------------------

_COMPARISONS: Final = frozenset({"=", "!=", "<", "<=", ">", ">="})
_LITERAL_KEYWORDS: Final[dict[str, bool | None]] = {"true": True, "false": False, "null": None}


class _Parser:
    def __init__(self, source: str) -> None:
        self.lexer = _Lexer(source)
        self.token = self.lexer.next()
        self.depth = 0

    def advance(self) -> _Token:
        token = self.token
        self.token = self.lexer.next()
        return token

    def fail(self, expected: str, token: _Token | None = None) -> FqlError:
        token = token or self.token
        return FqlError(f"unexpected {_describe(token)}", token.pos, expected)

    def is_op(self, op: str) -> bool:
        return self.token.kind == "op" and self.token.text == op

    def is_keyword(self, word: str) -> bool:
        return self.token.kind == "keyword" and self.token.text == word

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FqlError(
                f"condition too deeply nested (more than {MAX_DEPTH} levels)", self.token.pos, "less nesting"
            )

    def condition(self) -> Node:
        if self.token.kind == "name" and self.token.text == "all":
            after = self.lexer.next()
            if after.kind == "end":
                return All()
            self.lexer = _Lexer(self.lexer.source)  # re-read "all" as a field path
            self.token = self.lexer.next()
        node = self.or_()
        if self.token.kind != "end":
            raise self.fail("'and', 'or' or end of condition")
        return node

    def or_(self) -> Node:
        operands = [self.and_()]
        while self.is_keyword("or"):
            self.advance()
            operands.append(self.and_())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def and_(self) -> Node:
        operands = [self.unary()]
        while self.is_keyword("and"):
            self.advance()
            operands.append(self.unary())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def unary(self) -> Node:
        if self.is_op("!"):
            self.advance()
            self.enter()
            operand = self.unary()
            self.depth -= 1
            return Not(operand)
        if self.is_op("("):
            self.advance()
            self.enter()
            node = self.or_()
            if not self.is_op(")"):
                raise self.fail("')'")
            self.advance()
            self.depth -= 1
            return node
        return self.comparison()

    def comparison(self) -> Node:
        left = self.value()
        if self.token.kind == "op" and self.token.text in _COMPARISONS:
            op = self.advance().text
            return Compare(op, left, self.value())
        if self.is_keyword("in"):
            self.advance()
            token = self.token
            right = self.value() if self.is_op("[") or token.kind in ("path", "name") else None
            if not isinstance(right, ListValue | Path):
                raise self.fail("a list or a field path after 'in'", token)
            return Compare("in", left, right)
        return left

    def value(self) -> Value:
        token = self.token
        kind = token.kind
        if kind in ("string", "number"):
            self.advance()
            assert token.value is None or isinstance(token.value, str | int | float)
            return Literal(token.value)
        if kind == "keyword" and token.text in _LITERAL_KEYWORDS:
            self.advance()
            return Literal(_LITERAL_KEYWORDS[token.text])
        if kind == "path":
            self.advance()
            assert isinstance(token.value, tuple)
            return Path(token.value, token.text)
        if kind == "name":
            self.advance()
            if self.is_op("("):
                return self.call(token)
            return Path((token.text,), token.text)
        if self.is_op("["):
            self.advance()
            self.enter()
            items = self.values("]")
            self.depth -= 1
            return ListValue(items)
        raise self.fail("a value (a field path, string, number, true, false, null, list or function call)")

    def values(self, closing: str) -> tuple[Value, ...]:
        items: list[Value] = []
        if self.is_op(closing):
            self.advance()
            return ()
        while True:
            items.append(self.value())
            if self.is_op(closing):
                self.advance()
                return tuple(items)
            if not self.is_op(","):
                raise self.fail(f"',' or '{closing}'")
            self.advance()

    def call(self, name: _Token) -> Call:
        spec = FUNCTIONS.get(name.text)
        if spec is None:
            known = ", ".join(sorted(FUNCTIONS))
            raise FqlError(f"unknown function {name.text!r}", name.pos, f"one of {known}")
        self.advance()  # "("
        self.enter()
        args = self.values(")")
        self.depth -= 1
        arity = spec[0]
        if len(args) != arity:
            plural = "s" if arity != 1 else ""
            raise FqlError(
                f"{name.text}() takes {arity} argument{plural}, got {len(args)}", name.pos, f"{arity} argument{plural}"
            )
        return Call(name.text, args)


def parse(source: str) -> Node:
    """The syntax tree of ``source``; raises :class:`FqlError` (and nothing else) when it is not valid FQL."""
    if not isinstance(source, str):
        raise FqlError(f"a condition must be a string, not {type(source).__name__}", 0, "a string")
    if len(source) > MAX_SOURCE_LENGTH:
        raise FqlError(
            f"condition too long ({len(source)} characters)",
            MAX_SOURCE_LENGTH,
            f"at most {MAX_SOURCE_LENGTH} characters",
        )
    if not source.strip():
        raise FqlError("empty condition", len(source), "a condition (use 'all' to match every event)")
    return _Parser(source).condition()


# --- display --------------------------------------------------------------------------------------------------


def _literal_text(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return format_number(value)
    return json.dumps(value, ensure_ascii=False)


def format_tree(node: Node, indent: str = "  ") -> str:
    """The tree as indented text, one node a line (``sluice fql check``)."""
    lines: list[str] = []

    def walk(n: Node, depth: int) -> None:
        pad = indent * depth
        if isinstance(n, All):
            lines.append(f"{pad}all")
        elif isinstance(n, Or | And):
            lines.append(f"{pad}{'or' if isinstance(n, Or) else 'and'}")
            for operand in n.operands:
                walk(operand, depth + 1)
        elif isinstance(n, Not):
            lines.append(f"{pad}not")
            walk(n.operand, depth + 1)
        elif isinstance(n, Compare):
            lines.append(f"{pad}{n.op}")
            walk(n.left, depth + 1)
            walk(n.right, depth + 1)
        elif isinstance(n, Path):
            lines.append(f"{pad}path {n.text}")
        elif isinstance(n, Literal):
            lines.append(f"{pad}{_literal_text(n.value)}")
        elif isinstance(n, ListValue):
            lines.append(f"{pad}list ({len(n.items)})")
            for item in n.items:
                walk(item, depth + 1)
        else:
            lines.append(f"{pad}{n.name}()")
            for arg in n.args:
                walk(arg, depth + 1)

    walk(node, 0)
    return "\n".join(lines)
