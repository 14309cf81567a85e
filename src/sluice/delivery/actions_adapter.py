"""The ``actions-webhook`` destination: subscriptions with FQL triggers and mappings (Segment's
Actions destinations, DESIGN §2).

The pipeline asks :meth:`ActionsWebhookAdapter.triggered` **before** the insert function, on the
incoming event, which subscriptions fire (none → ``filtered`` by ``trigger``); after the function
it hands the returned event and those subscriptions to :meth:`send_mapped`, which maps the event once
per subscription and sends each subscription's requests (one object per request, or JSON arrays
of up to ``batchSize`` with ``batch``). Every (event, subscription) pair gets its own result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import orjson

from sluice.actions.config import Subscription, compile_subscriptions, secret_header_values, validate_actions_config
from sluice.delivery.adapters import _NOT_SECRET_HEADERS, _HttpAdapter
from sluice.delivery.outcomes import DeliveryResult

__all__ = ["ActionsWebhookAdapter", "SubscriptionResult"]

#: One subscription's result for one event: (subscription name, result).
SubscriptionResult = tuple[str, DeliveryResult]


class ActionsWebhookAdapter(_HttpAdapter):
    type = "actions-webhook"

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        client: httpx.AsyncClient,
        secrets: Sequence[str] = (),
        trace_delivered: bool = False,
    ) -> None:
        self.config = validate_actions_config(config)
        self.subscriptions: list[Subscription] = [s for s in compile_subscriptions(self.config) if s.enabled]
        header_names = {name.lower() for s in self.subscriptions for name in s.headers}
        super().__init__(
            client=client,
            timeout_ms=self.config["timeoutMs"],
            secrets=[*secrets, *secret_header_values(self.config)],
            redact_header_names=frozenset(header_names - _NOT_SECRET_HEADERS),
            trace_delivered=trace_delivered,
        )

    def triggered(self, event: Mapping[str, Any]) -> tuple[int, ...]:
        """The enabled subscriptions (their positions) whose trigger matches ``event``."""
        return tuple(i for i, s in enumerate(self.subscriptions) if s.trigger(event))

    async def send_mapped(
        self, items: Sequence[tuple[Mapping[str, Any], Sequence[int]]]
    ) -> list[list[SubscriptionResult]]:
        """For each (event, fired subscriptions): map and send; results per item, per subscription."""
        out: list[list[SubscriptionResult]] = [[] for _ in items]
        calls: list[tuple[Subscription, list[int], bytes]] = []
        for position, subscription in enumerate(self.subscriptions):
            bodies: list[tuple[int, bytes]] = []
            for index, (event, fired) in enumerate(items):
                if position in fired:
                    bodies.append((index, self._mapped(subscription, event)))
            if not bodies:
                continue
            if subscription.batch:
                step = subscription.batch_size
                for start in range(0, len(bodies), step):
                    chunk = bodies[start : start + step]
                    body = b"[" + b",".join(b for _, b in chunk) + b"]"
                    calls.append((subscription, [i for i, _ in chunk], body))
            else:
                calls.extend((subscription, [index], body) for index, body in bodies)
        results = await asyncio.gather(*(self._post_call(subscription, body) for subscription, _, body in calls))
        for (subscription, indexes, _), result in zip(calls, results, strict=True):
            for index in indexes:
                out[index].append((subscription.name, result))
        return out

    @staticmethod
    def _mapped(subscription: Subscription, event: Mapping[str, Any]) -> bytes:
        try:
            return orjson.dumps(subscription.mapper(event))
        except TypeError:  # not JSON (cannot happen for JSON input, kept as a guard)
            return b"null"

    async def _post_call(self, subscription: Subscription, body: bytes) -> DeliveryResult:
        headers = dict(subscription.headers)
        if not any(name.lower() == "content-type" for name in headers):
            headers = {"Content-Type": "application/json", **headers}
        return await self._post(subscription.method, subscription.url, headers, body)
