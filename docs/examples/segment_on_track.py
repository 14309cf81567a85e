import json

from sluice.fn import fetch


async def onTrack(event, settings):
    await fetch(
        "https://example-service.com/api",
        {
            "method": "POST",
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps(
                {
                    "event_name": event["event"],
                    "event_properties": event["properties"],
                    "timestamp": event["timestamp"],
                }
            ),
        },
    )

    return event
