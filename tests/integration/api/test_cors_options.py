"""OPTIONS is never a 5xx, on any path, with or without credentials or an Origin; CORS_ALLOWED_ORIGINS (empty by
default: no CORS) lets the listed origins preflight and read responses, with the methods and the request headers the
API uses (Authorization, Content-Type, Idempotency-Key), and grants nothing to any other origin."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.testing import AsyncTestClient

from voice_service.app import create_app
from voice_service.settings import Settings

LISTED = "https://console.example.com"
OTHER = "https://evil.example.net"
_PARAM = re.compile(r"\{([a-z_]+)(?::(\w+))?\}")


def http_paths(app: Litestar) -> list[str]:
    """Every HTTP route's path, its parameters filled in with well-formed values."""
    values = {"int": "1", "uuid": str(uuid.uuid4()), "str": "x", "path": "x"}
    paths = {
        _PARAM.sub(lambda m: values.get(m.group(2) or "str", "x"), route.path)
        for route in app.routes
        if isinstance(route, HTTPRoute)
    }
    return sorted(paths)


@pytest.fixture(scope="module")
async def cors_client(settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    app = create_app(
        msgspec.structs.replace(settings, cors_allowed_origins=f"{LISTED}, https://ops.example.com"), bootstrap=False
    )
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as c:
        yield c


async def test_no_options_request_is_a_5xx(client: Any, cors_client: Any, tenant: Any) -> None:
    paths = http_paths(client.app)
    assert len(paths) > 30 and "/v1/agents" in paths
    preflight = {"Origin": LISTED, "Access-Control-Request-Method": "POST"}
    for c in (client, cors_client):
        for path in paths:
            for headers in ({}, tenant.headers, preflight, {**preflight, "Origin": OTHER}, {"Origin": LISTED}):
                r = await c.options(path, headers=headers)
                assert r.status_code < 500, (path, headers, r.status_code, r.text[:300])


async def test_options_without_cors_says_what_the_path_allows(client: Any) -> None:
    r = await client.options("/v1/agents")
    # (Litestar 2 lists only some of a path's methods in Allow when several handlers share it: litestar#4169,
    # fixed in Litestar 3.)
    assert r.status_code == 204 and "OPTIONS" in r.headers["allow"]
    assert "access-control-allow-origin" not in r.headers
    # No CORS by default: a browser preflight gets no grant.
    r = await client.options("/v1/agents", headers={"Origin": LISTED, "Access-Control-Request-Method": "POST"})
    assert r.status_code < 500 and "access-control-allow-origin" not in r.headers


async def test_a_listed_origin_may_preflight_and_read(cors_client: Any, tenant: Any) -> None:
    r = await cors_client.options(
        "/v1/calls",
        headers={
            "Origin": LISTED,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    assert r.status_code == 204, r.text
    assert r.headers["access-control-allow-origin"] == LISTED
    methods = {m.strip() for m in r.headers["access-control-allow-methods"].split(",")}
    assert methods >= {"GET", "POST", "PATCH", "PUT", "DELETE"}
    allowed = {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")}
    assert allowed >= {"authorization", "content-type", "idempotency-key"}
    assert "origin" in r.headers.get("vary", "").lower()

    r = await cors_client.get("/v1/agents", headers={**tenant.headers, "Origin": LISTED})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == LISTED
    # A refused request is readable too (the browser shows the problem, not a CORS error).
    r = await cors_client.get("/v1/agents", headers={"Origin": LISTED})
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == LISTED


async def test_any_other_origin_gets_no_grant(cors_client: Any, tenant: Any) -> None:
    r = await cors_client.options(
        "/v1/agents", headers={"Origin": OTHER, "Access-Control-Request-Method": "GET"}
    )
    assert r.status_code < 500 and "access-control-allow-origin" not in r.headers
    r = await cors_client.get("/v1/agents", headers={**tenant.headers, "Origin": OTHER})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    # Nor does a listed origin's look-alike.
    r = await cors_client.options(
        "/v1/agents", headers={"Origin": LISTED + ".evil.net", "Access-Control-Request-Method": "GET"}
    )
    assert "access-control-allow-origin" not in r.headers


def test_cors_allowed_origins_is_parsed_and_checked() -> None:
    from voice_service.settings import cors_origins, load_settings

    assert cors_origins(load_settings(env={})) == []
    assert cors_origins(load_settings(env={"CORS_ALLOWED_ORIGINS": " https://a.example.com/ , http://localhost:5173"})) == [
        "https://a.example.com",
        "http://localhost:5173",
    ]
    for bad in ("*", "a.example.com", "https://a.example.com/path", "ftp://a.example.com"):
        with pytest.raises(ValueError, match="CORS_ALLOWED_ORIGINS"):
            cors_origins(load_settings(env={"CORS_ALLOWED_ORIGINS": bad}))
