"""The sample events shipped with the project are valid Segment events."""

from __future__ import annotations

from typing import Any

import pytest

from sluice.events import EVENT_TYPES, event_type, message_id, validate_event, validate_or_raise

from .helpers import FIXTURES, load_fixture

SINGLE = sorted(p.name for p in FIXTURES.glob("*.json") if p.name != "batch.json")


def test_there_is_one_fixture_per_event_type() -> None:
    assert sorted(name.removesuffix(".json") for name in SINGLE) == sorted(EVENT_TYPES)


@pytest.mark.parametrize("name", SINGLE)
def test_single_fixture_is_valid(name: str) -> None:
    event = load_fixture(name)
    assert validate_event(event) == []
    assert validate_or_raise(event) is event
    assert event_type(event) == name.removesuffix(".json")
    assert message_id(event) == event["messageId"]


def test_every_batch_item_is_valid() -> None:
    batch: list[dict[str, Any]] = load_fixture("batch.json")
    assert isinstance(batch, list)
    assert len(batch) == 3
    for item in batch:
        assert validate_event(item) == [], item
    assert [event_type(item) for item in batch] == ["identify", "track", "track"]
