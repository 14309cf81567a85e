"""sluice.actions.mapping: every directive (hit, miss, nesting), validation locations, and that a
compiled mapper never raises on a JSON-like event."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.actions.mapping import DIRECTIVES, Mapper, MappingError, compile_mapping, get_path

EVENT: dict[str, Any] = {
    "type": "track",
    "event": "Order Completed",
    "userId": "u1",
    "properties": {
        "revenue": 42.5,
        "name": "Ann",
        "email": "ANN@Example.COM",
        "empty": "",
        "nothing": None,
        "zero": 0,
        "flag": False,
        "products": [{"product_id": "p1", "price": 10}, {"product_id": "p2", "price": 2.5, "tags": ["a", "b"]}],
        "tags": ["x", "y"],
        "payload": '{"a": [1, 2], "b": null}',
        "notJson": "{oops",
        "spaced key": "yes",
    },
    "traits": {"plan": "pro", "address": {"city": "Paris"}},
    "integrations": {"Actions Amplitude": {"session_id": 7}},
}


def run(mapping: Any, event: Any = EVENT) -> Any:
    return compile_mapping(mapping)(event)


# --- raw values and nesting ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", ["text", 1, 2.5, True, False, None, [], {}, [1, "a", None], {"a": {"b": [1, {"c": 2}]}}]
)
def test_raw_values_come_out_unchanged(raw: Any) -> None:
    assert run(raw) == raw


def test_nested_objects_and_lists_are_evaluated_recursively() -> None:
    mapping = {
        "user": {"id": {"@path": "$.userId"}, "plan": {"@path": "$.traits.plan"}, "source": "sluice"},
        "items": [{"@path": "$.properties.name"}, {"@path": "$.properties.missing"}, 3],
        "deep": {"a": {"b": {"c": {"@path": "$.traits.address.city"}}}},
    }
    assert run(mapping) == {
        "user": {"id": "u1", "plan": "pro", "source": "sluice"},
        "items": ["Ann", None, 3],  # a missing value in a list is null
        "deep": {"a": {"b": {"c": "Paris"}}},
    }


def test_missing_values_leave_their_key_out_but_null_stays() -> None:
    mapping = {"a": {"@path": "$.nope"}, "b": None, "c": {"@path": "$.properties.nothing"}, "d": {"x": {"@path": "q"}}}
    assert run(mapping) == {"b": None, "c": None, "d": {}}


def test_a_root_directive_that_resolves_to_missing_gives_none() -> None:
    assert run({"@path": "$.nope"}) is None


def test_metadata_beside_a_directive_is_ignored() -> None:
    assert run({"x": {"@path": "$.userId", "_metadata": {"note": "id"}}}) == {"x": "u1"}


def test_mapper_keeps_its_source_and_can_run_many_times() -> None:
    mapping = {"r": {"@path": "$.properties.revenue"}}
    mapper = compile_mapping(mapping)
    assert isinstance(mapper, Mapper)
    assert mapper.source == mapping
    assert mapper(EVENT) == mapper(EVENT) == {"r": 42.5}
    assert mapper({"properties": {"revenue": 1}}) == {"r": 1}


# --- @path ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$.properties.revenue", 42.5),
        ("properties.revenue", 42.5),
        ("$.properties.products[1].price", 2.5),
        ("$.properties.products.1.price", 2.5),
        ("properties.products[0].product_id", "p1"),
        ("$.properties.products[1].tags[1]", "b"),
        ("$.traits.address", {"city": "Paris"}),
        ("$.integrations.Actions Amplitude.session_id", 7),
        ("$.properties.spaced key", "yes"),
        ("$.properties.zero", 0),
        ("$.properties.flag", False),
        ("$.properties.empty", ""),
        ("$.properties.nothing", None),
    ],
)
def test_path_hits(path: str, expected: Any) -> None:
    assert run({"v": {"@path": path}}) == {"v": expected}


@pytest.mark.parametrize(
    "path",
    [
        "$.nope",
        "$.properties.nope",
        "$.properties.revenue.deeper",
        "$.properties.products[2].price",
        "$.properties.products[-1]",
        "$.properties.products[01]",
        "$.properties.products.first",
        "$.properties.name.0",  # strings are not indexed
        "$.properties.nothing.x",
        "$.integrations['Actions Amplitude'].session_id",  # quoted keys are not supported (as in mapping-kit)
        "$['properties']",
    ],
)
def test_path_misses_leave_the_key_out(path: str) -> None:
    assert run({"v": {"@path": path}, "kept": 1}) == {"kept": 1}


@pytest.mark.parametrize("root", ["", "$", "$.", "."])
def test_path_to_the_root_is_the_whole_event(root: str) -> None:
    assert run({"@path": root}) == EVENT


def test_path_may_be_a_directive() -> None:
    event = {"which": "b", "b": "bee"}
    assert run({"v": {"@path": {"@path": "$.which"}}}, event) == {"v": "bee"}
    assert run({"v": {"@path": {"@path": "$.nope"}}}, event) == {}
    assert run({"v": {"@path": {"@path": "$.n"}}}, {"n": 5}) == {}  # not a string: missing


def test_path_index_that_is_too_big_is_a_miss() -> None:
    event = {"which": "$.l[" + "9" * 5000 + "]", "l": [1]}
    assert run({"v": {"@path": {"@path": "$.which"}}}, event) == {}
    assert run({"v": {"@path": "$.l[99999999999999999999]"}}, event) == {}


def test_get_path_helper() -> None:
    assert get_path(EVENT, "$.properties.products[0].price") == 10
    assert get_path(EVENT, "$.nope") is None
    assert get_path([1, [2, 3]], "$[1][0]") == 2


# --- @if ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "exists", "blank"),
    [
        ("$.properties.name", "then", "then"),
        ("$.properties.zero", "then", "then"),
        ("$.properties.flag", "then", "then"),
        ("$.properties.empty", "then", "else"),
        ("$.properties.nothing", "else", "else"),
        ("$.properties.nope", "else", "else"),
    ],
)
def test_if_exists_and_blank(path: str, exists: str, blank: str) -> None:
    for kind, expected in (("exists", exists), ("blank", blank)):
        mapping = {"@if": {kind: {"@path": path}, "then": "then", "else": "else"}}
        assert run(mapping) == expected, (kind, path)


def test_if_without_the_needed_branch_is_missing() -> None:
    mapping = {
        "only_then": {"@if": {"exists": {"@path": "$.nope"}, "then": True}},
        "only_else": {"@if": {"exists": {"@path": "$.userId"}, "else": True}},
        "kept": {"@if": {"exists": {"@path": "$.userId"}, "then": True}},
    }
    assert run(mapping) == {"kept": True}


def test_if_branches_are_evaluated_and_may_nest() -> None:
    mapping = {
        "v": {
            "@if": {
                "exists": {"@path": "$.properties.nope"},
                "then": "never",
                "else": {
                    "@if": {
                        "blank": {"@path": "$.properties.email"},
                        "then": {"email": {"@case": {"operator": "lower", "value": {"@path": "$.properties.email"}}}},
                    }
                },
            }
        }
    }
    assert run(mapping) == {"v": {"email": "ann@example.com"}}


def test_if_with_falsy_else_returns_it() -> None:
    assert run({"@if": {"exists": {"@path": "$.nope"}, "then": 1, "else": False}}) is False
    assert run({"@if": {"exists": "literal", "then": 1}}) == 1  # a literal always exists


# --- @template ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Hello {{properties.name}}", "Hello Ann"),
        ("Hello {{ properties.name }}!", "Hello Ann!"),
        ("Hello {{$.properties.name}}", "Hello Ann"),
        ("{{{properties.name}}} ({{userId}})", "Ann (u1)"),
        ("Hi {{properties.nope}}!", "Hi !"),
        ("{{properties.nothing}}|{{properties.zero}}|{{properties.flag}}", "|0|false"),
        ("{{properties.revenue}} {{properties.products[0].price}}", "42.5 10"),
        ("{{traits.address}}", '{"city":"Paris"}'),
        ("{{properties.tags}}", '["x","y"]'),
        ("no placeholders", "no placeholders"),
        ("{{properties.name}}}", "Ann}"),
        ("{{}} {{", "{{}} {{"),
    ],
)
def test_template(template: str, expected: str) -> None:
    assert run({"@template": template}) == expected


def test_template_does_not_escape_html() -> None:
    assert run({"@template": "<b>{{a}}</b>"}, {"a": "<i>'x'&</i>"}) == "<b><i>'x'&</i></b>"


def test_template_integral_float_is_written_like_javascript() -> None:
    assert run({"@template": "{{a}}/{{b}}"}, {"a": 3.0, "b": 1e300}) == f"3/{1e300!r}"


def test_template_may_come_from_a_directive() -> None:
    event = {"tpl": "Hi {{name}}", "name": "Bo"}
    assert run({"@template": {"@path": "$.tpl"}}, event) == "Hi Bo"
    assert run({"v": {"@template": {"@path": "$.nope"}}}, event) == {}


# --- @literal -----------------------------------------------------------------------------------------


def test_literal() -> None:
    assert run({"v": {"@literal": True}}) == {"v": True}
    assert run({"v": {"@literal": ""}}) == {"v": ""}
    assert run({"v": {"@literal": [1, {"a": None}]}}) == {"v": [1, {"a": None}]}
    # as in mapping-kit, directives inside a literal are resolved
    assert run({"v": {"@literal": {"a": {"@path": "$.userId"}, "b": {"@path": "$.nope"}}}}) == {"v": {"a": "u1"}}


# --- @case --------------------------------------------------------------------------------------------


def test_case() -> None:
    assert run({"@case": {"operator": "lower", "value": {"@path": "$.properties.email"}}}) == "ann@example.com"
    assert run({"@case": {"operator": "upper", "value": "Straße"}}) == "STRASSE"
    assert run({"@case": {"operator": "upper", "value": {"@path": "$.properties.revenue"}}}) == 42.5
    assert run({"v": {"@case": {"operator": "upper", "value": {"@path": "$.nope"}}}}) == {}


# --- @arrayPath ---------------------------------------------------------------------------------------


def test_array_path_with_an_item_shape() -> None:
    mapping = {
        "items": {
            "@arrayPath": [
                "$.properties.products",
                {"id": {"@path": "$.product_id"}, "price": {"@path": "price"}, "tag": {"@path": "$.tags[0]"}},
            ]
        }
    }
    assert run(mapping) == {"items": [{"id": "p1", "price": 10}, {"id": "p2", "price": 2.5, "tag": "a"}]}


def test_array_path_without_a_shape_is_the_value() -> None:
    assert run({"v": {"@arrayPath": ["$.properties.tags"]}}) == {"v": ["x", "y"]}
    assert run({"v": {"@arrayPath": ["$.properties.tags", {}]}}) == {"v": ["x", "y"]}
    assert run({"v": {"@arrayPath": ["$.properties.name", {"a": 1}]}}) == {"v": "Ann"}


def test_array_path_object_is_one_item_and_miss_is_missing() -> None:
    shape = {"city": {"@path": "$.city"}}
    assert run({"v": {"@arrayPath": ["$.traits.address", shape]}}) == {"v": [{"city": "Paris"}]}
    assert run({"v": {"@arrayPath": ["$.nope", shape]}}) == {}


def test_array_path_items_that_are_not_objects() -> None:
    shape = {"value": {"@path": "$."}, "x": {"@path": "$.x"}}
    assert run({"v": {"@arrayPath": ["$.properties.tags", shape]}}) == {"v": [{"value": "x"}, {"value": "y"}]}


def test_array_path_from_a_directive_and_nested() -> None:
    mapping = {
        "@arrayPath": [
            {
                "@if": {
                    "exists": {"@path": "$.properties.products"},
                    "then": {"@path": "$.properties.products"},
                    "else": [],
                }
            },
            {"id": {"@path": "$.product_id"}, "tags": {"@arrayPath": ["$.tags", {"t": {"@path": "$."}}]}},
        ]
    }
    assert run(mapping) == [{"id": "p1"}, {"id": "p2", "tags": [{"t": "a"}, {"t": "b"}]}]


# --- @json --------------------------------------------------------------------------------------------


def test_json_encode() -> None:
    assert run({"@json": {"mode": "encode", "value": {"@path": "$.traits"}}}) == (
        '{"plan":"pro","address":{"city":"Paris"}}'
    )
    assert run({"@json": {"mode": "encode", "value": "é"}}) == '"é"'
    assert run({"v": {"@json": {"mode": "encode", "value": {"@path": "$.nope"}}}}) == {}
    assert run({"@json": {"mode": "encode", "value": {"@path": "$.properties.nothing"}}}) == "null"


def test_json_decode() -> None:
    assert run({"@json": {"mode": "decode", "value": {"@path": "$.properties.payload"}}}) == {"a": [1, 2], "b": None}
    assert run({"v": {"@json": {"mode": "decode", "value": {"@path": "$.properties.notJson"}}}}) == {}
    assert run({"@json": {"mode": "decode", "value": {"@path": "$.properties.revenue"}}}) == 42.5  # not a string
    assert run({"v": {"@json": {"mode": "decode", "value": {"@path": "$.nope"}}}}) == {}


def test_json_encode_of_a_value_nested_too_deeply_is_missing() -> None:
    deep: Any = "x"
    for _ in range(2000):
        deep = [deep]
    assert run({"v": {"@json": {"mode": "encode", "value": {"@path": "$.deep"}}}}, {"deep": deep}) == {}
    text = "[" * 5000 + "]" * 5000
    assert run({"v": {"@json": {"mode": "decode", "value": {"@path": "$.t"}}}}, {"t": text}) == {}


# --- @merge -------------------------------------------------------------------------------------------


def test_merge_directions() -> None:
    objects = [{"@path": "$.traits"}, {"plan": "free", "extra": 1}]
    assert run({"@merge": {"objects": objects, "direction": "right"}}) == {
        "plan": "free",
        "address": {"city": "Paris"},
        "extra": 1,
    }
    assert run({"@merge": {"objects": objects, "direction": "left"}}) == {
        "plan": "pro",
        "address": {"city": "Paris"},
        "extra": 1,
    }


def test_merge_skips_values_that_are_not_objects() -> None:
    objects = [{"@path": "$.nope"}, {"@path": "$.properties.name"}, {"a": 1}, [1], None]
    assert run({"@merge": {"objects": objects, "direction": "right"}}) == {"a": 1}
    assert run({"@merge": {"objects": [], "direction": "left"}}) == {}


def test_merge_does_not_change_the_event() -> None:
    event = {"a": {"x": 1}, "b": {"x": 2}}
    run({"@merge": {"objects": [{"@path": "$.a"}, {"@path": "$.b"}], "direction": "right"}}, event)
    assert event == {"a": {"x": 1}, "b": {"x": 2}}


# --- validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mapping", "location", "fragment"),
    [
        ({"user": {"@pth": "$.userId"}}, "mapping.user.@pth", "unknown directive @pth"),
        ({"user": {"@path": 3}}, "mapping.user.@path", "string or a directive"),
        ({"user": {"@path": "$.a", "@template": "x"}}, "mapping.user", "exactly one @-key"),
        ({"user": {"@path": "$.a", "id": 1}}, "mapping.user", "cannot share"),
        ({"a": [1, {"b": {"@nope": 1}}]}, "mapping.a[1].b.@nope", "unknown directive"),
        ({"a": {"@if": {"then": 1}}}, "mapping.a.@if", '"exists" or "blank"'),
        ({"a": {"@if": {"exists": 1, "blank": 1, "then": 1}}}, "mapping.a.@if", '"exists" or "blank"'),
        ({"a": {"@if": {"exists": 1}}}, "mapping.a.@if", '"then", "else"'),
        ({"a": {"@if": {"exists": 1, "thne": 1}}}, "mapping.a.@if.thne", "no option 'thne'"),
        ({"a": {"@if": "x"}}, "mapping.a.@if", "takes an object"),
        ({"a": {"@if": {"exists": {"@bad": 1}, "then": 1}}}, "mapping.a.@if.exists.@bad", "unknown directive"),
        ({"a": {"@if": {"exists": 1, "else": {"x": {"@path": 1}}}}}, "mapping.a.@if.else.x.@path", "string"),
        ({"a": {"@template": 5}}, "mapping.a.@template", "string or a directive"),
        ({"a": {"@case": {"operator": "title", "value": "x"}}}, "mapping.a.@case.operator", '"lower" or "upper"'),
        ({"a": {"@case": {"value": "x"}}}, "mapping.a.@case", 'requires "operator"'),
        ({"a": {"@case": {"operator": "lower"}}}, "mapping.a.@case", 'requires "value"'),
        ({"a": {"@arrayPath": "$.x"}}, "mapping.a.@arrayPath", "takes a list"),
        ({"a": {"@arrayPath": []}}, "mapping.a.@arrayPath", "takes a list"),
        ({"a": {"@arrayPath": ["$.x", {}, {}]}}, "mapping.a.@arrayPath", "takes a list"),
        ({"a": {"@arrayPath": [1]}}, "mapping.a.@arrayPath[0]", "string or a directive"),
        ({"a": {"@arrayPath": ["$.x", "id"]}}, "mapping.a.@arrayPath[1]", "item shape must be an object"),
        ({"a": {"@arrayPath": ["$.x", {"id": {"@x": 1}}]}}, "mapping.a.@arrayPath[1].id.@x", "unknown"),
        ({"a": {"@json": {"mode": "stringify", "value": 1}}}, "mapping.a.@json.mode", '"encode" or "decode"'),
        ({"a": {"@json": {"mode": "encode"}}}, "mapping.a.@json", 'requires "value"'),
        ({"a": {"@merge": {"objects": [{}]}}}, "mapping.a.@merge", 'requires "direction"'),
        ({"a": {"@merge": {"objects": {}, "direction": "left"}}}, "mapping.a.@merge.objects", "must be a list"),
        ({"a": {"@merge": {"objects": [], "direction": "up"}}}, "mapping.a.@merge.direction", '"left" or "right"'),
        ({"a": {"@merge": {"objects": [{"@bad": 1}], "direction": "up"}}}, "mapping.a.@merge.direction", "left"),
        ({"a": {"@merge": {"objects": [{"@bad": 1}], "direction": "left"}}}, "mapping.a.@merge.objects[0].@bad", "bad"),
        ({"a": {"@literal": {"@nope": 1}}}, "mapping.a.@literal.@nope", "unknown directive"),
        ({"a": float("nan")}, "mapping.a", "finite"),
        ({"a": {1: "x"}}, "mapping.a", "keys must be strings"),
        ({"a": {"x"}}, "mapping.a", "not a JSON value"),
    ],
)
def test_invalid_mappings_name_the_location(mapping: Any, location: str, fragment: str) -> None:
    with pytest.raises(MappingError) as caught:
        compile_mapping(mapping)
    assert caught.value.location == location
    assert fragment in caught.value.message
    assert str(caught.value).startswith(location + ": ")
    assert isinstance(caught.value, ValueError)


def test_location_prefix_is_configurable() -> None:
    with pytest.raises(MappingError) as caught:
        compile_mapping({"a": {"@x": 1}}, location="subscriptions[2].mapping")
    assert caught.value.location == "subscriptions[2].mapping.a.@x"


def test_depth_limit() -> None:
    mapping: Any = {"@path": "$.a"}
    for _ in range(40):
        mapping = {"k": mapping}
    with pytest.raises(MappingError, match="levels deep"):
        compile_mapping(mapping)


def test_every_directive_is_tested_here() -> None:
    assert {"@path", "@if", "@template", "@literal", "@case", "@arrayPath", "@json", "@merge"} == DIRECTIVES


# --- never raises -------------------------------------------------------------------------------------

_json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12)
_keys = st.sampled_from(["a", "b", "0", "1", "properties", "products", "name", "x y", "", "$"]) | st.text(max_size=6)
_json = st.recursive(
    _json_scalars | st.sampled_from(['{"a": 1}', "[1,", "{{a}}", "$.a", "A b"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_keys, children, max_size=5),
    max_leaves=30,
)
_paths = st.sampled_from(["$.a", "a.b", "$.a[0]", "$.products[1].name", "$.", "", "$", "a.0.b", "$.x y", "$[0]"])

EVERYTHING = {
    "all": [
        {"@path": "$.a"},
        {"@path": "$.a[0].b"},
        {"@path": {"@path": "$.b"}},
        {"@if": {"exists": {"@path": "$.a"}, "then": {"@path": "$.a.b"}, "else": {"@path": "$.b"}}},
        {"@if": {"blank": {"@path": "$.name"}, "then": 1}},
        {"@template": "{{a}} {{a.b}} {{{products[0]}}} {{$.x y}}"},
        {"@template": {"@path": "$.a"}},
        {"@literal": {"a": {"@path": "$.a"}}},
        {"@case": {"operator": "upper", "value": {"@path": "$.name"}}},
        {"@arrayPath": ["$.products", {"n": {"@path": "$.name"}, "all": {"@path": "$."}, "z": {"@path": "$.0"}}]},
        {"@arrayPath": [{"@path": "$.b"}, {"@template": "{{a}}"}]},
        {"@json": {"mode": "encode", "value": {"@path": "$."}}},
        {"@json": {"mode": "decode", "value": {"@path": "$.a"}}},
        {"@merge": {"objects": [{"@path": "$.a"}, {"@path": "$.b"}, {"k": 1}], "direction": "left"}},
    ]
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=_json)
def test_a_compiled_mapper_never_raises_on_json_events(event: Any) -> None:
    result = compile_mapping(EVERYTHING)(event)
    assert isinstance(result, dict) and len(result["all"]) == len(EVERYTHING["all"])


@settings(max_examples=200, deadline=None)
@given(event=st.dictionaries(_keys, _json, max_size=6), path=_paths, template=st.text(max_size=30))
def test_paths_and_templates_never_raise(event: dict[str, Any], path: str, template: str) -> None:
    mapper = compile_mapping(
        {"p": {"@path": path}, "t": {"@template": template}, "a": {"@arrayPath": [path, {"v": 1}]}}
    )
    out = mapper(event)
    assert isinstance(out, dict) and isinstance(out["t"], str)


@settings(max_examples=200, deadline=None)
@given(event=st.dictionaries(_keys, _json, max_size=6), path=st.text(max_size=40), template=st.text(max_size=40))
def test_paths_and_templates_from_the_event_never_raise(event: dict[str, Any], path: str, template: str) -> None:
    mapper = compile_mapping(
        {
            "p": {"@path": {"@path": "$.__p"}},
            "t": {"@template": {"@path": "$.__t"}},
            "a": {"@arrayPath": [{"@path": "$.__p"}, {"v": {"@path": {"@path": "$.__p"}}}]},
            "j": {"@json": {"mode": "decode", "value": {"@path": "$.__t"}}},
        }
    )
    out = mapper({**event, "__p": path, "__t": template})
    assert isinstance(out, dict) and isinstance(out["t"], str)
