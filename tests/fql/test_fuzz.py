"""Hypothesis: random text never raises anything but FqlError; random valid conditions agree with a small
reference evaluator written here (an AST walk of the documented semantics, independent of the compiler)."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.fql import FqlError, compile_fql

# --- random text ----------------------------------------------------------------------------------------------

_PIECES = st.sampled_from(
    ["a", "b.c", "\\", "'", '"', "(", ")", "[", "]", ",", "!", "=", "!=", "<", ">=", " and ", " or ", " in ",
     "true", "null", "1", "-2.5", "e", "*", "match(", "length(", "contains(", "semver(", "all", " ", "\n", "é"]
)  # fmt: skip


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=60), st.lists(_PIECES, max_size=25).map("".join)))
def test_random_text_compiles_or_raises_fql_error(source: str) -> None:
    try:
        condition = compile_fql(source)
    except FqlError as exc:
        assert 0 <= exc.position <= len(source)
        assert exc.expected
        return
    assert isinstance(condition({"a": 1, "b": {"c": [1, "x"]}}), bool)
    assert isinstance(condition({}), bool)


# --- random valid conditions vs. a reference evaluator ----------------------------------------------------------

MISSING = object()
FIELDS = ["a", "b", "c", "o.a", "o.b", "z", "o.z.y"]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.5, 2.0, -1.5]),
    st.sampled_from(["", "a", "ab", "B a", "ba*"]),
)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=6)
events = st.fixed_dictionaries(
    {},
    optional={
        "a": json_values,
        "b": json_values,
        "c": json_values,
        "o": st.fixed_dictionaries({}, optional={"a": json_values, "b": json_values}),
    },
)


def lit(value: Any) -> tuple[str, Any]:
    return ("lit", value)


literals = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([0.5, 2.0]), st.sampled_from(["", "a", "ab", "B a"])
).map(lit)
paths = st.sampled_from(FIELDS).map(lambda p: ("path", p))
patterns = st.text(alphabet="ab*? ", max_size=4).map(lit)


def calls(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    one = st.tuples(st.sampled_from(["lowercase", "uppercase", "length", "typeof"]), inner)
    return st.one_of(
        one.map(lambda t: ("call", t[0], t[1])),
        st.tuples(inner, inner).map(lambda t: ("call", "contains", *t)),
        st.tuples(inner, patterns).map(lambda t: ("call", "match", *t)),
    )


values = st.recursive(st.one_of(literals, paths), calls, max_leaves=3)
lists = st.lists(st.one_of(literals, paths), max_size=3).map(lambda items: ("list", items))
comparisons = st.one_of(
    st.tuples(st.sampled_from(["=", "!=", "<", "<=", ">", ">="]), values, values).map(lambda t: ("cmp", *t)),
    st.tuples(values, st.one_of(lists, paths)).map(lambda t: ("cmp", "in", *t)),
    values.map(lambda v: ("value", v)),
)
conditions = st.recursive(
    comparisons,
    lambda inner: st.one_of(
        inner.map(lambda c: ("not", c)),
        st.tuples(st.sampled_from(["and", "or"]), st.lists(inner, min_size=2, max_size=3)).map(lambda t: (t[0], t[1])),
    ),
    max_leaves=6,
)


def source_of(node: Any) -> str:
    kind = node[0]
    if kind == "lit":
        v = node[1]
        return json.dumps(v) if isinstance(v, str | int | float | bool) or v is None else repr(v)
    if kind == "path":
        return str(node[1])
    if kind == "list":
        return "[" + ", ".join(source_of(item) for item in node[1]) + "]"
    if kind == "call":
        return f"{node[1]}(" + ", ".join(source_of(arg) for arg in node[2:]) + ")"
    if kind == "cmp":
        return f"{source_of(node[2])} {node[1]} {source_of(node[3])}"
    if kind == "value":
        return source_of(node[1])
    if kind == "not":
        return f"!({source_of(node[1])})"
    return "(" + f" {kind} ".join(source_of(c) for c in node[1]) + ")"


def kind_of(v: Any) -> str:
    if v is None or v is MISSING:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "list"
    return "object"


def ref_equal(a: Any, b: Any) -> bool:
    if a is MISSING or b is MISSING:
        return a is b
    if kind_of(a) != kind_of(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(ref_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def ref_glob(text: str, pattern: str) -> bool:
    if not pattern:
        return not text
    head, rest = pattern[0], pattern[1:]
    if head == "*":
        return any(ref_glob(text[i:], rest) for i in range(len(text) + 1))
    return bool(text) and (head == "?" or head == text[0]) and ref_glob(text[1:], rest)


def ref_value(node: Any, event: dict[str, Any]) -> Any:
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "path":
        cur: Any = event
        for key in node[1].split("."):
            if not isinstance(cur, dict) or key not in cur:
                return MISSING
            cur = cur[key]
        return cur
    if kind == "list":
        return [ref_value(item, event) for item in node[1]]
    args = [ref_value(arg, event) for arg in node[2:]]
    name, x = node[1], args[0]
    if name == "lowercase":
        return x.lower() if isinstance(x, str) else None
    if name == "uppercase":
        return x.upper() if isinstance(x, str) else None
    if name == "typeof":
        return kind_of(x)
    if name == "length":
        if x is None or x is MISSING:
            return 0
        return len(x.encode()) if isinstance(x, str) else len(x) if isinstance(x, list) else math.nan
    if name == "contains":
        return isinstance(x, str) and isinstance(args[1], str) and args[1] in x
    return isinstance(x, str) and ref_glob(x, args[1])  # match


def is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def ref_eval(node: Any, event: dict[str, Any]) -> bool:
    kind = node[0]
    if kind == "not":
        return not ref_eval(node[1], event)
    if kind in ("and", "or"):
        results = [ref_eval(c, event) for c in node[1]]
        return all(results) if kind == "and" else any(results)
    if kind == "value":
        return ref_value(node[1], event) is True
    op, a, b = node[1], ref_value(node[2], event), ref_value(node[3], event)
    if op == "=":
        return ref_equal(a, b)
    if op == "!=":
        return not ref_equal(a, b)
    if op == "in":
        return isinstance(b, list) and any(ref_equal(a, x) for x in b)
    if not (is_num(a) and is_num(b)):
        return False
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(conditions, st.lists(events, min_size=1, max_size=4))
def test_random_conditions_agree_with_the_reference(tree: Any, sample: list[dict[str, Any]]) -> None:
    source = source_of(tree)
    condition = compile_fql(source)
    for event in sample:
        assert condition(event) is ref_eval(tree, event), (source, event)
