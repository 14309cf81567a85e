"""Batch formation for ``on_batch`` functions (DESIGN §3.4): full batches at ``batchMaxCount``, a
partial one after the max wait, single-event handlers when traffic is under about 1 event/s."""

from __future__ import annotations

from collections import Counter

from tests.conftest import HttpServer
from tests.pipeline.conftest import Harness, counts, track, until
from tests.pipeline.test_delivery import received

BATCHED = """
def on_batch(events, settings):
    for event in events:
        event['properties']['via'] = 'batch'
        event['properties']['size'] = len(events)
    return events

def on_track(event, settings):
    event['properties']['via'] = 'single'
    return event
"""


def sizes(server: HttpServer) -> Counter[tuple[str, int]]:
    return Counter((e["properties"]["via"], e["properties"].get("size", 1)) for e in received(server))


async def test_a_burst_is_cut_into_full_batches_and_a_partial_one_after_the_max_wait(
    harness: Harness, http_server: HttpServer
) -> None:
    http_server.route("/hook", 200, {})
    dst = harness.destination(f"{http_server.url}/hook", batchSize=100)
    harness.instance(harness.function(BATCHED, batchMaxCount=10), dst)
    await harness.apply()
    await harness.send(*(track(n) for n in range(25)))
    await until(lambda: len(received(http_server)) == 25, what="25 events")
    # two full batches of 10 and the rest (5) flushed by the max wait (0.5 s here)
    assert sizes(http_server) == Counter({("batch", 10): 20, ("batch", 5): 5})


async def test_a_trickle_uses_the_single_event_handler(harness: Harness, http_server: HttpServer) -> None:
    http_server.route("/hook", 200, {})
    dst = harness.destination(f"{http_server.url}/hook")
    harness.instance(harness.function(BATCHED, batchMaxCount=10), dst)
    await harness.apply()
    for n in range(3):  # one at a time: well under 1 event/s over the rate window (10 s)
        await harness.send(track(n))
        await until(lambda n=n: len(received(http_server)) == n + 1)  # type: ignore[misc]
    assert sizes(http_server) == Counter({("single", 1): 3})


async def test_an_error_instance_in_the_returned_list_gives_that_event_its_own_outcome(
    harness: Harness, http_server: HttpServer
) -> None:
    code = (
        "from sluice.fn import ValidationError, RetryError\n"
        "def on_batch(events, settings):\n"
        "    out = []\n"
        "    for event in events:\n"
        "        n = event['properties']['n']\n"
        "        out.append(ValidationError('no email') if n % 5 == 0 else None if n % 5 == 1 else event)\n"
        "    return out\n"
        "def on_track(event, settings):\n"
        "    return event\n"
    )
    http_server.route("/hook", 200, {})
    dst = harness.destination(f"{http_server.url}/hook", batchSize=100)
    harness.instance(harness.function(code, batchMaxCount=10), dst)
    await harness.apply()
    await harness.send(*(track(n) for n in range(20)))

    view = await until(lambda: harness.counted(dst, 20))
    got = counts(view)
    assert got == {
        ("message_rejected", "ValidationError"): 4,
        ("filtered", "insert_function"): 4,
        ("delivered", ""): 12,
    }
    assert sorted(e["properties"]["n"] for e in received(http_server)) == [n for n in range(20) if n % 5 not in (0, 1)]


async def test_an_exception_from_on_batch_applies_to_every_event_of_the_batch(
    harness: Harness, http_server: HttpServer
) -> None:
    code = (
        "def on_batch(events, settings):\n"
        "    raise ValueError('cannot batch')\n"
        "def on_track(event, settings):\n"
        "    return event\n"
    )
    http_server.route("/hook", 200, {})
    dst = harness.destination(f"{http_server.url}/hook")
    harness.instance(harness.function(code, batchMaxCount=10), dst)
    await harness.apply()
    await harness.send(*(track(n) for n in range(10)))

    view = await until(lambda: harness.counted(dst, 10))
    assert counts(view) == {("bad_request", "ValueError"): 10}
    assert len(await harness.log.dead_letters(dst)) == 10
