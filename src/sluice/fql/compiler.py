"""FQL syntax tree → a Python closure. Evaluation never walks the tree: each node becomes a small function,
constants are folded at compile time, and the common shapes (``path = 'x'``, ``path > 100``, ``path in [...]``,
``match(path, 'glob')``, ``contains(path, 'x')``) get dedicated closures with the constant bound in.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

from sluice.fql.errors import FqlError
from sluice.fql.glob import compile_glob
from sluice.fql.syntax import All, And, Call, Compare, ListValue, Literal, Node, Not, Or, Path, Value, parse
from sluice.fql.values import FUNCTIONS, MISSING, is_number, strict_equal

__all__ = ["Condition", "compile_fql"]

Getter = Callable[[Any], Any]
Pred = Callable[[Any], bool]


class Condition(Protocol):
    """A compiled FQL condition: call it with an event. ``source`` is the FQL text, ``tree`` its syntax tree."""

    source: str
    tree: Node

    def __call__(self, event: Mapping[str, Any], /) -> bool: ...


def compile_fql(source: str) -> Condition:
    """Compile ``source`` once; the result evaluates an event in a few hundred nanoseconds and never raises.

    Raises :class:`FqlError` — and nothing else, whatever ``source`` is — when the source is not valid FQL.
    """
    try:
        tree = parse(source)
        pred = _condition(tree)
    except RecursionError:
        raise FqlError("condition too deeply nested", 0, "less nesting") from None
    # A fresh function object, so attributes never land on a shared closure (e.g. the one for `all`).
    fn = types.FunctionType(pred.__code__, pred.__globals__, "fql_condition", pred.__defaults__, pred.__closure__)
    fn.__qualname__ = "fql_condition"
    fn.source = source  # type: ignore[attr-defined]
    fn.tree = tree  # type: ignore[attr-defined]
    condition: Condition = fn  # type: ignore[assignment]
    return condition


# --- values ---------------------------------------------------------------------------------------------------


class _Const:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


_Compiled = _Const | Getter
_NUMS: Final = (int, float)


def _value(node: Value) -> _Compiled:
    if isinstance(node, Literal):
        return _Const(node.value)
    if isinstance(node, Path):
        return _path(node.segments)
    if isinstance(node, ListValue):
        items = [_value(item) for item in node.items]
        if all(isinstance(item, _Const) for item in items):
            return _Const([item.value for item in items if isinstance(item, _Const)])
        getters = [_getter(item) for item in items]
        return lambda e: [g(e) for g in getters]
    return _call(node)


def _getter(compiled: _Compiled) -> Getter:
    if isinstance(compiled, _Const):
        value = compiled.value
        return lambda e: value
    return compiled


def _index(segment: str) -> int | None:
    if segment.isascii() and segment.isdigit() and (segment == "0" or not segment.startswith("0")):
        return int(segment)
    return None


def _path(segments: tuple[str, ...]) -> Getter:
    if all(_index(s) is None for s in segments) and len(segments) <= 4:
        # `MISSING.get` returns MISSING, so a chain of .get survives missing steps; a step into a list, string,
        # number or null raises AttributeError and yields MISSING.
        if len(segments) == 1:
            (k0,) = segments

            def get1(e: Any) -> Any:
                try:
                    return e.get(k0, MISSING)
                except Exception:
                    return MISSING

            return get1
        if len(segments) == 2:
            k0, k1 = segments

            def get2(e: Any) -> Any:
                try:
                    return e.get(k0, MISSING).get(k1, MISSING)
                except Exception:
                    return MISSING

            return get2
        if len(segments) == 3:
            k0, k1, k2 = segments

            def get3(e: Any) -> Any:
                try:
                    return e.get(k0, MISSING).get(k1, MISSING).get(k2, MISSING)
                except Exception:
                    return MISSING

            return get3
    steps = [(s, _index(s)) for s in segments]

    def get(e: Any) -> Any:
        cur = e
        try:
            for key, index in steps:
                if isinstance(cur, Mapping):
                    cur = cur.get(key, MISSING)
                elif index is not None and isinstance(cur, list | tuple):
                    cur = cur[index] if index < len(cur) else MISSING
                else:
                    return MISSING
            return cur
        except Exception:
            return MISSING

    return get


def _call(node: Call) -> _Compiled:
    fn = FUNCTIONS[node.name][1]
    args = [_value(arg) for arg in node.args]
    if all(isinstance(arg, _Const) for arg in args):
        return _Const(fn(*[arg.value for arg in args if isinstance(arg, _Const)]))
    if node.name == "match" and isinstance(args[1], _Const):
        pattern, g = args[1].value, _getter(args[0])
        matcher = compile_glob(pattern) if isinstance(pattern, str) else None
        if matcher is None:
            return lambda e: False
        return lambda e: isinstance(v := g(e), str) and matcher(v)
    if node.name == "contains" and isinstance(args[1], _Const):
        sub, g = args[1].value, _getter(args[0])
        if not isinstance(sub, str):
            return lambda e: False
        return lambda e: isinstance(v := g(e), str) and sub in v
    getters = [_getter(arg) for arg in args]
    if len(getters) == 1:
        (g0,) = getters
        return lambda e: fn(g0(e))
    if len(getters) == 2:
        g0, g1 = getters
        return lambda e: fn(g0(e), g1(e))
    return lambda e: fn(*[g(e) for g in getters])


# --- conditions -----------------------------------------------------------------------------------------------


def _always_true(e: Any) -> bool:
    return True


def _always_false(e: Any) -> bool:
    return False


def _constant(value: bool) -> Pred:
    return _always_true if value else _always_false


def _condition(node: Node) -> Pred:
    if isinstance(node, All):
        return _always_true
    if isinstance(node, Or | And):
        return _logical(node)
    if isinstance(node, Not):
        inner = _condition(node.operand)
        if inner is _always_true or inner is _always_false:
            return _constant(inner is _always_false)
        return lambda e: not inner(e)
    if isinstance(node, Compare):
        return _compare(node.op, _value(node.left), _value(node.right))
    # A value on its own is a condition that holds when the value is exactly `true`.
    compiled = _value(node)
    if isinstance(compiled, _Const):
        return _constant(compiled.value is True)
    return lambda e: compiled(e) is True


def _logical(node: Or | And) -> Pred:
    is_and = isinstance(node, And)
    absorbing, neutral = (_always_false, _always_true) if is_and else (_always_true, _always_false)
    preds: list[Pred] = []
    for operand in node.operands:
        pred = _condition(operand)
        if pred is absorbing:
            return absorbing
        if pred is not neutral:
            preds.append(pred)
    if not preds:
        return neutral
    if len(preds) == 1:
        return preds[0]
    if len(preds) == 2:
        a, b = preds
        return (lambda e: a(e) and b(e)) if is_and else (lambda e: a(e) or b(e))
    if len(preds) == 3:
        a, b, c = preds
        return (lambda e: a(e) and b(e) and c(e)) if is_and else (lambda e: a(e) or b(e) or c(e))
    chain = tuple(preds)
    if is_and:
        return lambda e: all(p(e) for p in chain)
    return lambda e: any(p(e) for p in chain)


_FLIPPED: Final = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=", "!=": "!="}


def _compare(op: str, left: _Compiled, right: _Compiled) -> Pred:
    if isinstance(left, _Const) and isinstance(right, _Const):
        return _constant(_evaluate_compare(op, left.value, right.value))
    if op == "in":
        return _in(_getter(left), right)
    if isinstance(left, _Const):
        op, left, right = _FLIPPED[op], right, left
    g = _getter(left)
    if isinstance(right, _Const):
        c = right.value
        if op in ("=", "!="):
            eq = _equals_constant(g, c)
            return eq if op == "=" else _negate_equality(g, c, eq)
        if not is_number(c) or c != c:
            return _always_false
        if op == ">":
            return lambda e: type(v := g(e)) in _NUMS and v > c
        if op == ">=":
            return lambda e: type(v := g(e)) in _NUMS and v >= c
        if op == "<":
            return lambda e: type(v := g(e)) in _NUMS and v < c
        return lambda e: type(v := g(e)) in _NUMS and v <= c
    h = right
    if op == "=":
        return lambda e: strict_equal(g(e), h(e))
    if op == "!=":
        return lambda e: not strict_equal(g(e), h(e))
    return lambda e: _numeric(op, g(e), h(e))


def _equals_constant(g: Getter, c: Any) -> Pred:
    if isinstance(c, str):
        return lambda e: g(e) == c
    if c is None:
        return lambda e: g(e) is None
    if isinstance(c, bool):
        return lambda e: g(e) is c
    if is_number(c):
        return lambda e: (v := g(e)) == c and type(v) is not bool
    return lambda e: strict_equal(g(e), c)


def _negate_equality(g: Getter, c: Any, eq: Pred) -> Pred:
    if isinstance(c, str):
        return lambda e: g(e) != c
    if c is None:
        return lambda e: g(e) is not None
    if isinstance(c, bool):
        return lambda e: g(e) is not c
    return lambda e: not eq(e)


def _numeric(op: str, a: Any, b: Any) -> bool:
    if type(a) not in _NUMS or type(b) not in _NUMS:
        return False
    if op == ">":
        return bool(a > b)
    if op == ">=":
        return bool(a >= b)
    if op == "<":
        return bool(a < b)
    return bool(a <= b)


def _evaluate_compare(op: str, a: Any, b: Any) -> bool:
    if op == "=":
        return strict_equal(a, b)
    if op == "!=":
        return not strict_equal(a, b)
    if op == "in":
        return isinstance(b, list | tuple) and any(strict_equal(a, x) for x in b)
    return _numeric(op, a, b)


def _in(g: Getter, right: _Compiled) -> Pred:
    if not isinstance(right, _Const):
        h = right
        return lambda e: _contains(h(e), g(e))
    items = right.value
    if not isinstance(items, list):
        return _always_false
    strings = frozenset(x for x in items if isinstance(x, str))
    if len(strings) == len(items):
        return lambda e: type(v := g(e)) is str and v in strings
    numbers = frozenset(x for x in items if is_number(x) and x == x)  # NaN is never a member
    has_null, has_true, has_false = None in items, any(x is True for x in items), any(x is False for x in items)
    lists = [x for x in items if isinstance(x, list)]

    def member(e: Any) -> bool:
        v = g(e)
        if isinstance(v, str):
            return v in strings
        if v is None:
            return has_null
        if v is True:
            return has_true
        if v is False:
            return has_false
        if type(v) in _NUMS:
            return v in numbers
        return any(strict_equal(v, x) for x in lists)

    return member


def _contains(items: Any, v: Any) -> bool:
    return isinstance(items, list | tuple) and any(strict_equal(v, x) for x in items)
