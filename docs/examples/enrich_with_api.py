"""Add the CRM account tier to track and identify events.

Settings (function.toml): apiUrl (STRING, required), apiKey (STRING, required, secret).
"""

from sluice.fn import FetchError, RetryError, fetch, log


async def lookup_tier(user_id, settings):
    try:
        resp = await fetch(
            f"{settings['apiUrl']}/users/{user_id}",
            headers={"Authorization": f"Bearer {settings['apiKey']}"},
            timeout=2,
        )
    except FetchError as err:  # no response at all (refused, DNS, timeout): try again later
        raise RetryError(str(err)) from err
    if resp.status == 429 or resp.status >= 500:
        raise RetryError(f"CRM answered HTTP {resp.status}")
    if resp.status == 404:
        log.info("no CRM record for", user_id)
        return None
    if not resp.ok:  # e.g. 401: retrying will not help, the event ends as bad_request
        raise RuntimeError(f"CRM answered HTTP {resp.status}")
    return (await resp.json()).get("tier")


async def on_track(event, settings):
    if not event.get("userId"):
        return event  # anonymous traffic passes through unchanged
    tier = await lookup_tier(event["userId"], settings)
    if tier:
        event.setdefault("properties", {})["tier"] = tier
    return event


async def on_identify(event, settings):
    tier = await lookup_tier(event["userId"], settings) if event.get("userId") else None
    if tier:
        event.setdefault("traits", {})["tier"] = tier
    return event
