"""Inputs that used to break the service: forged cursors (500 from a database cast), an events cursor beyond
bigint, free-form JSON objects of any size, bodies up to 64 MiB, and 401s counted as 500s in /metrics. Each is now
a 4xx application/problem+json naming the field (or saying the limit), and /metrics counts what was answered."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from voice_service.schemas import FREE_JSON_MAX_BYTES


def _problem(r: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers["content-type"]
    body: dict[str, Any] = r.json()
    if field is not None:
        assert field in [e.get("field") for e in body.get("errors", [])], body
    return body


def _forge(*fields: Any) -> str:
    return base64.urlsafe_b64encode(msgspec.msgpack.encode(list(fields))).rstrip(b"=").decode()


NOW = datetime.now(UTC)
FORGED = [
    _forge(NOW, "not-a-uuid"),  # the id is cast to uuid (or bigint) by the query
    _forge(NOW, "1' OR '1'='1"),
    _forge(NOW, "9" * 30),  # beyond bigint
    _forge(NOW, "-1"),
    _forge(NOW.replace(tzinfo=None), str(uuid.uuid4())),  # a timestamp without a time zone
    _forge(NOW, str(uuid.uuid4()), "extra"),
    _forge(NOW, 12),
    _forge("2024-13-45T99:00:00Z", str(uuid.uuid4())),
    _forge(NOW, "\x00"),
    "%%%",
]

LISTS = [
    "/v1/agents",
    "/v1/numbers",
    "/v1/voices",
    "/v1/leads",
    "/v1/api-keys",
    "/v1/voice-permissions",
    "/v1/batches",
    "/v1/calls",
    "/v1/billing/ledger",
    "/v1/billing/usage-events",
    "/v1/webhook-endpoints",
]


@pytest.mark.parametrize("path", LISTS)
async def test_every_forged_cursor_is_a_400_naming_cursor(client: Any, tenant: Any, path: str) -> None:
    for cursor in FORGED:
        r = await client.get(path, params={"cursor": cursor}, headers=tenant.headers)
        _problem(r, 400, "cursor")


async def test_forged_cursors_on_nested_lists(
    client: Any, tenant: Any, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    number = await client.post(
        "/v1/numbers", json={"phone_number": "+14155550111", "provider": "simulator"}, headers=tenant.headers
    )
    agent = await client.post("/v1/agents", json={"name": "A"}, headers=tenant.headers)
    # The wallet is not what this test is about.
    monkeypatch.setattr(
        app.state, "settings", msgspec.structs.replace(app.state.settings, enforce_wallet_balance=False)
    )
    batch = await client.post(
        "/v1/batches",
        json={"agent_id": agent.json()["id"], "from_number_id": number.json()["id"],
              "entries": [{"phone": "+14155550112"}], "start_at": "2099-01-01T00:00:00Z"},
        headers=tenant.headers,
    )
    assert batch.status_code == 201, batch.text
    hook = await client.post(
        "/v1/webhook-endpoints", json={"url": "https://hooks.example.com/v"}, headers=tenant.headers
    )
    assert hook.status_code == 201, hook.text
    for path in (f"/v1/batches/{batch.json()['id']}/entries", f"/v1/webhook-endpoints/{hook.json()['id']}/deliveries"):
        for cursor in FORGED:
            _problem(await client.get(path, params={"cursor": cursor}, headers=tenant.headers), 400, "cursor")


@pytest.mark.parametrize(
    "after",
    [
        "1.99999999999999999999999999999",
        "99999999999999999999999.1",
        "18446744073709551616.1",  # 2^64: beyond xid8
        "１.２",  # full-width digits
        "².1",
        "1.",
        ".1",
        "-1.2",
        "1.2.3",
        "1e3.1",
    ],
)
async def test_a_malformed_events_cursor_is_a_400_naming_after(client: Any, tenant: Any, after: str) -> None:
    _problem(await client.get("/v1/events", params={"after": after}, headers=tenant.headers), 400, "after")


async def test_a_valid_events_cursor_still_pages(client: Any, tenant: Any) -> None:
    r = await client.get("/v1/events", params={"after": "1.0"}, headers=tenant.headers)
    assert r.status_code == 200, r.text


# --- free-form JSON and body size ---

BIG = {"blob": "x" * (FREE_JSON_MAX_BYTES + 1)}
FITS = {"blob": "x" * (FREE_JSON_MAX_BYTES - 100)}


async def test_free_form_json_is_capped_with_a_422_naming_the_field(client: Any, tenant: Any) -> None:
    h = tenant.headers
    cases = [
        ("/v1/agents", {"name": "A", "metadata": BIG}, "metadata"),
        ("/v1/voices", {"provider": "openai", "provider_voice_id": "alloy", "metadata": BIG}, "metadata"),
        ("/v1/numbers", {"phone_number": "+14155550123", "provider": "simulator", "metadata": BIG}, "metadata"),
        ("/v1/leads", {"phone": "+14155550124", "custom_fields": BIG}, "custom_fields"),
    ]
    for path, body, field in cases:
        problem = _problem(await client.post(path, json=body, headers=h), 422, field)
        assert "16 KB" in problem["detail"]
    # Just under the cap: accepted.
    ok = await client.post("/v1/agents", json={"name": "A", "metadata": FITS}, headers=h)
    assert ok.status_code == 201, ok.text
    agent = ok.json()["id"]
    _problem(await client.patch(f"/v1/agents/{agent}", json={"metadata": BIG}, headers=h), 422, "metadata")
    lead = (await client.post("/v1/leads", json={"phone": "+14155550125"}, headers=h)).json()
    _problem(
        await client.patch(f"/v1/leads/{lead['id']}", json={"custom_fields": BIG}, headers=h), 422, "custom_fields"
    )
    _problem(
        await client.put("/v1/voice-profiles/me", json={"preferences": BIG}, headers=h), 422, "preferences"
    )


async def test_call_and_batch_variables_are_capped(client: Any, tenant: Any) -> None:
    h = tenant.headers
    number = (
        await client.post("/v1/numbers", json={"phone_number": "+14155550131", "provider": "simulator"}, headers=h)
    ).json()
    agent = (await client.post("/v1/agents", json={"name": "A"}, headers=h)).json()
    base = {"agent_id": agent["id"], "from_number_id": number["id"]}
    _problem(
        await client.post("/v1/calls", json={**base, "to": "+14155550132", "variables": BIG}, headers=h),
        422,
        "variables",
    )
    _problem(
        await client.post("/v1/batches", json={**base, "entries": [{"phone": "+14155550133"}], "variables": BIG},
                          headers=h),
        422,
        "variables",
    )
    _problem(
        await client.post(
            "/v1/batches",
            json={**base, "entries": [{"phone": "+14155550134"}, {"phone": "+14155550135", "variables": BIG}]},
            headers=h,
        ),
        422,
        "entries[1].variables",
    )
    assert (await client.get("/v1/calls", headers=h)).json()["items"] == []
    assert (await client.get("/v1/batches", headers=h)).json()["items"] == []


async def test_a_body_over_the_limit_is_a_413_that_says_the_limit(client: Any, tenant: Any) -> None:
    body = b'{"name": "A", "agent_instructions": "' + b"x" * (1024 * 1024) + b'"}'
    r = await client.post(
        "/v1/agents", content=body, headers={**tenant.headers, "content-type": "application/json"}
    )
    problem = _problem(r, 413)
    assert "1 MiB" in problem["detail"]
    # Lead imports keep their own, larger limit.
    notes = b"n" * 120
    csv = b"phone,first_name,notes\n" + b"".join(b"+1415555%04d,Ann,%s\n" % (i, notes) for i in range(9_000))
    assert len(csv) > 1024 * 1024
    r = await client.post("/v1/leads/import", content=csv, headers={**tenant.headers, "content-type": "text/csv"})
    assert r.status_code == 200, r.text[:300]


async def test_refused_requests_are_counted_with_their_own_status(client: Any) -> None:
    for _ in range(3):
        _problem(await client.get("/v1/agents"), 401)
        _problem(await client.get("/v1/agents", headers={"Authorization": "Bearer vsk_wrong"}), 401)
    text = (await client.get("/metrics")).text
    lines = [line for line in text.splitlines() if line.startswith("http_requests_total{")]
    refused = [line for line in lines if 'route="/v1/agents"' in line and 'method="GET"' in line]
    assert any('status="401"' in line and float(line.rsplit(" ", 1)[1]) >= 6 for line in refused), refused
    assert not any('status="500"' in line for line in refused), refused


async def test_an_imported_rows_custom_fields_are_capped_too(client: Any, tenant: Any) -> None:
    rows = [
        {"phone": "+14155550141", "custom_fields": BIG},
        {"phone": "+14155550142", "notes_from_crm": "x" * (FREE_JSON_MAX_BYTES + 1)},  # an unmapped column
        {"phone": "+14155550143", "custom_fields": FITS},
    ]
    r = await client.post(
        "/v1/leads/import", content=msgspec.json.encode(rows),
        headers={**tenant.headers, "content-type": "application/json"},
    )
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["inserted"], report["rejected"]) == (1, 2)
    assert {(e["line"], e["field"]) for e in report["errors"]} == {(1, "custom_fields"), (2, "custom_fields")}


async def test_a_large_batch_is_not_held_to_the_json_default(client: Any, tenant: Any) -> None:
    entries = [{"phone": f"+1415556{i:04d}", "variables": {"note": "x" * 200}} for i in range(5000)]
    body = msgspec.json.encode({"agent_id": 1, "entries": entries})
    assert len(body) > 1024 * 1024
    r = await client.post("/v1/batches", content=body, headers={**tenant.headers, "content-type": "application/json"})
    assert r.status_code != 413, r.text[:300]  # refused for its agent (none in this tenant), not for its size
    _problem(r, 422, "agent_id")
