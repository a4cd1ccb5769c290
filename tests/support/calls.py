"""Helpers for the tests of single calls through the API: numbers, an agent and a number, problem+json checks."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

# The Vonage signature secret the calls domain's simulated stack runs with (tests/integration/calls/conftest.py).
VONAGE_SECRET = "vonage-signature-secret-for-the-tests-0123456789"


def phone() -> str:
    return f"+4420794{uuid.uuid4().int % 100000:05d}"


def problem(r: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    if field is not None:
        assert field in [e.get("field") for e in body.get("errors", [])], body
    return body


async def agent_and_number(
    api: httpx.AsyncClient, tenant: Any, *, provider: str = "twilio", status: str = "active"
) -> tuple[int, str]:
    agent = (await api.post("/v1/agents", json={"name": "Ava"}, headers=tenant.headers)).json()
    r = await api.post(
        "/v1/numbers",
        json={"phone_number": phone(), "provider": provider, "status": status},
        headers=tenant.headers,
    )
    assert r.status_code == 201, r.text
    return agent["id"], r.json()["id"]
