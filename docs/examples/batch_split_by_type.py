"""Handle a batch per event type: one lookup request for all track events of the batch,
and a per-event outcome for identify events without an email.

Settings: lookupUrl (STRING) - answers POST {"userIds": [...]} with {"tiers": {userId: tier}}.
"""

import asyncio

from sluice.fn import FetchError, RetryError, ValidationError, fetch


async def track_batch(events, settings):
    user_ids = sorted({e["userId"] for e in events if e.get("userId")})
    resp = await fetch(settings["lookupUrl"], method="POST", json={"userIds": user_ids})
    if not resp.ok:
        raise RetryError(f"lookup answered HTTP {resp.status}")
    tiers = (await resp.json())["tiers"]
    for event in events:
        event.setdefault("properties", {})["tier"] = tiers.get(event.get("userId"))
    return events


async def identify_batch(events, settings):
    # An error *instance* at a position gives just that event its outcome (message_rejected).
    return [
        event if event.get("traits", {}).get("email") else ValidationError("identify without traits.email")
        for event in events
    ]


async def passthrough_batch(events, settings):
    return events


SUB_BATCHES = {"track": track_batch, "identify": identify_batch}


async def on_batch(events, settings):
    positions = {}  # event type -> positions of its events in the batch
    for position, event in enumerate(events):
        positions.setdefault(event["type"], []).append(position)

    def run(kind, where):
        handler = SUB_BATCHES.get(kind, passthrough_batch)
        return handler([events[p] for p in where], settings)

    try:
        outputs = await asyncio.gather(*(run(kind, where) for kind, where in positions.items()))
    except FetchError as err:
        raise RetryError(str(err)) from err  # retries the whole batch

    # Same length as the input, in the input's order: paired by position.
    results = [None] * len(events)
    for where, output in zip(positions.values(), outputs, strict=True):
        for position, result in zip(where, output, strict=True):
            results[position] = result
    return results


# Single-event handlers stay required: under about one event per second no batch is formed.
async def on_track(event, settings):
    try:
        (result,) = await track_batch([event], settings)
    except FetchError as err:
        raise RetryError(str(err)) from err
    return result


async def on_identify(event, settings):
    (result,) = await identify_batch([event], settings)
    if isinstance(result, Exception):
        raise result
    return result


def on_page(event, settings):
    return event
