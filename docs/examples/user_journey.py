"""Number each user's events and stamp their first one, kept in the instance's persistent store.

The store survives worker restarts and deploys and is shared by every worker of the instance;
users quiet for 90 days are forgotten (their key expires).
"""

from sluice.fn import RetryError, StoreError, store

FORGET_AFTER_MS = 90 * 24 * 60 * 60 * 1000


async def on_track(event, settings):
    user = event.get("userId") or event.get("anonymousId")
    if not user:
        return event
    key = f"journey:{user}"
    try:
        journey = await store.get(key, {"firstSeen": event.get("timestamp"), "events": 0})
        journey["events"] += 1
        await store.set(key, journey, ttl_ms=FORGET_AFTER_MS)  # each event renews the 90 days
    except StoreError as err:  # the store is unavailable: try the event again later
        raise RetryError(str(err)) from err
    event["properties"]["eventNumber"] = journey["events"]
    event["properties"]["firstSeen"] = journey["firstSeen"]
    return event
