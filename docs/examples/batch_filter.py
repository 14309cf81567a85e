"""Segment's "Handling filtering in a batch" example, ported: return a shorter list.

A shorter list is paired to the inputs by messageId; inputs not returned are filtered.
"""

from sluice.fn import RetryError


async def on_batch(events, settings):
    response = []
    try:
        for event in events:
            # some business logic to filter events: here, every event named "drop"
            if event["properties"].get("name") == "drop":
                continue
            # some enrichment if needed
            event["properties"]["message"] = "Enriched from insert function"
            response.append(event)
    except Exception as error:
        print(error)
        raise RetryError("Failed function") from error
    return response


async def on_track(event, settings):
    if event["properties"].get("name") == "drop":
        return None
    event["properties"]["message"] = "Enriched from insert function"
    return event
