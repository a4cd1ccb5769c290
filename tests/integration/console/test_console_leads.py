"""The console's lead pages over HTTP: search and pages, the CSV import's row report, do-not-call set and lifted,
roles and tenants. The browser tests drive the same pages in Chromium."""

from __future__ import annotations

import re
import uuid
from typing import Any

import asyncpg

from tests.support.console import api_key as _key
from tests.support.console import text_of

CSV = (
    "phone,first_name,last_name,email,company_name,timezone,favourite_colour\n"
    "+14155550101,Alice,O'Brien,alice@example.com,Acme Corp,America/Los_Angeles,blue\n"
    "not-a-phone,Bob,Smith,bob@example.com,Initech,,\n"
    "+14155550102,Carol,Jones,carol@example,Globex,Mars/Olympus,\n"
    "+14155550101,Alice,Again,,,,\n"
    "+442079460000,Dave,Brown,dave@example.co.uk,Acme Ltd,Europe/London,green\n"
)



def _rows(html: str) -> list[str]:
    return re.findall(r'<tr id="lead-row-([0-9a-f-]{36})"', html)


async def _import(c: Any, text: str, *, name: str = "leads.csv") -> Any:
    return await c.http.post("/console/leads/import", data={"_csrf": c.csrf},
                             files={"file": (name, text.encode(), "text/csv")})


async def test_import_reports_each_refused_row_and_why(console: Any, tenant: Any, client: Any) -> None:
    c = await console()
    await c.sign_in(tenant.key)
    assert "No leads yet" in (await c.http.get("/console/leads")).text
    r = await _import(c, CSV)
    assert r.status_code == 200, r.text
    html = r.text
    assert 'data-figure="received">5<' in html and 'data-figure="inserted">2<' in html
    assert 'data-figure="rejected">3<' in html
    report = text_of(html)
    assert "3 phone 'not-a-phone' is not a valid phone number" in report
    assert "4 email not a valid email address" in report and "4 timezone 'Mars/Olympus' is not an IANA" in report
    assert "5 phone +14155550101 already appears on line 2" in report
    leads = (await client.get("/v1/leads", headers=tenant.headers)).json()["items"]
    assert sorted(x["phone"] for x in leads) == ["+14155550101", "+442079460000"]
    alice = next(x for x in leads if x["phone"] == "+14155550101")
    assert alice["custom_fields"] == {"favourite_colour": "blue"}
    # The same file again updates, never doubles.
    again = await _import(c, CSV)
    assert 'data-figure="inserted">0<' in again.text and 'data-figure="updated">2<' in again.text


async def test_import_refuses_a_file_it_cannot_read_naming_the_file(console: Any, tenant: Any) -> None:
    c = await console()
    await c.sign_in(tenant.key)
    r = await _import(c, "name,email\nAlice,a@example.com\n")
    assert r.status_code == 422
    assert 'id="file-error">CSV file: the file has no phone column (every lead needs one)' in r.text
    assert 'aria-invalid="true"' in r.text
    r = await c.http.post("/console/leads/import", data={"_csrf": c.csrf})
    assert r.status_code == 422 and "CSV file: choose a CSV file" in r.text
    r = await c.http.post("/console/leads/import", files={"file": ("x.csv", b"phone\n+14155550101\n", "text/csv")})
    assert r.status_code == 403  # no CSRF token


async def test_search_pages_and_do_not_call(console: Any, tenant: Any, client: Any,
                                            admin_conn: asyncpg.Connection) -> None:
    c = await console()
    await c.sign_in(tenant.key)
    await _import(c, CSV)
    await admin_conn.execute(
        """INSERT INTO leads (tenant_id, phone, first_name, created_at)
           SELECT $1, '+1212555' || lpad(i::text, 4, '0'), 'Filler' || i, now() - make_interval(mins => i)
           FROM generate_series(1, 30) i""", tenant.id)
    first = await c.http.get("/console/leads")
    assert len(_rows(first.text)) == 25
    older = re.search(r'href="(/console/leads\?cursor=[^"]+)"', first.text)
    assert older is not None
    second = await c.http.get(older.group(1).replace("&amp;", "&"))
    assert len(_rows(second.text)) == 7 and not set(_rows(second.text)) & set(_rows(first.text))

    async def found(q: str, **extra: str) -> list[str]:
        html = (await c.http.get("/console/leads", params={"q": q, **extra})).text
        return re.findall(r'<a href="/console/leads/[0-9a-f-]{36}">([^<]+)</a>', html)

    assert await found("ali") == ["Alice O&#39;Brien"]
    assert sorted(await found("acme")) == ["Alice O&#39;Brien", "Dave Brown"]  # one import: the same instant
    assert await found("acme dav") == ["Dave Brown"]
    assert await found("+44 20") == ["Dave Brown"]
    assert await found("alice@example.com") == ["Alice O&#39;Brien"]
    assert await found("o'brien") == ["Alice O&#39;Brien"]
    assert await found("zzz") == []
    for nasty in ("& | ! ( ) :*", "'", "\\", "a:* | b", "<->", "%00", "(ali", "ali'); DROP TABLE leads; --"):
        r = await c.http.get("/console/leads", params={"q": nasty})
        assert r.status_code == 200, (nasty, r.text[:300])
    r = await c.http.get("/console/leads", params={"q": "ä" * 300})
    assert r.status_code == 422 and 'id="q-error">Search: at most 200 characters' in r.text
    assert "No leads match" in (await c.http.get("/console/leads", params={"q": "zzz"})).text
    assert len(await found("filler", per_page="50")) == 30
    # Pages of a search: the first fills from the newest rows, the rest from the full-text index (lead_search_page).
    first_page = (await c.http.get("/console/leads", params={"q": "filler"})).text
    more = re.search(r'href="(/console/leads\?[^"]*cursor=[^"]+)"', first_page)
    assert more is not None and len(_rows(first_page)) == 25
    rest = await c.http.get(more.group(1).replace("&amp;", "&"))
    assert len(_rows(rest.text)) == 5 and not set(_rows(rest.text)) & set(_rows(first_page))
    r = await c.http.get("/console/leads", params={"per_page": "7", "dnc": "maybe"})
    assert r.status_code == 422 and "Leads per page: choose 25, 50, 100 or 200" in r.text

    lead = next(x for x in (await client.get("/v1/leads", headers=tenant.headers)).json()["items"]
                if x["first_name"] == "Dave")
    r = await c.http.post(f"/console/leads/{lead['id']}/do-not-call",
                          data={"do_not_call": "true", "reason": "asked on the phone"},
                          headers={"HX-Request": "true", "HX-Target": f"lead-row-{lead['id']}", "X-CSRF-Token": c.csrf})
    assert r.status_code == 200 and "<html" not in r.text and "Allow calls" in r.text
    now = (await client.get(f"/v1/leads/{lead['id']}", headers=tenant.headers)).json()
    assert now["do_not_call"] is True and now["do_not_call_reason"] == "asked on the phone"
    assert await found("", dnc="yes") == ["Dave Brown"]
    detail = await c.http.get(f"/console/leads/{lead['id']}")
    assert "asked on the phone" in detail.text and "Allow calls again" in detail.text
    r = await c.post(f"/console/leads/{lead['id']}/do-not-call", {"do_not_call": "false"})
    assert r.status_code == 303 and r.headers["location"].endswith("saved=true")
    assert (await client.get(f"/v1/leads/{lead['id']}", headers=tenant.headers)).json()["do_not_call"] is False


async def test_leads_roles_and_tenants(console: Any, client: Any, make_tenant: Any) -> None:
    a, b = await make_tenant(), await make_tenant()
    b_lead = (await client.post("/v1/leads", json={"phone": "+14155550199", "first_name": "Bea"},
                                headers=b.headers)).json()
    viewer = await console()
    await viewer.sign_in((await _key(client, a, "viewer"))["key"])
    page = await viewer.http.get("/console/leads")
    assert page.status_code == 200 and "Import a CSV file" not in page.text
    assert (await viewer.http.get("/console/leads/import")).status_code == 403
    r = await _import(viewer, "phone\n+14155550100\n")
    assert r.status_code == 403
    assert (await client.get("/v1/leads", headers=a.headers)).json()["items"] == []
    owner = await console()
    await owner.sign_in(a.key)
    for path in (f"/console/leads/{b_lead['id']}", f"/console/leads/{uuid.uuid4()}", "/console/leads/nope"):
        assert (await owner.http.get(path)).status_code == 404, path
    r = await owner.post(f"/console/leads/{b_lead['id']}/do-not-call", {"do_not_call": "true"})
    assert r.status_code == 404
    assert (await client.get(f"/v1/leads/{b_lead['id']}", headers=b.headers)).json()["do_not_call"] is False
    r = await viewer.post(f"/console/leads/{b_lead['id']}/do-not-call", {"do_not_call": "true"})
    assert r.status_code == 403
