"""Errors as a person reads them: every message is a sentence that names the field; an unknown query parameter is
a 400 naming it on every operation (not silently unfiltered results); the events feed pages with `cursor` like
every other list (`after` still works); the free-form JSON and body size limits hold and say so."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest


def _problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["title"] != "Error"
    return body


async def test_body_errors_are_sentences_naming_the_field(client: Any, tenant: Any) -> None:
    h = {**tenant.headers, "content-type": "application/json"}
    empty = _problem(await client.post("/v1/agents", content=b"", headers=h), 400)
    assert "empty" in empty["detail"] and "'data'" not in empty["detail"]
    truncated = _problem(await client.post("/v1/agents", content=b'{"name": ', headers=h), 400)
    assert truncated["title"] == "Invalid request"
    assert "not valid JSON" in truncated["detail"] and "truncated" not in truncated["detail"]
    malformed = _problem(await client.post("/v1/agents", content=b"{name: 1}", headers=h), 400)
    assert "not valid JSON" in malformed["detail"]

    phone = _problem(await client.post("/v1/numbers", headers=tenant.headers,
                                       json={"phone_number": "12345", "provider": "twilio"}), 400)
    assert phone["field"] == "phone_number"
    assert "E.164" in phone["detail"] and "+15551234567" in phone["detail"] and "regex" not in phone["detail"]
    assert "\\d" not in phone["detail"]

    missing = _problem(await client.post("/v1/agents", json={}, headers=tenant.headers), 400)
    assert missing["detail"] == "`name` is required." and missing["field"] == "name"
    typo = _problem(await client.post("/v1/agents", json={"nme": "Ava"}, headers=tenant.headers), 400)
    assert "`nme` is not a field" in typo["detail"] and "did you mean `name`" in typo["detail"]
    nested = _problem(await client.post("/v1/agents", headers=tenant.headers,
                                        json={"name": "Ava", "config": {"temperature": "hot"}}), 400)
    assert nested["field"] == "config.temperature" and "must be a number" in nested["detail"]
    bound = _problem(await client.post("/v1/agents", headers=tenant.headers,
                                       json={"name": "Ava", "config": {"temperature": 3}}), 400)
    assert "`config.temperature` must be at most 2" in bound["detail"]
    gender = _problem(await client.post("/v1/agents", headers=tenant.headers,
                                        json={"name": "Ava", "gender": "robot"}), 400)
    assert "female" in gender["detail"] and "male" in gender["detail"] and "neutral" in gender["detail"]
    uuid_field = _problem(await client.post("/v1/calls", headers=tenant.headers,
                                            json={"agent_id": 1, "from_number_id": "nope"}), 400)
    assert uuid_field["field"] == "from_number_id" and "must be a UUID" in uuid_field["detail"]
    window = _problem(await client.post("/v1/batches", headers=tenant.headers, json={
        "agent_id": 1, "entries": [{"phone": "+14155550100"}], "calling_window": {"start": "9am", "end": "17:00"}}),
        400)
    assert window["field"] == "calling_window.start" and "HH:MM" in window["detail"]
    when = _problem(await client.post("/v1/batches", headers=tenant.headers, json={
        "agent_id": 1, "entries": [{"phone": "+14155550100"}], "start_at": "2025-01-01T09:00:00"}), 400)
    assert "time zone" in when["detail"] and when["field"] == "start_at"


async def test_query_errors_list_the_allowed_values(client: Any, tenant: Any) -> None:
    bad = _problem(await client.get("/v1/calls", params={"status": "done"}, headers=tenant.headers), 400)
    assert bad["field"] == "status"
    for value in ("pending", "ringing", "ongoing", "ended", "declined", "cancelled", "failed"):
        assert value in bad["detail"]
    limit = _problem(await client.get("/v1/calls", params={"limit": "lots"}, headers=tenant.headers), 400)
    assert limit["detail"] == "`limit` must be an integer, not a string."
    path = _problem(await client.get("/v1/numbers/abc", headers=tenant.headers), 404)
    assert "/v1/numbers/abc" in path["detail"] and path["detail"] != "Not Found"


async def test_an_unknown_query_parameter_is_refused_naming_it(client: Any, tenant: Any) -> None:
    r = _problem(await client.get("/v1/calls", params={"staus": "ended"}, headers=tenant.headers), 400)
    assert r["field"] == "staus" and "did you mean `status`" in r["detail"]
    assert r["errors"][0]["source"] == "query"
    # Credentials first: without them it is a 401, whatever the query.
    _problem(await client.get("/v1/calls", params={"staus": "ended"}), 401)


def _concrete(path: str) -> str:
    path = path.replace("{agent_id}", "1")
    return re.sub(r"\{[a-z_]+\}", str(uuid.uuid4()), path)


async def test_every_operation_refuses_an_unknown_query_parameter(client: Any, tenant: Any) -> None:
    spec = (await client.get("/schema/openapi.json")).json()
    checked = []
    for path, item in spec["paths"].items():
        if path.startswith("/v1/telephony/"):
            continue  # carrier webhooks carry the carrier's own parameters
        for method in ("get", "post", "put", "patch", "delete"):
            if method not in item:
                continue
            r = await client.request(method.upper(), _concrete(path), params={"zz_unknown": "1"},
                                     headers=tenant.headers)
            body = _problem(r, 400)
            assert body["field"] == "zz_unknown", (method, path, body)
            checked.append(f"{method} {path}")
    assert len(checked) >= 60


async def test_events_page_with_cursor_and_after_still_works(client: Any, tenant: Any, admin_conn: Any) -> None:

    for n in range(3):
        await admin_conn.execute(
            "INSERT INTO domain_events (tenant_id, event_type, aggregate_type, aggregate_id, payload) "
            "VALUES ($1, 'voice_call.analyzed', 'voice_call', NULL, $2::jsonb)", tenant.id, f'{{"n": {n}}}')
    first = (await client.get("/v1/events", params={"limit": 1}, headers=tenant.headers)).json()
    by_cursor = (await client.get("/v1/events", params={"cursor": first["next_cursor"]},
                                  headers=tenant.headers)).json()
    by_after = (await client.get("/v1/events", params={"after": first["next_cursor"]},
                                 headers=tenant.headers)).json()
    assert [e["data"]["n"] for e in by_cursor["items"]] == [1, 2] and by_after == by_cursor
    both = _problem(await client.get("/v1/events", headers=tenant.headers,
                                     params={"cursor": first["next_cursor"], "after": "1.1"}), 400)
    assert "`cursor`" in both["detail"]
    bad = _problem(await client.get("/v1/events", params={"cursor": "yesterday"}, headers=tenant.headers), 400)
    assert bad["field"] == "cursor"
    types = _problem(await client.get("/v1/events", params={"types": "voice_call.endd"}, headers=tenant.headers),
                     400)
    assert types["field"] == "types" and "voice_call.ended" in types["detail"]
    hook = _problem(await client.post("/v1/webhook-endpoints", headers=tenant.headers, json={
        "url": "https://hooks.example.com/x", "event_types": ["voice_call.ended", "call.over"]}), 422)
    assert hook["field"] == "event_types[1]"


@pytest.mark.parametrize("field", ["metadata"])
async def test_the_documented_limits_hold(client: Any, tenant: Any, field: str) -> None:
    big = {"name": "Ava", field: {"blob": "x" * (17 * 1024)}}
    capped = _problem(await client.post("/v1/agents", json=big, headers=tenant.headers), 422)
    assert capped["field"] == field and "16 KB" in capped["detail"]
    huge = {"name": "Ava", "metadata": {"blob": "x" * (1024 * 1024 + 10)}}
    too_large = _problem(await client.post("/v1/agents", json=huge, headers=tenant.headers), 413)
    assert "1 MiB" in too_large["detail"]
    spec = (await client.get("/schema/openapi.json")).json()
    assert "16 KB" in spec["info"]["description"] and "1 MiB" in spec["info"]["description"]
    assert "1 MiB" in spec["paths"]["/v1/agents"]["post"]["responses"]["413"]["description"]
    assert "16 MiB" in spec["paths"]["/v1/batches"]["post"]["responses"]["413"]["description"]
