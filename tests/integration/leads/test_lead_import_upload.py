"""Lead import as a browser and a spreadsheet send it: a multipart/form-data upload (the file in a `file` field) as
well as the raw body; headers as people write them (`First Name`, `Phone Number`, `Mobile`, `E-mail`) mapped to the
lead fields, with an optional explicit mapping; unmapped columns kept in custom_fields and named in the report;
semicolon- and tab-separated files; national numbers turned into E.164 with a `default_country`."""

from __future__ import annotations

import json
from typing import Any


async def _lead(client: Any, tenant: Any, phone: str) -> dict[str, Any]:
    r = await client.get("/v1/leads", params={"phone": phone}, headers=tenant.headers)
    items = r.json()["items"]
    assert len(items) == 1, r.text
    return items[0]  # type: ignore[no-any-return]


async def test_a_browser_upload_with_peoples_headers_and_national_numbers(client: Any, tenant: Any) -> None:
    csv = (
        b"First Name;last name;Phone Number;E-mail;Company;Favourite colour\r\n"
        b"Ann;Lee;(415) 555-0103;ann@example.com;Initech;teal\r\n"
        b"Bo;Chen;+44 20 7946 0958;bo@example.com;Globex;\r\n"
        b"Cy;Diaz;555-0199;cy@example.com;Umbrella;red\r\n"
    )
    r = await client.post(
        "/v1/leads/import",
        files={"file": ("contacts.csv", csv, "application/vnd.ms-excel")},
        data={"default_country": "US"},
        headers=tenant.headers,
    )
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["received"], report["inserted"], report["rejected"]) == (3, 2, 1)
    assert report["delimiter"] == ";"
    assert report["columns"] == {"First Name": "first_name", "last name": "last_name", "Phone Number": "phone",
                                 "E-mail": "email", "Company": "company_name"}
    assert report["custom_field_columns"] == ["Favourite colour"]
    assert report["errors"][0]["line"] == 4 and report["errors"][0]["field"] == "phone"
    ann = await _lead(client, tenant, "+14155550103")
    assert (ann["first_name"], ann["last_name"], ann["email"], ann["company_name"]) == (
        "Ann", "Lee", "ann@example.com", "Initech")
    assert ann["custom_fields"] == {"Favourite colour": "teal"}
    assert (await _lead(client, tenant, "+442079460958"))["first_name"] == "Bo"


async def test_without_a_default_country_national_numbers_are_rejected_rows(client: Any, tenant: Any) -> None:
    r = await client.post("/v1/leads/import", content=b"Mobile,Name\n(415) 555-0104,Dee\n",
                          headers={**tenant.headers, "content-type": "text/csv"})
    report = r.json()
    assert report["rejected"] == 1 and "default_country" in report["errors"][0]["reason"]
    r = await client.post("/v1/leads/import", params={"default_country": "us"},
                          content=b"Mobile,Name\n(415) 555-0104,Dee\n",
                          headers={**tenant.headers, "content-type": "text/csv"})
    assert r.json()["inserted"] == 1 and r.json()["columns"] == {"Mobile": "phone"}
    assert r.json()["custom_field_columns"] == ["Name"]


async def test_tab_separated_with_an_explicit_mapping(client: Any, tenant: Any) -> None:
    tsv = b"Tel. (work)\tMobile\tGiven\tNotes 2\n+14155550105\t+14155550106\tEve\tignore me\n"
    mapping = {"Tel. (work)": "phone", "Given": "first_name", "Notes 2": None}
    r = await client.post("/v1/leads/import", params={"mapping": json.dumps(mapping)}, content=tsv,
                          headers={**tenant.headers, "content-type": "text/csv"})
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["delimiter"] == "\t" and report["inserted"] == 1
    # The mapping wins over the header that merely names the field; that column is kept in custom_fields.
    assert report["columns"] == {"Tel. (work)": "phone", "Given": "first_name"}
    assert report["custom_field_columns"] == ["Mobile"] and report["ignored_columns"] == ["Notes 2"]
    eve = await _lead(client, tenant, "+14155550105")
    assert eve["first_name"] == "Eve" and eve["custom_fields"] == {"Mobile": "+14155550106"}


async def test_json_keys_are_mapped_the_same_way(client: Any, tenant: Any) -> None:
    body = [{"Phone Number": "+14155550107", "First Name": "Fay", "plan": "pro"}]
    r = await client.post("/v1/leads/import", json=body, headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert r.json()["columns"] == {"Phone Number": "phone", "First Name": "first_name"}
    fay = await _lead(client, tenant, "+14155550107")
    assert fay["first_name"] == "Fay" and fay["custom_fields"] == {"plan": "pro"}


async def test_upload_mistakes_are_explained(client: Any, tenant: Any) -> None:
    no_file = await client.post("/v1/leads/import", data={"default_country": "US"}, files={},
                                headers={**tenant.headers, "content-type": "multipart/form-data; boundary=x"})
    assert no_file.status_code == 400
    no_phone = await client.post("/v1/leads/import", files={"file": ("a.csv", b"Name,City\nAnn,Paris\n")},
                                 headers=tenant.headers)
    assert no_phone.status_code == 400 and "phone" in no_phone.json()["detail"]
    assert "'Name'" in no_phone.json()["detail"]
    bad_map = await client.post("/v1/leads/import", params={"mapping": '{"Tel": "fone"}'},
                                content=b"Tel\n+14155550108\n", headers={**tenant.headers, "content-type": "text/csv"})
    assert bad_map.status_code == 422 and bad_map.json()["field"] == "mapping.Tel"
    missing_col = await client.post("/v1/leads/import", params={"mapping": '{"Phone": "phone"}'},
                                    content=b"Tel\n+14155550108\n",
                                    headers={**tenant.headers, "content-type": "text/csv"})
    assert missing_col.status_code == 422 and "'Tel'" in missing_col.json()["detail"]
    not_json = await client.post("/v1/leads/import", params={"mapping": "Tel=phone"}, content=b"Tel\n+1\n",
                                 headers={**tenant.headers, "content-type": "text/csv"})
    assert not_json.status_code == 400 and not_json.json()["field"] == "mapping"
    country = await client.post("/v1/leads/import", params={"default_country": "XX"}, content=b"phone\n+1\n",
                                headers={**tenant.headers, "content-type": "text/csv"})
    assert country.status_code == 422 and country.json()["field"] == "default_country"
    plain = await client.post("/v1/leads/import", content=b"phone\n+14155550108\n",
                              headers={**tenant.headers, "content-type": "text/plain"})
    assert plain.status_code == 415 and "multipart/form-data" in plain.json()["detail"]
