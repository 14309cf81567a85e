"""Parsing filter documents: every refusal is an InvalidInput naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from sluice.errors import InvalidInput
from sluice.filters import (
    MAX_FQL_BYTES,
    AllowProperties,
    Drop,
    DropProperties,
    Sample,
    parse_filter,
)
from sluice.fql import FqlError, compile_fql

BAD_FQL = "type = = 'track'"


def doc(**overrides: Any) -> dict[str, Any]:
    return {"if": "all", "actions": [{"type": "DROP"}], **overrides}


def refused(document: dict[str, Any]) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        parse_filter(document)
    return info.value


def test_a_full_document() -> None:
    flt = parse_filter(
        {
            "if": "all",
            "actions": [
                {"type": "SAMPLE", "percent": 0.5, "path": "userId"},
                {"type": "SAMPLE", "percent": 1},
                {"type": "DROP"},
                {"type": "DROP_PROPERTIES", "fields": {"properties": ["email", "phone"], "": ["context"]}},
                {"type": "ALLOW_PROPERTIES", "fields": {"properties": ["plan"]}},
            ],
            "sourceId": "src_1",
            "title": "No test users",
            "description": "why",
            "enabled": False,
        },
        id="df_1",
        destination_id="dst_1",
    )
    assert flt.actions == (
        Sample(0.5, "userId"),
        Sample(1.0),
        Drop(),
        DropProperties((("properties", frozenset({"email", "phone"})), ("", frozenset({"context"})))),
        AllowProperties((("properties", frozenset({"plan"})),)),
    )
    assert (flt.id, flt.destination_id, flt.source_id, flt.title, flt.enabled) == (
        "df_1",
        "dst_1",
        "src_1",
        "No test users",
        False,
    )
    assert flt.label == "No test users"
    assert flt.to_document() == {
        "sourceId": "src_1",
        "if": "all",
        "actions": [
            {"type": "SAMPLE", "percent": 0.5, "path": "userId"},
            {"type": "SAMPLE", "percent": 1.0},
            {"type": "DROP"},
            {"type": "DROP_PROPERTIES", "fields": {"properties": ["email", "phone"], "": ["context"]}},
            {"type": "ALLOW_PROPERTIES", "fields": {"properties": ["plan"]}},
        ],
        "title": "No test users",
        "description": "why",
        "enabled": False,
    }
    # the document round-trips
    again = parse_filter(flt.to_document(), id="df_1", destination_id="dst_1")
    assert again == flt


def test_defaults() -> None:
    flt = parse_filter(doc())
    assert (flt.source_id, flt.title, flt.description, flt.enabled) == (None, "", "", True)
    assert flt.label == "if all"


def test_invalid_fql_names_if_and_the_position() -> None:
    with pytest.raises(FqlError) as fql:
        compile_fql(BAD_FQL)
    error = refused(doc(**{"if": BAD_FQL}))
    assert error.field == "if"
    assert f"position {fql.value.position}" in error.message


@pytest.mark.parametrize("value", [None, "", "   ", 3])
def test_if_is_required(value: object) -> None:
    assert refused(doc(**{"if": value})).field == "if"


def test_if_is_at_most_5_kb() -> None:
    long = "all" + " " * MAX_FQL_BYTES
    error = refused(doc(**{"if": long}))
    assert error.field == "if" and "5120" in error.message


@pytest.mark.parametrize(
    "actions, field",
    [
        (None, "actions"),
        ([], "actions"),
        ({"type": "DROP"}, "actions"),
        ([{"type": "DROP"}] * 21, "actions"),
        (["DROP"], "actions[0]"),
        ([{"type": "DELETE"}], "actions[0].type"),
        ([{}], "actions[0].type"),
        ([{"type": "DROP", "percent": 0.5}], "actions[0].percent"),
        ([{"type": "DROP"}, {"type": "SAMPLE"}], "actions[1].percent"),
        ([{"type": "SAMPLE", "percent": 1.5}], "actions[0].percent"),
        ([{"type": "SAMPLE", "percent": -0.1}], "actions[0].percent"),
        ([{"type": "SAMPLE", "percent": True}], "actions[0].percent"),
        ([{"type": "SAMPLE", "percent": "0.5"}], "actions[0].percent"),
        ([{"type": "SAMPLE", "percent": float("nan")}], "actions[0].percent"),
        ([{"type": "SAMPLE", "percent": 0.5, "path": ""}], "actions[0].path"),
        ([{"type": "SAMPLE", "percent": 0.5, "path": "a..b"}], "actions[0].path"),
        ([{"type": "SAMPLE", "percent": 0.5, "path": 3}], "actions[0].path"),
        ([{"type": "SAMPLE", "percent": 0.5, "fields": {"a": ["b"]}}], "actions[0].fields"),
        ([{"type": "DROP_PROPERTIES"}], "actions[0].fields"),
        ([{"type": "DROP_PROPERTIES", "fields": {}}], "actions[0].fields"),
        ([{"type": "DROP_PROPERTIES", "fields": ["email"]}], "actions[0].fields"),
        ([{"type": "DROP_PROPERTIES", "fields": {"properties": []}}], "actions[0].fields.properties"),
        ([{"type": "DROP_PROPERTIES", "fields": {"properties": "email"}}], "actions[0].fields.properties"),
        ([{"type": "ALLOW_PROPERTIES", "fields": {"properties": [""]}}], "actions[0].fields.properties[0]"),
        ([{"type": "ALLOW_PROPERTIES", "fields": {"properties.": ["a"]}}], "actions[0].fields.properties."),
        ([{"type": "DROP_PROPERTIES", "fields": {"": ["context", "type"]}}], 'actions[0].fields[""][1]'),
        ([{"type": "DROP_PROPERTIES", "fields": {"": ["messageId"]}}], 'actions[0].fields[""][0]'),
    ],
)
def test_bad_actions_name_the_field(actions: object, field: str) -> None:
    assert refused(doc(actions=actions)).field == field


def test_null_counts_as_absent_in_actions() -> None:
    flt = parse_filter(doc(actions=[{"type": "SAMPLE", "percent": 0.1, "path": None, "fields": None}]))
    assert flt.actions == (Sample(0.1),)


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"title": "x" * 65}, "title"),
        ({"title": 5}, "title"),
        ({"description": "x" * 1001}, "description"),
        ({"enabled": "yes"}, "enabled"),
        ({"sourceId": 5}, "sourceId"),
        ({"sourceId": ""}, "sourceId"),
    ],
)
def test_bad_fields(overrides: dict[str, Any], field: str) -> None:
    assert refused(doc(**overrides)).field == field


def test_title_of_64_characters_is_fine() -> None:
    assert parse_filter(doc(title="x" * 64)).title == "x" * 64
