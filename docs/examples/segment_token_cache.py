import time

from sluice.fn import fetch

TOKEN_EXPIRE_MS = 60 * 60 * 1000  # 1 hour
token = None


async def get_access_token():
    global token
    now = time.time() * 1000
    if not token or now - token["ts"] > TOKEN_EXPIRE_MS:
        resp = await (await fetch("https://example.com/tokens", {"method": "POST"})).json()
        token = {"ts": now, "value": resp["token"]}
    return token["value"]


async def onTrack(event, settings):
    access_token = await get_access_token()
    await fetch(
        "https://example.com/track",
        {"method": "POST", "headers": {"Authorization": f"Bearer {access_token}"}, "body": event["event"]},
    )
    return event
