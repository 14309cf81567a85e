"""What ``sluice fn new`` writes."""

from __future__ import annotations

PYTHON_FUNCTION = '''"""{name}: a sluice destination insert function.

Each handler receives one Segment event and this instance's settings, and returns the event
(changed or not) to send it on, or None to filter it out. Raise one of the error classes to
give the event another outcome:

    DropEvent            do not forward this event (outcome: dropped)
    ValidationError      the event is invalid (outcome: message_rejected)
    InvalidEventPayload  the event is malformed (outcome: message_rejected)
    EventNotSupported    this function does not handle it (outcome: unsupported_event_type)
    RetryError           a temporary failure: retried with backoff (outcome: retry)

Removing a handler blocks that event type ("Unsupported Event Type"): keep `return event`
for every type the destination should receive. Test with:

    sluice fn test {name} --event event.json
"""

from sluice.fn import DropEvent, EventNotSupported, RetryError, ValidationError, cache, fetch, log  # noqa: F401


async def on_track(event, settings):
    # Enrich, transform or filter a track event here, e.g.:
    # event["properties"]["source"] = "sluice"
    return event


async def on_identify(event, settings):
    return event


async def on_page(event, settings):
    return event


async def on_screen(event, settings):
    return event


async def on_group(event, settings):
    return event


async def on_alias(event, settings):
    return event


async def on_delete(event, settings):
    return event


# Optional: receive events in batches (up to batchMaxCount) when traffic allows. Return a list
# of the same length (paired by position, None = filtered) or a shorter list (paired by
# messageId). The single-event handlers above stay required for low traffic.
# async def on_batch(events, settings):
#     return events
'''

JAVASCRIPT_FUNCTION = """// {name}: a sluice destination insert function, written as for Segment's JavaScript runtime.
//
// Each handler receives one Segment event and this instance's settings, and returns the event
// (changed or not) to send it on, or nothing to filter it out. Throw one of the error classes
// to give the event another outcome:
//
//   DropEvent            do not forward this event (outcome: dropped)
//   ValidationError      the event is invalid (outcome: message_rejected)
//   InvalidEventPayload  the event is malformed (outcome: message_rejected)
//   EventNotSupported    this function does not handle it (outcome: unsupported_event_type)
//   RetryError           a temporary failure: retried with backoff (outcome: retry)
//
// fetch, cache, console, lodash (_), moment, crypto … are globals, as in Segment; require and
// import are not available. Removing a handler blocks that event type. Test with:
//
//   sluice fn test {name} --event event.json

async function onTrack(event, settings) {{
  // Enrich, transform or filter a track event here, e.g.:
  // event.properties.source = 'sluice'
  return event
}}

async function onIdentify(event, settings) {{
  return event
}}

async function onPage(event, settings) {{
  return event
}}

async function onScreen(event, settings) {{
  return event
}}

async function onGroup(event, settings) {{
  return event
}}

async function onAlias(event, settings) {{
  return event
}}

async function onDelete(event, settings) {{
  return event
}}

// Optional: receive events in batches (up to batchMaxCount) when traffic allows. Return an
// array of the same length (paired by position, null = filtered) or a shorter one (paired by
// messageId). The single-event handlers above stay required for low traffic.
// async function onBatch(events, settings) {{
//   return events
// }}
"""

FUNCTION_TOML = """# The function's definition: the same fields as the API's function object.
displayName = "{name}"
description = ""
language = "{language}"
resourceType = "INSERT_DESTINATION"
# Largest batch on_batch receives (1..400).
batchMaxCount = 20

# One [[settings]] table per setting. type: STRING, BOOLEAN, ARRAY or TEXT_MAP.
# sensitive = true keeps the value out of logs, traces and error messages.
[[settings]]
name = "apiKey"
label = "API Key"
description = "Key for the service this function calls (example setting)"
type = "STRING"
required = false
sensitive = true
"""
