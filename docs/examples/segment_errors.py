import json

from sluice.fn import (
    DropEvent,
    EventNotSupported,
    FetchError,
    InvalidEventPayload,
    RetryError,
    ValidationError,
    fetch,
)


async def onGroup(event, settings):
    if not event["traits"].get("company"):
        raise InvalidEventPayload("Company name is required")
    return event


async def onPage(event, settings):
    if not event["properties"].get("pageName"):
        raise ValidationError("Page name is required")
    return event


async def onAlias(event, settings):
    raise EventNotSupported("Alias event is not supported")


async def onTrack(event, settings):
    try:
        res = await fetch(
            "http://example-service.com/api",
            {
                "method": "POST",
                "headers": {"Content-Type": "application/json"},
                "body": json.dumps({"event": event}),
            },
        )
    except FetchError as err:
        # Retry on connection error
        raise RetryError(str(err)) from err
    if res.status >= 500 or res.status == 429:
        # Retry on 5xx and 429s (ratelimits)
        raise RetryError(f"HTTP Status {res.status}")
    return event


async def onIdentify(event, settings):
    if event["traits"].get("companyName"):
        # Drop Event | Do NOT forward event to destination
        raise DropEvent("Company name is required")
    return event
