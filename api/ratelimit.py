"""Rate limiting: a token bucket per client, as plain ASGI middleware (cheap per request).

A client is its API key when it sends one (``X-API-Key``, verified here, so a made-up key can
neither pass nor get a fresh bucket) or else its address. Buckets live in this process: with
several workers each enforces its own share, which is a limit per worker, not per deployment.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio.to_thread

from api.problems import MEDIA_TYPE
from api.security import KeyStore

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
KEY_HEADER = b"x-api-key"


class TokenBucket:
    """``per_minute`` requests a minute, in bursts of up to a minute's worth."""

    def __init__(self, per_minute: int, max_clients: int = 100_000) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.max_clients = max_clients
        self.buckets: dict[str, tuple[float, float]] = {}

    def take(self, client: str, now: float | None = None) -> float:
        """0 if the request may go, else the seconds until it could."""
        now = time.monotonic() if now is None else now
        tokens, last = self.buckets.get(client, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self.buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate
        if len(self.buckets) >= self.max_clients and client not in self.buckets:
            self._forget_idle(now)
        self.buckets[client] = (tokens - 1.0, now)
        return 0.0

    def _forget_idle(self, now: float) -> None:
        """Drop clients whose bucket has refilled: forgetting them changes nothing."""
        full = self.capacity / self.rate
        self.buckets = {c: v for c, v in self.buckets.items() if now - v[1] < full}


class RateLimit:
    def __init__(
        self,
        app: ASGIApp,
        keys: KeyStore,
        anonymous_per_minute: int,
        keyed_per_minute: int,
        exempt: tuple[str, ...] = ("/static/",),
    ) -> None:
        self.app = app
        self.keys = keys
        self.anonymous = TokenBucket(anonymous_per_minute)
        self.keyed = TokenBucket(keyed_per_minute)
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        key = dict(scope.get("headers") or []).get(KEY_HEADER)
        principal = None
        if key:
            principal = await anyio.to_thread.run_sync(self.keys.verify, key.decode("latin-1"))
            if principal is None:
                await _problem(
                    send, 401, "the API key is not valid (unknown, revoked or mistyped)",
                    {"WWW-Authenticate": "ApiKey"},
                )  # fmt: skip
                return
            wait = self.keyed.take(f"key:{principal.key_id}")
        else:
            client = scope.get("client") or ("unknown", 0)
            wait = self.anonymous.take(f"ip:{client[0]}")
        if wait > 0:
            await _problem(
                send, 429, "too many requests; slow down, or use an API key for a higher limit",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )  # fmt: skip
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


async def _problem(send: Send, status: int, detail: str, headers: dict[str, str]) -> None:
    from http import HTTPStatus

    body = json.dumps(
        {
            "type": "about:blank",
            "title": HTTPStatus(status).phrase,
            "status": status,
            "detail": detail,
        }
    ).encode()
    raw = [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
