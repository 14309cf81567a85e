"""The dict-based model's helpers: reading, timestamps, batch defaults and messageId."""

from __future__ import annotations

import copy
import itertools
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from sluice.events import (
    ensure_message_id,
    event_type,
    format_timestamp,
    merge_batch_defaults,
    message_id,
    normalize_timestamps,
    parse_timestamp,
    validate_event,
)

from .helpers import load_fixture

RECEIVED = datetime(2024, 3, 1, 12, 0, 3, tzinfo=UTC)

# --- reading ---------------------------------------------------------------------------------


def test_event_type() -> None:
    assert event_type({"type": "group"}) == "group"
    assert event_type({"type": "purchase"}) is None
    assert event_type({"type": 1}) is None
    assert event_type({}) is None
    assert event_type(["track"]) is None


def test_message_id() -> None:
    assert message_id({"messageId": "m-1"}) == "m-1"
    assert message_id({"messageId": ""}) is None
    assert message_id({"messageId": 5}) is None
    assert message_id({}) is None
    assert message_id("m-1") is None


def test_parse_timestamp() -> None:
    assert parse_timestamp("2015-02-23T22:28:55.111Z") == datetime(2015, 2, 23, 22, 28, 55, 111000, UTC)
    assert parse_timestamp("2015-02-23T23:28:55+01:00") == datetime(2015, 2, 23, 22, 28, 55, tzinfo=UTC)
    naive = parse_timestamp("2015-02-23T22:28:55")
    assert naive == datetime(2015, 2, 23, 22, 28, 55, tzinfo=UTC)
    assert naive is not None and naive.tzinfo is not None
    go = parse_timestamp(load_fixture("delete.json")["originalTimestamp"])
    assert go == datetime(2020, 5, 9, 23, 54, 49, 209808, UTC)
    assert parse_timestamp("2020-05-09 23:54:49 -0700 MST") == datetime(2020, 5, 10, 6, 54, 49, tzinfo=UTC)
    for bad in ("", "now", "2015-02-30", "0000-01-01", None, 1424730535, ["2015-02-23"]):
        assert parse_timestamp(bad) is None, bad


def test_format_timestamp() -> None:
    assert format_timestamp(datetime(2015, 2, 23, 22, 28, 55, 111999, UTC)) == "2015-02-23T22:28:55.111Z"
    plus_two = timezone(timedelta(hours=2))
    assert format_timestamp(datetime(2015, 2, 24, 0, 28, 55, tzinfo=plus_two)) == "2015-02-23T22:28:55.000Z"
    assert format_timestamp(datetime(2015, 2, 23, 22, 28, 55)) == "2015-02-23T22:28:55.000Z"


# --- normalize_timestamps --------------------------------------------------------------------


def test_clock_skew_worked_example_from_the_track_fixture() -> None:
    # The device stamped the event at 19:11:01.152 and sent it at 19:11:01.169 by its own clock;
    # it spent 17 ms on the device, so it happened 17 ms before the server received it at .266.
    event = load_fixture("track.json")
    expected = event.pop("timestamp")
    received = datetime(2015, 12, 12, 19, 11, 1, 266000, UTC)
    out = normalize_timestamps(event, received_at=received)
    assert out["receivedAt"] == "2015-12-12T19:11:01.266Z"
    assert out["timestamp"] == expected == "2015-12-12T19:11:01.249Z"


def test_clock_skew_of_a_device_five_minutes_behind() -> None:
    event = {
        "type": "track",
        "originalTimestamp": "2024-03-01T13:55:00+02:00",  # 11:55:00Z by a clock 5 min slow
        "sentAt": "2024-03-01T11:55:02.500Z",  # 2.5 s later by the same clock
    }
    out = normalize_timestamps(event, received_at=RECEIVED)  # 12:00:03Z by the server
    assert out["timestamp"] == "2024-03-01T12:00:00.500Z"
    assert out["receivedAt"] == "2024-03-01T12:00:03.000Z"
    assert out["originalTimestamp"] == event["originalTimestamp"]
    assert out["sentAt"] == event["sentAt"]


def test_a_given_timestamp_is_kept_as_sent() -> None:
    event = {"timestamp": "2024-01-01T00:00:00+01:00", "originalTimestamp": "2023-01-01T00:00:00Z"}
    event["sentAt"] = "2023-01-01T00:00:01Z"
    assert normalize_timestamps(event, received_at=RECEIVED)["timestamp"] == "2024-01-01T00:00:00+01:00"


def test_only_original_timestamp_is_used_as_is() -> None:
    out = normalize_timestamps({"originalTimestamp": "2024-02-29T23:00:00+01:00"}, received_at=RECEIVED)
    assert out["timestamp"] == "2024-02-29T23:00:00+01:00"


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"timestamp": None},
        {"sentAt": "2024-03-01T11:00:00Z"},
        {"originalTimestamp": "garbage", "sentAt": "2024-03-01T11:00:00Z"},
        {"originalTimestamp": 1709294400},
        {"originalTimestamp": "0001-01-01T00:00:00Z", "sentAt": "9999-12-31T23:59:59Z"},  # overflow
    ],
)
def test_timestamp_falls_back_to_received_at(event: dict[str, Any]) -> None:
    out = normalize_timestamps(event, received_at=RECEIVED)
    assert out["timestamp"] == out["receivedAt"] == "2024-03-01T12:00:03.000Z"


def test_received_at_overrides_the_client_and_is_utc_with_millis() -> None:
    event = {"receivedAt": "1999-01-01T00:00:00Z", "timestamp": "2024-03-01T11:00:00Z"}
    plus_two = timezone(timedelta(hours=2))
    out = normalize_timestamps(event, received_at=datetime(2024, 3, 1, 14, 0, 3, 123456, tzinfo=plus_two))
    assert out["receivedAt"] == "2024-03-01T12:00:03.123Z"
    naive = normalize_timestamps({}, received_at=datetime(2024, 3, 1, 12, 0, 3))
    assert naive["receivedAt"] == "2024-03-01T12:00:03.000Z"


def test_normalize_timestamps_does_not_mutate_and_stays_valid() -> None:
    event = load_fixture("track.json")
    del event["timestamp"]
    before = copy.deepcopy(event)
    out = normalize_timestamps(event, received_at=RECEIVED)
    assert event == before
    assert out is not event
    assert validate_event(out) == []


# --- merge_batch_defaults --------------------------------------------------------------------


def test_batch_context_merges_one_level_under_the_item() -> None:
    batch_context = {"library": {"name": "analytics-python", "version": "2.0"}, "ip": "1.2.3.4"}
    item = {"type": "track", "context": {"library": {"version": "2.1"}, "locale": "en-US"}}
    out = merge_batch_defaults(item, context=batch_context, integrations=None)
    assert out["context"] == {
        "library": {"name": "analytics-python", "version": "2.1"},
        "ip": "1.2.3.4",
        "locale": "en-US",
    }


def test_item_context_values_win_even_across_kinds() -> None:
    out = merge_batch_defaults({"context": {"page": "home"}}, context={"page": {"url": "/a"}}, integrations=None)
    assert out["context"] == {"page": "home"}
    out = merge_batch_defaults({"context": {"page": {"url": "/b"}}}, context={"page": "x"}, integrations=None)
    assert out["context"] == {"page": {"url": "/b"}}


def test_batch_integrations_merge_at_the_top_level_only() -> None:
    batch_integrations = {"All": False, "Mixpanel": True, "Amplitude": {"session_id": 1}}
    item = {"integrations": {"Mixpanel": False, "Amplitude": {"groups": ["a"]}}}
    out = merge_batch_defaults(item, context=None, integrations=batch_integrations)
    assert out["integrations"] == {"All": False, "Mixpanel": False, "Amplitude": {"groups": ["a"]}}


def test_items_without_own_objects_get_independent_copies() -> None:
    batch_context = {"library": {"name": "analytics-python"}}
    batch_integrations = {"All": True}
    first = merge_batch_defaults({"type": "track"}, context=batch_context, integrations=batch_integrations)
    second = merge_batch_defaults({"context": None}, context=batch_context, integrations=batch_integrations)
    assert first["context"] == second["context"] == {"library": {"name": "analytics-python"}}
    assert first["integrations"] == {"All": True}
    first["context"]["library"]["version"] = "mutated"
    first["integrations"]["All"] = False
    assert second["context"] == {"library": {"name": "analytics-python"}}
    assert batch_context == {"library": {"name": "analytics-python"}}
    assert batch_integrations == {"All": True}


def test_merge_does_not_mutate_the_item() -> None:
    item = {"context": {"library": {"version": "2.1"}}, "integrations": {"A": True}}
    before = copy.deepcopy(item)
    out = merge_batch_defaults(item, context={"library": {"name": "n"}}, integrations={"B": True})
    assert item == before
    assert out["context"]["library"] == {"name": "n", "version": "2.1"}
    assert out["integrations"] == {"B": True, "A": True}


def test_merge_without_defaults_or_with_garbage() -> None:
    item = {"type": "track", "context": "web", "integrations": [1]}
    assert merge_batch_defaults(item, context=None, integrations=None) == item
    assert merge_batch_defaults(item, context={"ip": "1"}, integrations={"A": 1}) == item  # garbage kept
    plain = {"type": "track"}
    assert merge_batch_defaults(plain, context=["not", "an", "object"], integrations="All") == plain
    assert merge_batch_defaults(plain, context={}, integrations={}) == plain  # no empty objects added


# --- ensure_message_id -----------------------------------------------------------------------


def test_message_id_assigned_when_absent() -> None:
    counter = itertools.count(1)
    new_id = lambda: f"id-{next(counter)}"  # noqa: E731
    event: dict[str, Any] = {"type": "track"}
    out = ensure_message_id(event, new_id)
    assert out["messageId"] == "id-1"
    assert "messageId" not in event
    assert ensure_message_id({"messageId": None}, new_id)["messageId"] == "id-2"
    assert ensure_message_id({"messageId": ""}, new_id)["messageId"] == "id-3"


def test_message_id_kept_when_present() -> None:
    def never() -> str:
        raise AssertionError("new_id must not be called")

    assert ensure_message_id({"messageId": "m-1", "type": "page"}, never) == {
        "messageId": "m-1",
        "type": "page",
    }
    assert ensure_message_id({"messageId": 7}, never) == {"messageId": 7}  # validation reports it


def test_helpers_are_total_on_garbage() -> None:
    garbage: dict[str, Any] = {
        "context": {"library": 5, "traits": [None]},
        "integrations": None,
        "timestamp": None,
        "originalTimestamp": {"nested": True},
        "sentAt": ["2024-03-01T11:00:00Z"],
        "messageId": None,
    }
    out = merge_batch_defaults(garbage, context={"library": {"name": "x"}}, integrations={"All": True})
    assert out["context"] == {"library": 5, "traits": [None]}
    assert out["integrations"] == {"All": True}
    out = normalize_timestamps(ensure_message_id(out, lambda: "m"), received_at=RECEIVED)
    assert out["timestamp"] == out["receivedAt"]
    assert out["messageId"] == "m"
