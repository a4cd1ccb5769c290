"""The shared outbound HTTP client for provider calls (LLM streams, TTS streams, REST): one httpx client whose
connections are spread over several small pools.

Why: every request (and every response close) makes httpcore's pool walk all of its connections, and for each idle
one count the whole pool again (`AsyncConnectionPool._assign_requests_to_connections`, httpcore 1.0), probing each
socket on the way. With a few hundred live calls keeping LLM and TTS connections alive, one pool holds hundreds of
connections and that walk, quadratic in their number, took about half of the service's CPU at 150 calls (py-spy,
bench_conversation). `shards` small pools keep each walk short; the client stays an `httpx.AsyncClient` (tests mock
it at the transport, as before).

Which pool a request takes is decided by `affinity` (the caller's key for "whose request is this": the service
passes the current call's id), so that a call's requests always meet the connections its earlier turns left open.
Spreading requests round-robin instead made every pool's connections idle 32 times as long: past the server's
keep-alive timeout, each request paid a new connection (in bench_conversation, about 120 ms more to the first LLM
token and TTS byte; against a real provider, a TLS handshake). Requests without a key use the first pool.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import httpx

DEFAULT_SHARDS = 32


class ShardedTransport(httpx.AsyncBaseTransport):
    """`shards` httpcore pools behind one transport; each request goes to the next pool in turn."""

    def __init__(self, shards: int = DEFAULT_SHARDS, *, limits: httpx.Limits, http2: bool = False,
                 affinity: Callable[[], Any] | None = None) -> None:
        shards = max(1, shards)
        ssl_context = httpx.create_ssl_context()  # one for all the pools (building one costs milliseconds)
        per = httpx.Limits(
            max_connections=None if limits.max_connections is None else math.ceil(limits.max_connections / shards),
            max_keepalive_connections=None if limits.max_keepalive_connections is None
            else math.ceil(limits.max_keepalive_connections / shards),
            keepalive_expiry=limits.keepalive_expiry,
        )
        self.shards = [httpx.AsyncHTTPTransport(verify=ssl_context, limits=per, http2=http2) for _ in range(shards)]
        self._affinity = affinity

    def shard_for(self, key: Any) -> httpx.AsyncHTTPTransport:
        return self.shards[hash(key) % len(self.shards)] if key is not None else self.shards[0]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        key = self._affinity() if self._affinity is not None else None
        return await self.shard_for(key).handle_async_request(request)

    async def aclose(self) -> None:
        for shard in self.shards:
            await shard.aclose()


def pooled_client(*, timeout: httpx.Timeout, limits: httpx.Limits, shards: int = DEFAULT_SHARDS,
                  affinity: Callable[[], Any] | None = None) -> httpx.AsyncClient:
    """The client over `shards` pools; `affinity()` names whose request it is (None: the first pool)."""
    return httpx.AsyncClient(timeout=timeout, transport=ShardedTransport(shards, limits=limits, affinity=affinity))
