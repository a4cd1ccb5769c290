"""Leads as a user meets them: CRUD, filters, pagination, validation, roles, and the bulk CSV/JSON import."""

from __future__ import annotations

import csv
import io
import json
import random
import uuid
from decimal import Decimal
from typing import Any

import asyncpg

from voice_service.leads.service import normalize_phone
from voice_service.phones import parse_phone

# Valid numbers (phonenumbers metadata): US 415 numbers and a London landline.
PHONES = [f"+1415555{n:04d}" for n in range(2671, 2700)]
LONDON = "+442071838750"


def _problem(r: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers["content-type"]
    body = r.json()
    assert body["status"] == status
    if field is not None:
        fields = [e.get("field") for e in body.get("errors", [])]
        assert field in fields, body
    return body  # type: ignore[no-any-return]


def _csv(header: list[str], rows: list[list[Any]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode()


async def _create(client: Any, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    r = await client.post("/v1/leads", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def _import(client: Any, headers: dict[str, str], body: bytes, content_type: str) -> Any:
    return await client.post(
        "/v1/leads/import", content=body, headers={**headers, "Content-Type": content_type}
    )


async def _by_phone(client: Any, headers: dict[str, str], phone: str) -> dict[str, Any]:
    items = (await client.get("/v1/leads", params={"phone": phone}, headers=headers)).json()["items"]
    assert len(items) == 1, items
    return items[0]  # type: ignore[no-any-return]


async def test_lead_crud_round_trip(client: Any, tenant: Any) -> None:
    h = tenant.headers
    lead = await _create(
        client,
        h,
        phone="+1 (415) 555-2671",
        first_name="Ada",
        last_name="Lovelace",
        email="ada@example.com",
        company_name="Analytical Engines",
        title="CTO",
        linkedin_url="https://www.linkedin.com/in/ada",
        stage="new",
        status="open",
        priority=2,
        estimated_value="1234.50",
        currency="EUR",
        custom_fields={"source": "webinar"},
        notes="Met at the conference.",
        timezone="Europe/London",
    )
    assert lead["phone"] == "+14155552671"  # stored normalised
    assert Decimal(lead["estimated_value"]) == Decimal("1234.5")
    assert lead["custom_fields"] == {"source": "webinar"} and lead["timezone"] == "Europe/London"
    assert lead["do_not_call"] is False and lead["do_not_call_at"] is None
    url = f"/v1/leads/{lead['id']}"
    assert (await client.get(url, headers=h)).json() == lead

    r = await client.patch(url, json={"stage": "qualified", "estimated_value": 99}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["stage"] == "qualified" and Decimal(r.json()["estimated_value"]) == 99
    assert r.json()["first_name"] == "Ada" and r.json()["email"] == "ada@example.com"

    opted_out = (
        await client.patch(url, json={"do_not_call": True, "do_not_call_reason": "asked on call"}, headers=h)
    ).json()
    assert opted_out["do_not_call"] is True and opted_out["do_not_call_at"] is not None
    assert opted_out["do_not_call_reason"] == "asked on call"
    # A PATCH that leaves do_not_call out keeps it, and setting true again keeps the original timestamp.
    after = (await client.patch(url, json={"notes": "call later", "do_not_call": True}, headers=h)).json()
    assert after["do_not_call"] is True and after["do_not_call_at"] == opted_out["do_not_call_at"]
    _problem(await client.patch(url, json={"do_not_call": None}, headers=h), 400, "do_not_call")
    cleared = (await client.patch(url, json={"do_not_call": False}, headers=h)).json()
    assert cleared["do_not_call"] is False and cleared["do_not_call_at"] is None
    assert cleared["do_not_call_reason"] is None
    _problem(await client.patch(url, json={"do_not_call_reason": "x"}, headers=h), 422, "do_not_call_reason")

    assert (await client.delete(url, headers=h)).status_code == 204
    _problem(await client.get(url, headers=h), 404)
    _problem(await client.delete(url, headers=h), 404)
    assert (await client.get("/v1/leads", headers=h)).json()["items"] == []
    # The phone is free again once its lead is deleted.
    again = await _create(client, h, phone="+14155552671")
    assert again["id"] != lead["id"]


async def test_create_with_do_not_call(client: Any, tenant: Any) -> None:
    lead = await _create(
        client, tenant.headers, phone=LONDON, do_not_call=True, do_not_call_reason="TPS list"
    )
    assert lead["do_not_call"] is True and lead["do_not_call_at"] is not None
    assert lead["do_not_call_reason"] == "TPS list"
    r = await client.post(
        "/v1/leads", json={"phone": PHONES[0], "do_not_call_reason": "x"}, headers=tenant.headers
    )
    _problem(r, 422, "do_not_call_reason")


async def test_filters_and_pagination(client: Any, tenant: Any) -> None:
    h = tenant.headers
    created = []
    for i in range(7):
        created.append(
            await _create(
                client,
                h,
                phone=PHONES[i],
                stage="new" if i % 2 else "won",
                status="open" if i < 4 else "closed",
                do_not_call=i == 5,
            )
        )
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/leads", params=params, headers=h)).json()
        pages += 1
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert pages == 3 and len(seen) == len(set(seen)) == 7
    assert seen == [lead["id"] for lead in reversed(created)]  # newest first

    async def ids(**params: Any) -> set[str]:
        r = await client.get("/v1/leads", params=params, headers=h)
        assert r.status_code == 200, r.text
        return {item["id"] for item in r.json()["items"]}

    assert await ids(stage="new") == {created[i]["id"] for i in (1, 3, 5)}
    assert await ids(status="closed", stage="won") == {created[i]["id"] for i in (4, 6)}
    assert await ids(do_not_call="true") == {created[5]["id"]}
    assert len(await ids(do_not_call="false")) == 6
    assert await ids(phone=PHONES[2]) == {created[2]["id"]}
    assert await ids(phone="+14155559999") == set()
    _problem(await client.get("/v1/leads", params={"phone": "12"}, headers=h), 400, "phone")


async def test_duplicate_phone_is_a_conflict_within_the_tenant_only(client: Any, make_tenant: Any) -> None:
    a, b = await make_tenant(), await make_tenant()
    first = await _create(client, a.headers, phone=PHONES[0])
    _problem(await client.post("/v1/leads", json={"phone": PHONES[0]}, headers=a.headers), 409, "phone")
    # The same number written another way is the same number.
    _problem(
        await client.post("/v1/leads", json={"phone": "+1 415-555-2671"}, headers=a.headers), 409, "phone"
    )
    other = await _create(client, a.headers, phone=PHONES[1])
    _problem(
        await client.patch(f"/v1/leads/{other['id']}", json={"phone": PHONES[0]}, headers=a.headers),
        409,
        "phone",
    )
    await _create(client, b.headers, phone=PHONES[0])  # another tenant may hold the same number
    _problem(await client.get(f"/v1/leads/{first['id']}", headers=b.headers), 404)
    _problem(await client.patch(f"/v1/leads/{first['id']}", json={"stage": "x"}, headers=b.headers), 404)


async def test_bad_input_names_the_field(client: Any, tenant: Any) -> None:
    h = tenant.headers

    async def post(body: dict[str, Any]) -> Any:
        return await client.post("/v1/leads", json=body, headers=h)

    _problem(await post({"phone": "not a number"}), 422, "phone")
    _problem(await post({"phone": "+1555"}), 422, "phone")  # well-formed but not a valid number
    assert "`phone`" in _problem(await post({"first_name": "Ada"}), 400)["detail"]  # missing
    assert "`nickname`" in _problem(await post({"phone": PHONES[0], "nickname": "Ada"}), 400)["detail"]
    _problem(await post({"phone": PHONES[0], "first_name": "x" * 201}), 400, "first_name")
    _problem(await post({"phone": PHONES[0], "notes": "x" * 20001}), 400, "notes")
    _problem(await post({"phone": PHONES[0], "timezone": "Mars/Olympus_Mons"}), 422, "timezone")
    _problem(await post({"phone": PHONES[0], "email": "ada-at-example"}), 400, "email")
    _problem(await post({"phone": PHONES[0], "currency": "euro"}), 400, "currency")
    _problem(await post({"phone": PHONES[0], "estimated_value": "lots"}), 400, "estimated_value")
    _problem(await post({"phone": PHONES[0], "estimated_value": "1e15"}), 422, "estimated_value")
    _problem(await post({"phone": PHONES[0], "priority": 2**31}), 400, "priority")
    _problem(await post({"phone": PHONES[0], "first_name": "nul\u0000"}), 422, "first_name")
    _problem(await post({"phone": PHONES[0], "custom_fields": {"k": ["nul\u0000"]}}), 422, "custom_fields")
    assert (await client.get("/v1/leads", headers=h)).json()["items"] == []
    lead = await _create(client, h, phone=PHONES[0])
    _problem(await client.patch(f"/v1/leads/{lead['id']}", json={"phone": None}, headers=h), 400, "phone")
    _problem(
        await client.patch(f"/v1/leads/{lead['id']}", json={"timezone": "Nowhere"}, headers=h),
        422,
        "timezone",
    )


async def test_viewer_cannot_write(client: Any, tenant: Any) -> None:
    lead = await _create(client, tenant.headers, phone=PHONES[0])
    r = await client.post("/v1/api-keys", json={"name": "v", "role": "viewer"}, headers=tenant.headers)
    assert r.status_code == 201, r.text
    vh = {"Authorization": f"Bearer {r.json()['key']}"}
    assert (await client.get("/v1/leads", headers=vh)).json()["items"][0]["id"] == lead["id"]
    assert (await client.get(f"/v1/leads/{lead['id']}", headers=vh)).status_code == 200
    _problem(await client.post("/v1/leads", json={"phone": PHONES[1]}, headers=vh), 403)
    _problem(await client.patch(f"/v1/leads/{lead['id']}", json={"stage": "x"}, headers=vh), 403)
    _problem(await client.delete(f"/v1/leads/{lead['id']}", headers=vh), 403)
    _problem(await _import(client, vh, _csv(["phone"], [[PHONES[1]]]), "text/csv"), 403)
    member = (
        await client.post("/v1/api-keys", json={"name": "m", "role": "member"}, headers=tenant.headers)
    ).json()
    mh = {"Authorization": f"Bearer {member['key']}"}
    await _create(client, mh, phone=PHONES[1])


async def test_import_csv_upserts_and_reports_rejected_rows(
    client: Any, tenant: Any, admin_conn: asyncpg.Connection
) -> None:
    h = tenant.headers
    old = await _create(
        client,
        h,
        phone=PHONES[0],
        first_name="Old",
        stage="contacted",
        custom_fields={"source": "fair", "score": 3},
    )
    header = [
        "Phone",
        "first_name",
        "stage",
        "email",
        "Favourite colour",
        "timezone",
        "estimated_value",
        "do_not_call",
        "id",
    ]
    body = _csv(
        header,
        [
            [
                "+1 (415) 555-2671",
                "New",
                "",
                "",
                "blue",
                "",
                "10.5",
                "",
                "ignored",
            ],  # 2: updates the existing lead
            [PHONES[1], "Bea", "new", "bea@example.com", "", "America/Chicago", "", "yes", ""],  # 3: inserted
            ["555-0100", "NoCountry", "", "", "", "", "", "", ""],  # 4: not E.164
            [PHONES[1], "Again", "", "", "", "", "", "", ""],  # 5: duplicate of line 3
            [PHONES[2], "Cy", "", "cy-at-example", "", "Mars/Base", "", "", ""],  # 6: two bad fields
            ["", "", "", "", "", "", "", "", ""],  # 7: empty, skipped
            [LONDON, "Di", "x" * 101, "", "", "", "", "", ""],  # 8: stage too long
            ["", "Eve", "", "", "", "", "", "", ""],  # 9: no phone
            [PHONES[3], "Flo", "", "", "", "", "", "maybe", ""],  # 10: bad boolean
            [PHONES[4], "Gus", "", "", "green", "", "", "", ""],  # 11: inserted
        ],
    )
    r = await _import(client, h, body, "text/csv; charset=utf-8")
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["received"], report["inserted"], report["updated"], report["rejected"]) == (9, 2, 1, 6)
    got = {(e["line"], e["field"]) for e in report["errors"]}
    assert got == {
        (4, "phone"),
        (5, "phone"),
        (6, "email"),
        (6, "timezone"),
        (8, "stage"),
        (9, "phone"),
        (10, "do_not_call"),
    }
    assert report["error_count"] == 7 and report["errors_truncated"] is False
    dup = next(e for e in report["errors"] if e["line"] == 5)
    assert "line 3" in dup["reason"]

    updated = await _by_phone(client, h, PHONES[0])
    assert updated["id"] == old["id"] and updated["first_name"] == "New"
    assert updated["stage"] == "contacted"  # empty cell: left as it was
    assert updated["custom_fields"] == {"source": "fair", "score": 3, "Favourite colour": "blue"}
    assert Decimal(updated["estimated_value"]) == Decimal("10.5")
    bea = await _by_phone(client, h, PHONES[1])
    assert (bea["first_name"], bea["email"], bea["timezone"]) == ("Bea", "bea@example.com", "America/Chicago")
    assert bea["do_not_call"] is True and bea["do_not_call_at"] is not None and bea["custom_fields"] == {}
    rows = await admin_conn.fetch(
        "SELECT phone, first_name FROM leads WHERE tenant_id = $1 AND deleted_at IS NULL", tenant.id
    )
    assert {(row["phone"], row["first_name"]) for row in rows} == {
        (PHONES[0], "New"),
        (PHONES[1], "Bea"),
        (PHONES[4], "Gus"),
    }

    # Importing again: every valid row updates; an import never lifts an opt-out.
    again = _csv(
        ["phone", "first_name", "do_not_call"], [[PHONES[1], "Bea2", "false"], [PHONES[4], "Gus2", ""]]
    )
    report = (await _import(client, h, again, "text/csv")).json()
    assert (report["received"], report["inserted"], report["updated"], report["rejected"]) == (2, 0, 2, 0)
    bea2 = await _by_phone(client, h, PHONES[1])
    assert bea2["first_name"] == "Bea2" and bea2["do_not_call"] is True
    assert bea2["do_not_call_at"] == bea["do_not_call_at"]


async def test_import_json(client: Any, make_tenant: Any) -> None:
    a, b = await make_tenant(), await make_tenant()
    await _create(client, a.headers, phone=PHONES[0], first_name="Ann", email="ann@example.com")
    items: list[Any] = [
        {"phone": PHONES[0], "last_name": "Smith", "email": None, "estimated_value": 12.25, "plan": "pro"},
        {
            "phone": PHONES[1],
            "first_name": "Ben",
            "priority": 3,
            "estimated_value": "99.99",
            "currency": "USD",
            "custom_fields": {"source": "ads"},
            "region": {"code": "CA"},
            "created_at": "ignored",
        },
        "not an object",
        {"phone": 14155552673},
        {"phone": PHONES[3], "priority": "high", "first_name": 7},
        {"phone": PHONES[1], "first_name": "dup"},
        {"phone": PHONES[5], "custom_fields": {}, "notes": "  "},
        {"phone": PHONES[6], "custom_fields": {"k": "nul\u0000"}},
    ]
    r = await _import(client, a.headers, json.dumps(items).encode(), "application/json")
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["received"], report["inserted"], report["updated"], report["rejected"]) == (8, 2, 1, 5)
    assert {(e["line"], e["field"]) for e in report["errors"]} == {
        (3, None),
        (4, "phone"),
        (5, "priority"),
        (5, "first_name"),
        (6, "phone"),
        (8, "custom_fields"),
    }
    empty = await _by_phone(client, a.headers, PHONES[5])
    assert empty["custom_fields"] == {} and empty["notes"] is None
    ann = await _by_phone(client, a.headers, PHONES[0])
    assert (ann["first_name"], ann["last_name"], ann["email"]) == ("Ann", "Smith", "ann@example.com")
    assert Decimal(ann["estimated_value"]) == Decimal("12.25") and ann["custom_fields"] == {"plan": "pro"}
    ben = await _by_phone(client, a.headers, PHONES[1])
    assert (ben["priority"], Decimal(ben["estimated_value"]), ben["currency"]) == (3, Decimal("99.99"), "USD")
    assert ben["custom_fields"] == {"source": "ads", "region": {"code": "CA"}}

    # The upsert key is scoped to the tenant: B gets a new lead for A's phone, A's lead is untouched.
    report = (
        await _import(
            client,
            b.headers,
            json.dumps([{"phone": PHONES[0], "first_name": "Bob"}]).encode(),
            "application/json",
        )
    ).json()
    assert (report["inserted"], report["updated"]) == (1, 0)
    assert (await _by_phone(client, a.headers, PHONES[0]))["first_name"] == "Ann"


async def test_import_limits_and_bad_bodies(client: Any, tenant: Any) -> None:
    h = tenant.headers
    too_many = b"phone,first_name\n" + b",x\n" * 100_001
    body = _problem(await _import(client, h, too_many, "text/csv"), 413)
    assert "100,000" in body["detail"] and body["errors"][0]["limit"] == 100_000
    _problem(await _import(client, h, b"[" + b"{}," * 100_000 + b"{}]", "application/json"), 413)

    # Many bad rows: the list is capped, the counts stay exact.
    report = (await _import(client, h, b"phone,first_name\n" + b"bad,x\n" * 1500, "text/csv")).json()
    assert (report["received"], report["rejected"], report["error_count"]) == (1500, 1500, 1500)
    assert len(report["errors"]) == 1000 and report["errors_truncated"] is True
    assert report["errors"][-1]["line"] == 1001

    _problem(await _import(client, h, b"first_name\nAda\n", "text/csv"), 400, "phone")
    _problem(await _import(client, h, b'{"phone": "+14155552671"}', "application/json"), 400, "body")
    _problem(await _import(client, h, b"[{", "application/json"), 400, "body")
    _problem(await _import(client, h, b"phone\n\xff\xfe\n", "text/csv"), 400, "body")
    _problem(await _import(client, h, b"phone\n+14155552671\n", "application/xml"), 415)
    assert (await client.get("/v1/leads", headers=h)).json()["items"] == []


async def test_import_handles_a_bom_quoted_newlines_and_tenant_rls(
    client: Any, tenant: Any, admin_conn: asyncpg.Connection
) -> None:
    body = (
        f'\ufeffphone,notes,first_name\n{PHONES[0]},"line one\nline two",Ann\n{PHONES[0]},dup,Ann\n'
    ).encode()
    report = (await _import(client, tenant.headers, body, "text/csv")).json()
    assert (report["inserted"], report["rejected"]) == (1, 1)
    assert report["errors"] == [
        {"line": 4, "field": "phone", "reason": f"{PHONES[0]} already appears on line 2"}
    ]
    lead = await _by_phone(client, tenant.headers, PHONES[0])
    assert lead["notes"] == "line one\nline two"
    owner = await admin_conn.fetchval("SELECT tenant_id FROM leads WHERE id = $1", uuid.UUID(lead["id"]))
    assert owner == tenant.id


def test_phone_fast_path_agrees_with_phonenumbers() -> None:
    # normalize_phone skips phonenumbers.parse for "+1" + ten digits; it must decide exactly as the full parse.
    rng = random.Random(7)
    samples = [f"+1{rng.randrange(2_000_000_000, 10_000_000_000)}" for _ in range(3000)]
    samples += [
        f"+1{area}{rng.randrange(2_000_000, 10_000_000)}"
        for area in (800, 555, 416, 604, 876, 671)
        for _ in range(100)
    ]
    samples += ["+12125550100", "+15550100000", "+11234567890", LONDON, "+7 800 123-45-67", "+390612345678"]
    valid = 0
    for sample in samples:
        full = parse_phone(sample.replace(" ", "").replace("-", ""))
        assert normalize_phone(sample) == (full.e164 if full else None), sample
        valid += full is not None
    assert 0 < valid < len(samples)
