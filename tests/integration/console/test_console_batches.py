"""The console's batch pages over HTTP: the new-batch form with its errors, the launch preview (exact counts, skip
reasons and the wallet reservation, nothing written), the launch (idempotent), the progress page and its controls,
roles and tenants. The live view's stream and its database cost: test_console_live.py; in Chromium:
test_console_browser_flows.py."""

from __future__ import annotations

import re
import uuid
from typing import Any

import asyncpg

from tests.support.batches import unique_phone
from tests.support.console import api_key, fund, signed_in, text_of


async def _setup(client: Any, tenant: Any, pg_dsn: str, *, funded: bool = True) -> dict[str, Any]:
    h = tenant.headers
    agent = (await client.post("/v1/agents", json={"name": "Dialer"}, headers=h)).json()
    number = (await client.post("/v1/numbers", json={"phone_number": unique_phone("+1212"), "provider": "simulator"},
                                headers=h)).json()
    leads = []
    for first, dnc in (("Ann", False), ("Ben", False), ("Cy", True)):
        r = await client.post("/v1/leads", json={"phone": unique_phone(), "first_name": first, "do_not_call": dnc},
                              headers=h)
        assert r.status_code == 201, r.text
        leads.append(r.json())
    if funded:
        await fund(pg_dsn, tenant.id, "50")
    return {"agent": agent, "number": number, "leads": leads}


def _form(s: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"agent_id": str(s["agent"]["id"]), "from_number_id": s["number"]["id"], "timezone": "America/New_York",
            "window_start": "09:00", "window_end": "18:00", "days": ["mon", "tue", "wed", "thu", "fri"],
            "max_concurrency": "5", "calls_per_second": "0.5", "max_attempts": "2", "retry_on": ["busy", "no_answer"],
            "backoff_minutes": "30", "lead": [x["id"] for x in s["leads"]], **extra}


def _figure(html: str, name: str) -> str:
    m = re.search(rf'data-figure="{name}">\s*(.*?)\s*</dd>', html, re.S)
    assert m is not None, name
    return text_of(m.group(1)).strip()


async def test_review_previews_exactly_and_writes_nothing(console: Any, tenant: Any, client: Any, pg_dsn: str,
                                                          admin_conn: asyncpg.Connection) -> None:
    s = await _setup(client, tenant, pg_dsn)
    c = await signed_in(console, tenant.key)
    page = await c.http.get("/console/batches/new", params={"lead": [x["id"] for x in s["leads"]]})
    assert page.status_code == 200 and "3 leads selected" in text_of(page.text)
    new_phone = unique_phone()
    csv = f"phone,first_name,plan\n{new_phone},Dee,gold\nnonsense,Eve,\n"
    r = await c.http.post("/console/batches/new", data={"_csrf": c.csrf, **_form(s)},
                          files={"file": ("people.csv", csv.encode(), "text/csv")})
    assert r.status_code == 200, text_of(r.text)[:2000]
    assert _figure(r.text, "calls") == "3" and _figure(r.text, "skipped") == "2"
    reading = text_of(r.text)
    assert "1 × do not call: the lead asked not to be called" in reading
    assert "1 × invalid phone: 'nonsense' is not a valid phone number" in reading
    assert _figure(r.text, "available").endswith("USD") and "Launch 3 calls" in reading
    reservation = _figure(r.text, "reservation")
    assert re.fullmatch(r"\d+\.\d\d USD", reservation) and float(reservation.split()[0]) > 0
    # A preview: no batch, no new lead, no reservation.
    assert (await client.get("/v1/batches", headers=tenant.headers)).json()["items"] == []
    assert await admin_conn.fetchval("SELECT count(*) FROM leads WHERE tenant_id = $1 AND phone = $2",
                                     tenant.id, new_phone) == 0
    wallet = (await client.get("/v1/billing/wallet", headers=tenant.headers)).json()
    assert float(wallet["reserved_balance"]) == 0
    # The file's rows are kept: reviewing again needs no new upload.
    assert "2 rows from people.csv" in reading

    payload = re.search(r'name="payload" value="([^"]+)"', r.text)
    key = re.search(r'name="idempotency_key" value="([^"]+)"', r.text)
    assert payload and key
    import html
    launch = {"_csrf": c.csrf, "payload": html.unescape(payload.group(1)), "idempotency_key": key.group(1)}
    first = await c.http.post("/console/batches/launch", data=launch)
    assert first.status_code == 303 and re.match(r"/console/batches/[0-9a-f-]{36}\?launched=true", first.headers["location"])
    again = await c.http.post("/console/batches/launch", data=launch)  # a double click
    assert again.headers["location"] == first.headers["location"]
    items = (await client.get("/v1/batches", headers=tenant.headers)).json()["items"]
    assert len(items) == 1
    b = items[0]
    assert b["counts"] == {"total": 5, "queued": 3, "in_progress": 0, "retrying": 0, "completed": 0, "failed": 0,
                           "skipped": 2, "cancelled": 0}
    assert b["calling_window"] == {"start": "09:00", "end": "18:00", "days": ["mon", "tue", "wed", "thu", "fri"]}
    assert b["max_concurrency"] == 5 and b["calls_per_second"] == 0.5 and b["timezone"] == "America/New_York"
    assert b["retry"] == {"max_attempts": 2, "retry_on": ["busy", "no_answer"], "backoff_seconds": [1800]}
    entry_vars = [e["variables"] for e in (await client.get(f"/v1/batches/{b['id']}/entries",
                                                            headers=tenant.headers)).json()["items"]]
    assert {"first_name": "Dee", "plan": "gold"} in entry_vars
    wallet = (await client.get("/v1/billing/wallet", headers=tenant.headers)).json()
    assert f"{float(wallet['reserved_balance']):.2f} USD" == reservation

    detail = await c.http.get(first.headers["location"])
    assert detail.status_code == 200 and "The batch is launched" in detail.text
    assert _figure(detail.text, "queued") == "3" and _figure(detail.text, "skipped") == "2"
    assert f'sse-connect="/console/live/batches/{b["id"]}"' in detail.text
    assert len(re.findall(r"<tr>\s*<td class=\"num\">", detail.text)) == 5  # the entries list


async def test_the_form_names_each_wrong_field(console: Any, tenant: Any, client: Any, pg_dsn: str) -> None:
    s = await _setup(client, tenant, pg_dsn)
    c = await signed_in(console, tenant.key)
    r = await c.http.post("/console/batches/new", data={"_csrf": c.csrf, **_form(
        s, agent_id="", window_end="", days=[], max_concurrency="lots", calls_per_second="fast", max_attempts="11",
        lead=[])})
    assert r.status_code == 422
    for key, text in (("agent_id", "Agent: choose the agent who speaks on these calls"),
                      ("window_end", "Calling window end: enter the time calls stop starting"),
                      ("days", "Days: tick at least one day"),
                      ("max_concurrency", "Calls at once: enter a whole number"),
                      ("calls_per_second", "Calls started per second: enter a number"),
                      ("max_attempts", "Attempts per lead: between 1 and 10"),
                      ("file", "CSV file: choose a file of phone numbers")):
        assert re.search(rf'id="{key}-error">{re.escape(text)}', r.text), (key, text)
    assert "Review before launching" not in r.text
    # A refusal from the service lands on its field too.
    r = await c.http.post("/console/batches/new", data={"_csrf": c.csrf, **_form(s, from_number_id=str(uuid.uuid4()))})
    assert r.status_code == 422 and 'id="from_number_id-error">Call from: no phone number with this id' in r.text
    r = await c.http.post("/console/batches/new", data={"_csrf": c.csrf, **_form(s, window_start="9am")})
    assert r.status_code == 422 and 'id="window_start-error">Calling window start:' in r.text
    r = await c.http.post("/console/batches/new", data={"_csrf": c.csrf, **_form(s, lead=[])},
                          files={"file": ("x.csv", b"name\nAnn\n", "text/csv")})
    assert r.status_code == 422 and "CSV file: the header row has no phone column" in r.text


async def test_a_wallet_that_cannot_cover_the_batch_is_shown_before_launch(console: Any, tenant: Any, client: Any,
                                                                             pg_dsn: str) -> None:
    s = await _setup(client, tenant, pg_dsn, funded=False)
    c = await signed_in(console, tenant.key)
    r = await c.http.post("/console/batches/new", data={"_csrf": c.csrf, **_form(s)})
    assert r.status_code == 200
    reading = text_of(r.text)
    assert "The wallet cannot cover this batch" in reading and "Top up at least" in reading
    assert 'action="/console/batches/launch"' not in r.text


async def test_controls_and_roles(console: Any, tenant: Any, client: Any, pg_dsn: str, make_tenant: Any) -> None:
    s = await _setup(client, tenant, pg_dsn)
    r = await client.post("/v1/batches", json={"agent_id": s["agent"]["id"], "from_number_id": s["number"]["id"],
                                               "entries": [{"lead_id": s["leads"][0]["id"]}]}, headers=tenant.headers)
    batch = r.json()
    c = await signed_in(console, tenant.key)
    hx = {"HX-Request": "true", "HX-Target": "batch-progress", "X-CSRF-Token": c.csrf}
    r = await c.http.post(f"/console/batches/{batch['id']}/pause", headers=hx)
    assert r.status_code == 200 and "<html" not in r.text and ">Resume</button>" in r.text
    assert (await client.get(f"/v1/batches/{batch['id']}", headers=tenant.headers)).json()["status"] == "paused"
    r = await c.post(f"/console/batches/{batch['id']}/resume", {})
    assert r.status_code == 303
    assert (await client.get(f"/v1/batches/{batch['id']}", headers=tenant.headers)).json()["status"] == "running"
    r = await c.http.post(f"/console/batches/{batch['id']}/cancel", data={"hangup_live": "true"}, headers=hx)
    assert r.status_code == 200 and "No call was in progress" in r.text and "Cancel the batch" not in r.text
    assert (await client.get(f"/v1/batches/{batch['id']}", headers=tenant.headers)).json()["status"] == "cancelled"
    r = await c.http.post(f"/console/batches/{batch['id']}/pause", headers=hx)
    assert r.status_code == 409 and "the batch is cancelled" in r.text

    viewer = await signed_in(console, (await api_key(client, tenant, "viewer"))["key"])
    listing = await viewer.http.get("/console/batches")
    assert listing.status_code == 200 and "New batch" not in listing.text
    shown = await viewer.http.get(f"/console/batches/{batch['id']}")
    assert shown.status_code == 200 and "Cancel the batch" not in shown.text
    assert (await viewer.http.get("/console/batches/new")).status_code == 403
    assert (await viewer.post("/console/batches/new", _form(s))).status_code == 403
    assert (await viewer.post(f"/console/batches/{batch['id']}/resume", {})).status_code == 403

    other = await make_tenant()
    stranger = await signed_in(console, other.key)
    for path in (f"/console/batches/{batch['id']}", f"/console/live/batches/{batch['id']}", "/console/batches/x"):
        assert (await stranger.http.get(path)).status_code == 404, path
    assert (await stranger.post(f"/console/batches/{batch['id']}/pause", {})).status_code == 404
