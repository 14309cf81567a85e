"""on_batch pairing rules (DESIGN §3.4): the pure pairing and the real runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sluice.fn import RetryError, ValidationError
from sluice.functions.batching import BatchShapeError, pair_batch
from sluice.testing import arun_function


def ev(mid: str, type_: str = "track", **extra: Any) -> dict[str, Any]:
    return {"type": type_, "userId": "u", "messageId": mid, "event": "E", "properties": {}, **extra}


INPUTS = [ev("a"), ev("b"), ev("c")]


def test_same_length_pairs_by_position_with_none_and_error_instances() -> None:
    slots = pair_batch(INPUTS, [ev("a", x=1), None, ValidationError("no email")])
    assert slots[0] == ("ok", ev("a", x=1), None)
    assert slots[1] == ("filtered", None, None)
    assert slots[2] == ("message_rejected", None, {"type": "ValidationError", "message": "no email"})


def test_same_length_pairs_by_position_even_if_message_ids_are_swapped() -> None:
    slots = pair_batch(INPUTS, [ev("c"), ev("b"), ev("a")])
    assert [s[1]["messageId"] for s in slots] == ["c", "b", "a"]


def test_shorter_list_pairs_by_message_id_and_filters_the_rest() -> None:
    slots = pair_batch(INPUTS, [ev("c", kept=True)])
    assert [s[0] for s in slots] == ["filtered", "filtered", "ok"]
    assert slots[2][1]["kept"] is True


@pytest.mark.parametrize(
    ("returned", "fragment"),
    [
        ([ev("zzz")], "unknown messageId 'zzz'"),
        ([{"type": "track"}], "has no messageId"),
        ([ev("a"), ev("a")], "messageId 'a' twice"),
        ([RetryError("x")], "may only hold events"),
        ([ev("a"), ev("b"), ev("c"), ev("d")], "returned 4 events for 3 inputs"),
        ({"not": "a list"}, "must return a list"),
    ],
)
def test_unpairable_results_fail_the_whole_batch(returned: object, fragment: str) -> None:
    with pytest.raises(BatchShapeError, match=fragment):
        pair_batch(INPUTS, returned)


SPLIT_BY_TYPE = """
import asyncio

async def on_batch(events, settings):
    original_order = [e["messageId"] for e in events]
    by_type = {}
    for event in events:
        by_type.setdefault(event["type"], []).append(event)

    async def handle(kind, group):
        if kind == "track":
            return await on_track_batch(group, settings)
        if kind == "identify":
            return await on_identify_batch(group, settings)
        return group

    try:
        results = await asyncio.gather(*(handle(k, g) for k, g in by_type.items()))
    except Exception as error:
        raise RetryError(str(error))
    by_id = {e["messageId"]: e for batch in results for e in batch}
    return [by_id.get(mid) for mid in original_order]

async def on_track_batch(events, settings):
    for e in events:
        e["properties"]["batched"] = "track"
    return events

async def on_identify_batch(events, settings):
    return [e for e in events if e["traits"].get("email")]

async def on_track(event, settings):
    return event

async def on_identify(event, settings):
    return event
"""


async def test_seed_split_by_type_example() -> None:
    batch = [
        ev("1", "identify", traits={"email": "jake@example.com"}),
        ev("2"),
        ev("3", "identify", traits={}),
        ev("4"),
    ]
    run = await arun_function(SPLIT_BY_TYPE, batch=batch)
    assert run.status == "ok"
    assert run.results is not None
    assert [r["status"] for r in run.results] == ["ok", "ok", "filtered", "ok"]
    assert run.results[1]["event"]["properties"]["batched"] == "track"
    assert run.results[0]["event"]["messageId"] == "1"


# The seed's "Handling filtering in a batch" example, as ported in the guide.
FILTERING = (Path(__file__).resolve().parents[2] / "docs" / "examples" / "batch_filter.py").read_text()


async def test_seed_filtering_example_pairs_shorter_list_by_message_id() -> None:
    batch = [ev("1", properties={"name": "keep"}), ev("2", properties={"name": "drop"}), ev("3", properties={})]
    run = await arun_function(FILTERING, batch=batch)
    assert run.results is not None
    assert [r["status"] for r in run.results] == ["ok", "filtered", "ok"]
    assert run.results[2]["event"]["properties"]["message"] == "Enriched from insert function"


async def test_error_instances_give_single_events_their_own_outcome() -> None:
    code = (
        "def on_batch(events, settings):\n"
        "    return [e if e['properties'].get('email') else ValidationError('no email') for e in events]\n"
        "def on_track(e, s):\n    return e\n"
    )
    run = await arun_function(code, batch=[ev("1", properties={"email": "x@y"}), ev("2")])
    assert run.results is not None
    assert [r["status"] for r in run.results] == ["ok", "message_rejected"]
    assert run.results[1]["error"] == {"type": "ValidationError", "message": "no email"}


@pytest.mark.parametrize(
    ("body", "status", "error_type"),
    [
        ("raise RetryError('upstream 503')", "retry", "RetryError"),
        ("raise DropEvent('all of them')", "dropped", "DropEvent"),
        ("return {'x': 1}", "bad_request", "BatchShapeError"),
        ("return [{'messageId': 'nope'}]", "bad_request", "BatchShapeError"),
        ("raise KeyError('k')", "bad_request", "KeyError"),
    ],
)
async def test_whole_batch_outcomes(body: str, status: str, error_type: str) -> None:
    code = f"def on_batch(events, settings):\n    {body}\ndef on_track(e, s):\n    return e\n"
    run = await arun_function(code, batch=[ev("1"), ev("2")])
    assert run.status == status
    assert run.error is not None and run.error["type"] == error_type
    assert run.results is not None
    assert [r["status"] for r in run.results] == [status, status]


async def test_batch_without_on_batch_runs_single_handlers() -> None:
    code = "def on_track(e, s):\n    print('single', e['messageId'])\n    return e\n"
    run = await arun_function(code, batch=[ev("1"), ev("2", "page")])
    assert run.results is not None
    assert [r["status"] for r in run.results] == ["ok", "unsupported_event_type"]
    assert run.logs == ["single 1"]


async def test_error_instance_messages_are_redacted() -> None:
    code = (
        "def on_batch(events, settings):\n"
        "    return [ValidationError('bad key ' + settings['apiKey']) for e in events]\n"
        "def on_track(e, s):\n    return e\n"
    )
    schema = [{"name": "apiKey", "label": "API Key", "sensitive": True}]
    run = await arun_function(code, batch=[ev("1")], schema=schema, settings={"apiKey": "topsecret99"})
    assert run.results is not None
    assert run.results[0]["error"] == {"type": "ValidationError", "message": "bad key [REDACTED]"}
