"""One test per construct of the language, plus the error contract (position, expected)."""

from __future__ import annotations

from typing import Any

import pytest

from sluice.fql import MAX_DEPTH, MAX_SOURCE_LENGTH, FqlError, compile_fql, format_tree
from sluice.fql.syntax import And, Call, Compare, ListValue, Literal, Not, Or, Path

EVENT: dict[str, Any] = {
    "type": "track",
    "event": "Order Completed",
    "userId": "u1",
    "properties": {
        "total": 250.5,
        "count": 3,
        "tags": ["sale", "vip"],
        "coupon": None,
        "gift": True,
        "product 1": {"price": "19.99"},
        "a.b": "dotted",
        "products": [{"sku": "A"}, {"sku": "B"}],
        "title": "Café Crème",
        "empty": {},
    },
    "context": {"page": {"url": "https://shop.example.com/checkout?x=1"}, "app": {"version": "4.2.0"}},
}


def ev(source: str, event: dict[str, Any] | None = None) -> bool:
    return compile_fql(source)(EVENT if event is None else event)


def error(source: str) -> FqlError:
    with pytest.raises(FqlError) as info:
        compile_fql(source)
    return info.value


def test_all_matches_every_event() -> None:
    assert ev("all") and ev("  all  ", {}) and compile_fql("all")({"x": 1})
    assert compile_fql("all").source == "all"


def test_literals_as_conditions() -> None:
    assert ev("true") and not ev("false") and not ev("null") and not ev("1") and not ev("'true'")


def test_paths_dots_and_missing() -> None:
    assert ev("properties.gift")
    assert ev("properties.count = 3")
    assert not ev("properties.nope.deeper = 3")
    assert ev("properties.nope.deeper != 3")


def test_path_escapes() -> None:
    assert ev("properties.product\\ 1.price = '19.99'")
    assert ev("properties.a\\.b = 'dotted'")
    assert ev("\\type = 'track'")
    assert ev("properties.caf\\é = null", {"properties": {"café": None}})
    assert ev("properties.\\$x = 1", {"properties": {"$x": 1}})


def test_path_into_lists_by_index() -> None:
    assert ev("properties.products.1.sku = 'B'")
    assert not ev("properties.products.2.sku = 'B'")
    assert not ev("properties.products.01.sku = 'B'")
    assert ev("properties.tags.0 = 'sale'")


def test_keywords_need_escaping_to_be_fields() -> None:
    assert ev("\\and = 1", {"and": 1})
    assert ev("all = 1", {"all": 1})
    assert ev("andy = 1", {"andy": 1})


def test_equality_is_strict() -> None:
    assert ev("properties.count = 3") and ev("properties.count = 3.0")
    assert not ev("properties.count = '3'")
    assert ev("properties.gift = true") and not ev("properties.gift = 1")
    assert not ev("x = 1", {"x": True}) and not ev("x = true", {"x": 1})
    assert ev("properties.coupon = null") and not ev("properties.missing = null")
    assert ev("properties.tags = ['sale', 'vip']") and not ev("properties.tags = ['vip', 'sale']")
    assert ev("properties.products.0 = properties.products.0")


def test_not_equal() -> None:
    assert ev("type != 'page'") and not ev("type != 'track'")
    assert ev("properties.count != '3'") and ev("properties.missing != null") and not ev("properties.coupon != null")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("properties.total > 100", True),
        ("properties.total >= 250.5", True),
        ("properties.total < 250.5", False),
        ("properties.total <= 250.5", True),
        ("100 < properties.total", True),
        ("properties.total > '100'", False),
        ("properties.gift > 0", False),
        ("properties.missing < 1", False),
        ("-5 < -1", True),
        ("+5 > 4", True),
        ("1.5e2 = 150", True),
    ],
)
def test_numeric_comparisons(source: str, expected: bool) -> None:
    assert ev(source) is expected


def test_in_lists_and_paths() -> None:
    assert ev("type in ['track', 'page']") and not ev("type in ['page']")
    assert ev("'vip' in properties.tags") and not ev("'blink' in properties.tags")
    assert ev("properties.count in [1, 2, 3]") and not ev("properties.count in ['3']")
    assert ev("properties.coupon in [null]") and not ev("properties.missing in [null]")
    assert ev("'track' in [event, type]") and not ev("'x' in []")
    assert not ev("'x' in properties.missing") and not ev("'C' in properties.title")
    assert ev("true in [1, true]") and not ev("1 in [true]")
    assert ev("[1] in [[1], 2]")


def test_and_or_not_and_precedence() -> None:
    assert ev("true or false and false")  # and binds tighter: true or (false and false)
    assert not ev("(true or false) and false")
    assert ev("!false") and not ev("!true") and ev("!!true")
    assert ev("!type = 'page'")  # ! applies to the whole comparison
    assert ev("!properties.missing") and not ev("!properties.gift")
    assert ev("type = 'track' and event = 'Order Completed' and properties.total > 100 and userId = 'u1'")
    assert ev("type = 'a' or type = 'b' or type = 'c' or type = 'track'")
    assert not ev("type = 'a' and true and true and true")


def test_strings_quotes_and_escapes() -> None:
    assert ev('event = "Order Completed"') and ev("event = 'Order Completed'")
    assert ev("x = 'it\\'s'", {"x": "it's"}) and ev('x = "say \\"hi\\""', {"x": 'say "hi"'})
    assert ev("x = 'a\\\\b'", {"x": "a\\b"})
    assert ev("x = 'a\\*b'", {"x": "a\\*b"})  # unknown escapes are kept (for globs)
    assert ev("properties.title = 'Café Crème'")


def test_contains() -> None:
    assert ev("contains(context.page.url, 'checkout')") and not ev("contains(context.page.url, 'cart')")
    assert not ev("contains(null, 'x')") and not ev("contains(properties.count, '3')")
    assert ev("contains(event, uppercase('c'))") and ev("contains(lowercase(event), 'order')")


def test_match_globs() -> None:
    assert ev("match(event, 'Order *')") and ev("match(event, '*Completed')") and not ev("match(event, 'order*')")
    assert ev("match(event, 'Order?Completed')") and ev("match(event, '[NO]rder*')") and ev("match(event, '[M-P]*')")
    assert ev("match(event, '[^a-z]*')") and ev("match('a*b', 'a\\*b')") and not ev("match('ab', 'a\\*b')")
    assert not ev("match(null, '*')") and not ev("match(properties.total, '*')") and not ev("match(event, '[')")
    assert ev("match(context.page.url, 'https://*.example.com/*')") and ev("match('a/b', 'a?b')")
    assert ev("match(event, event)") and not ev("match(event, properties.missing)")


def test_length() -> None:
    assert ev("length(properties.tags) = 2") and ev("length(event) = 15") and ev("length(properties.coupon) = 0")
    assert ev("length(properties.missing) = 0") and ev("length('ア') = 3")  # bytes, as documented
    assert not ev("length(properties.empty) = 0") and not ev("length(properties.total) >= 0")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("lowercase(event) = 'order completed'", True),
        ("uppercase(event) = 'ORDER COMPLETED'", True),
        ("snakecase('test string') = 'test_string'", True),
        ("kebabcase('test string') = 'test-string'", True),
        ("titlecase('test string') = 'Test String'", True),
        ("titlecase('hELLO wORLD') = 'HELLO WORLD'", True),
        ("lowercase(properties.total) = null", True),
        ("uppercase(null) = null", True),
        ("lowercase(event)", False),
    ],
)
def test_string_functions(source: str, expected: bool) -> None:
    assert ev(source) is expected


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("event", "string"),
        ("properties.total", "number"),
        ("properties.gift", "bool"),
        ("properties.tags", "list"),
        ("properties.empty", "object"),
        ("properties.coupon", "null"),
        ("properties.missing", "null"),
        ("null", "null"),
    ],
)
def test_typeof(value: str, kind: str) -> None:
    assert ev(f"typeof({value}) = '{kind}'")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("bool(true)", True),
        ("bool('true')", True),
        ("bool('TRUE ')", True),
        ("bool('false')", False),
        ("bool('yes')", False),
        ("bool(1)", True),
        ("bool(0)", False),
        ("bool(null)", False),
        ("bool(properties.tags)", True),
        ("string(12) = '12'", True),
        ("string(2.5) = '2.5'", True),
        ("string(true) = 'true'", True),
        ("string(null) = 'null'", True),
        ('string(properties.tags) = \'["sale","vip"]\'', True),
        ("number('12') = 12", True),
        ("number(' 2.5 ') = 2.5", True),
        ("number('abc') = null", True),
        ("number(true) = null", True),
        ("number(properties.product\\ 1.price) > 19", True),
    ],
)
def test_conversion_functions(source: str, expected: bool) -> None:
    assert ev(source) is expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("semver(context.app.version, '>=', '4.0.0')", True),
        ("semver(context.app.version, '<', '4.2')", False),
        ("semver('1.0.0-beta', '<', '1.0.0')", True),
        ("semver('1.0.0-alpha.2', '>', '1.0.0-alpha.10')", False),
        ("semver('v2.0.0', '=', '2')", True),
        ("semver('1.0.0', '~=', '1.0.0')", False),
        ("semver('banana', '=', 'banana')", False),
        ("semver(1, '=', '1')", False),
    ],
)
def test_semver(source: str, expected: bool) -> None:
    assert ev(source) is expected


def test_whitespace_and_parentheses() -> None:
    assert ev("\n( type = 'track'\t)and(event='Order Completed')  ")
    assert ev("match ( event , 'Order*' )")


def test_constant_folding_keeps_semantics() -> None:
    assert not ev("1 = true") and ev("lowercase('A') = 'a'") and ev("length(5) != length(5)")


def test_tree_and_format() -> None:
    condition = compile_fql("!(a = 1 or b in ['x']) and contains(c, 'y')")
    tree = condition.tree
    assert isinstance(tree, And) and isinstance(tree.operands[0], Not)
    inner = tree.operands[0].operand
    assert isinstance(inner, Or)
    assert inner.operands[0] == Compare("=", Path(("a",), "a"), Literal(1))
    assert inner.operands[1] == Compare("in", Path(("b",), "b"), ListValue((Literal("x"),)))
    assert tree.operands[1] == Call("contains", (Path(("c",), "c"), Literal("y")))
    assert format_tree(tree).splitlines()[:3] == ["and", "  not", "    or"]


@pytest.mark.parametrize(
    ("source", "position", "expected"),
    [
        ("", 0, "a condition"),
        ("type =", 6, "a value"),
        ("type = 'track' and", 18, "a value"),
        ("(type = 'track'", 15, "')'"),
        ("type = 'track')", 14, "end of condition"),
        ("type == 'track'", 6, "a value"),
        ("type = 'track", 13, "a closing '"),
        ("a = b = c", 6, "end of condition"),
        ("foo(x)", 0, "one of bool, contains"),
        ("length(a, b)", 0, "1 argument"),
        ("x in 'abc'", 5, "a list or a field path"),
        ("x in lowercase(y)", 5, "a list or a field path"),
        ("a. = 1", 2, "a field name"),
        ("a\\", 2, "a character after"),
        ("1. = 1", 2, "a digit"),
        ("x = 1e", 6, "a digit in the exponent"),
        ("x = @", 4, "a value"),
        ("[1, 2", 5, "',' or ']'"),
        ("(event = 'x') = true", 14, "end of condition"),
    ],
)
def test_syntax_errors_name_position_and_expectation(source: str, position: int, expected: str) -> None:
    exc = error(source)
    assert isinstance(exc, ValueError)
    assert exc.position == position, str(exc)
    assert expected in exc.expected, str(exc)
    assert f"at position {position}" in str(exc) and exc.expected in str(exc)


def test_deep_nesting_is_an_fql_error_not_a_recursion_error() -> None:
    assert ev("(" * MAX_DEPTH + "true" + ")" * MAX_DEPTH)
    assert "too deeply nested" in str(error("(" * (MAX_DEPTH + 1) + "true" + ")" * (MAX_DEPTH + 1)))
    assert "too deeply nested" in str(error("!" * 1000 + "true"))
    assert "too deeply nested" in str(error("length(" * 500 + "x" + ")" * 500))
    assert "too deeply nested" in str(error("[" * 2000))


def test_long_flat_chains_compile_and_source_is_capped() -> None:
    chain = " or ".join(f"event = 'e{i}'" for i in range(250))
    assert len(chain) < MAX_SOURCE_LENGTH
    assert compile_fql(chain)({"event": "e249"})
    exc = error("true or " * 1000 + "true")
    assert "too long" in str(exc) and exc.position == MAX_SOURCE_LENGTH


def test_non_string_source_is_an_fql_error() -> None:
    with pytest.raises(FqlError):
        compile_fql(None)  # type: ignore[arg-type]
    with pytest.raises(FqlError):
        compile_fql(b"true")  # type: ignore[arg-type]


@pytest.mark.parametrize("event", [{}, {"properties": None}, {"properties": []}, {"properties": "x"}, {"type": 5}])
def test_conditions_never_raise_on_odd_events(event: dict[str, Any]) -> None:
    condition = compile_fql(
        "type = 'track' or properties.total > 1 or properties.0.x = 1 or length(properties) = 1 "
        "or 'a' in properties or match(properties.name, 'x*') or typeof(properties.a.b.c.d) = 'null'"
    )
    assert isinstance(condition(event), bool)
    assert condition([]) is True  # type: ignore[arg-type]  # only the typeof() clause holds
    assert compile_fql("type = 'track'")(None) is False  # type: ignore[arg-type]
