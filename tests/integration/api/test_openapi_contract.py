"""The OpenAPI document tells the truth: it validates, every operation is documented (summary, description,
examples, its error responses as problem+json), and for every error status it documents the service really answers
with a body of the documented shape (one real response per status, validated against the document's schema).

A new route passes by itself once it has a summary, a docstring (its description) and `@example(...)` on its body
Struct: the standard error responses come from ApiDocsPlugin (voice_service/openapi/plugin.py); a status only the
route can answer goes in `responses=problems(...)`.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import jsonschema
import pytest
from openapi_spec_validator import validate as validate_spec
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.support.pipeline import insert_call
from voice_service.recordings.service import audio_key
from voice_service.recordings.storage import get_storage

PROBLEM = "application/problem+json"
SPEC_URI = "urn:voice-service:openapi"


@pytest.fixture(scope="module")
async def spec(client: Any) -> dict[str, Any]:
    r = await client.get("/schema/openapi.json")
    assert r.status_code == 200
    return r.json()  # type: ignore[no-any-return]


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, item in spec["paths"].items() for method, op in item.items()
            if method in ("get", "post", "put", "patch", "delete")]


def _component(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    # An optional body is `oneOf: [the struct, null]`: the struct carries the example.
    alternatives = [s for s in schema.get("oneOf", ()) if s.get("type") != "null"]
    if len(alternatives) == 1:
        schema = alternatives[0]
    ref = schema.get("$ref")
    return spec["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else schema


def _resolve_refs(node: Any) -> Any:
    """Turn `#/components/...` refs into absolute ones under SPEC_URI, so the registry resolves them."""
    if isinstance(node, dict):
        return {k: (f"{SPEC_URI}{v}" if k == "$ref" and isinstance(v, str) and v.startswith("#") else _resolve_refs(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve_refs(v) for v in node]
    return node


def _validate(spec: dict[str, Any], schema: dict[str, Any], value: Any) -> None:
    registry: Registry[Any] = Registry().with_resource(
        SPEC_URI, Resource(contents=_resolve_refs(spec), specification=DRAFT202012)
    )
    jsonschema.Draft202012Validator(_resolve_refs(schema), registry=registry).validate(value)


async def test_the_document_validates(spec: dict[str, Any]) -> None:
    validate_spec(spec)
    assert spec["openapi"].startswith("3.1")


async def test_every_operation_is_documented(spec: dict[str, Any]) -> None:
    missing: list[str] = []
    for method, path, op in _operations(spec):
        name = f"{method} {path}"
        if not op.get("summary"):
            missing.append(f"{name}: no summary")
        if not op.get("description"):
            missing.append(f"{name}: no description (give the handler a docstring)")
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")):
                content = response.get("content") or {}
                if list(content) != [PROBLEM] or _component(spec, content[PROBLEM]["schema"]).get(
                        "title") != "ProblemDetails":
                    missing.append(f"{name}: {status} is not documented as application/problem+json")
        if "400" not in op["responses"]:
            missing.append(f"{name}: no 400 (every operation refuses unknown query parameters)")
        if op.get("security") != [{}] and not path.startswith("/v1/telephony/") and "401" not in op["responses"]:
            missing.append(f"{name}: authenticated but no 401")
        body = op.get("requestBody")
        if body:
            for media_type, media in body["content"].items():
                if not (media.get("examples") or media.get("example")
                        or _component(spec, media.get("schema", {})).get("examples")):
                    missing.append(f"{name}: the {media_type} request body has no example (`@example` on it)")
        for status, response in op["responses"].items():
            media = (response.get("content") or {}).get("application/json")
            # Carrier webhooks answer the carrier's own call-control documents: not for API clients.
            if status.startswith("2") and media and not path.startswith("/v1/telephony/"):
                schema = media["schema"]
                item = _component(spec, schema)
                page_items = item.get("properties", {}).get("items", {}).get("items")
                target = _component(spec, page_items) if page_items else item
                if schema.get("type") == "array":
                    target = _component(spec, schema["items"])
                if not (media.get("examples") or target.get("examples")):
                    missing.append(f"{name}: the {status} response has no example")
    assert not missing, f"{len(missing)} documentation gaps:\n" + "\n".join(missing)


async def test_every_request_body_field_is_described(spec: dict[str, Any]) -> None:
    """What a client sends is explained field by field (`Meta(description=…)` on the Struct's fields)."""
    bodies = {media["schema"]["$ref"].rsplit("/", 1)[1]
              for _, _, op in _operations(spec) for media in (op.get("requestBody") or {}).get("content", {}).values()
              if "$ref" in media.get("schema", {})}
    undescribed = [f"{name}.{field}" for name in sorted(bodies)
                   for field, prop in spec["components"]["schemas"][name].get("properties", {}).items()
                   if not prop.get("description")]
    assert len(bodies) >= 15
    assert not undescribed, f"{len(undescribed)} request fields without a description: {undescribed}"


async def test_no_litestar_default_error_shape_is_left(spec: dict[str, Any]) -> None:
    """Litestar's own `{status_code, detail, extra}` body is what the service never sends."""
    text = str(spec)
    assert "['detail', 'status_code']" not in text and "Validation Exception" not in text


async def test_schema_examples_match_their_schemas(spec: dict[str, Any]) -> None:
    """An example that its own schema refuses would teach the wrong thing."""
    checked = 0
    for name, schema in spec["components"]["schemas"].items():
        for example in schema.get("examples") or []:
            _validate(spec, {"$ref": f"#/components/schemas/{name}"}, example)
            checked += 1
    for _, _, op in _operations(spec):
        for response in op["responses"].values():
            for media in (response.get("content") or {}).values():
                for example in (media.get("examples") or {}).values():
                    _validate(spec, media["schema"], example["value"])
                    checked += 1
    assert checked > 40


async def _error_cases(client: Any, make_tenant: Any, admin_conn: asyncpg.Connection, app: Any) -> dict[int, Any]:
    """One real request per error status: (status → (operationId, response))."""
    tenant = await make_tenant()
    h = tenant.headers
    out: dict[int, Any] = {}
    out[400] = ("listCalls", await client.get("/v1/calls", params={"staus": "ended"}, headers=h))
    out[401] = ("listAgents", await client.get("/v1/agents"))
    viewer = (await client.post("/v1/api-keys", json={"name": "ro", "role": "viewer"}, headers=h)).json()["key"]
    out[403] = ("createAgent", await client.post("/v1/agents", json={"name": "x"},
                                                 headers={"Authorization": f"Bearer {viewer}"}))
    out[404] = ("getAgent", await client.get("/v1/agents/987654321", headers=h))
    phone = f"+4420794{uuid.uuid4().int % 100000:05d}"
    await client.post("/v1/numbers", json={"phone_number": phone, "provider": "twilio"}, headers=h)
    other = await make_tenant()
    out[409] = ("createNumber", await client.post("/v1/numbers", json={"phone_number": phone, "provider": "twilio"},
                                                  headers=other.headers))
    out[413] = ("createAgent", await client.post("/v1/agents", headers=h,
                                                 json={"name": "x", "metadata": {"a": "x" * (1024 * 1024)}}))
    out[415] = ("importLeads", await client.post("/v1/leads/import", content=b"phone\n+14155550100\n",
                                                 headers={**h, "content-type": "text/plain"}))
    out[422] = ("createCall", await client.post("/v1/calls", headers=h, json={
        "agent_id": 987654321, "from_number_id": str(uuid.uuid4()), "to": "+14155550100"}))
    agent = (await client.post("/v1/agents", json={"name": "Dialer"}, headers=h)).json()
    number = (await client.post("/v1/numbers", headers=h, json={
        "phone_number": f"+4420795{uuid.uuid4().int % 100000:05d}", "provider": "twilio"})).json()
    out[402] = ("createBatch", await client.post("/v1/batches", headers=h, json={
        "agent_id": agent["id"], "from_number_id": number["id"], "entries": [{"phone": "+14155550100"}]}))
    out[416] = ("getCallRecording", await _range_past_the_end(client, tenant, admin_conn, app))
    app.state.draining = True
    try:
        out[503] = ("createCall", await client.post("/v1/calls", headers=h, json={
            "agent_id": agent["id"], "from_number_id": number["id"], "to": "+14155550100"}))
    finally:
        app.state.draining = False
    return out


async def _range_past_the_end(client: Any, tenant: Any, admin_conn: asyncpg.Connection, app: Any) -> Any:
    call_id, created_at = await insert_call(admin_conn, tenant.id)
    storage = await get_storage(app.state.runtime)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "a.mp3"
        source.write_bytes(b"\xff\xfb" * 100)
        await storage.put(audio_key(tenant.id, call_id), source, content_type="audio/mpeg")
    await admin_conn.execute("UPDATE voice_call_logs SET recording_url = $3 WHERE id = $1 AND created_at = $2",
                             call_id, created_at, f"/v1/calls/{call_id}/recording")
    return await client.get(f"/v1/calls/{call_id}/recording", headers={**tenant.headers, "Range": "bytes=5000-"})


async def test_every_documented_error_status_is_answered_as_documented(
    spec: dict[str, Any], client: Any, make_tenant: Any, admin_conn: asyncpg.Connection, app: Any
) -> None:
    by_id = {op["operationId"]: op for _, _, op in _operations(spec)}
    documented = {int(s) for _, _, op in _operations(spec) for s in op["responses"] if s[0] in "45"}
    cases = await _error_cases(client, make_tenant, admin_conn, app)
    assert documented <= set(cases), f"no real request checks status {sorted(documented - set(cases))}"
    problem = spec["components"]["schemas"]["ProblemDetails"]
    field_problem = spec["components"]["schemas"]["FieldProblem"]
    for status, (operation_id, r) in sorted(cases.items()):
        assert r.status_code == status, (status, r.text)
        documented_response = by_id[operation_id]["responses"].get(str(status))
        assert documented_response is not None, f"{operation_id} does not document {status}"
        assert r.headers["content-type"].startswith(PROBLEM), (status, r.headers["content-type"])
        body = r.json()
        _validate(spec, documented_response["content"][PROBLEM]["schema"], body)
        # No undocumented keys either (the schema allows extra ones; the contract does not).
        assert set(body) <= set(problem["properties"]), (status, set(body) - set(problem["properties"]))
        for error in body.get("errors", []):
            assert set(error) <= set(field_problem["properties"]), (status, error)
        assert body["status"] == status and body["detail"]


async def test_real_responses_match_their_documented_schemas(spec: dict[str, Any], client: Any, tenant: Any) -> None:
    h = tenant.headers
    agent = (await client.post("/v1/agents", json={"name": "Ava", "config": {"goal": "demo"}}, headers=h)).json()
    checks = [
        ("getAgent", await client.get(f"/v1/agents/{agent['id']}", headers=h)),
        ("listAgents", await client.get("/v1/agents", headers=h)),
        ("listEventTypes", await client.get("/v1/event-types", headers=h)),
        ("getWallet", await client.get("/v1/billing/wallet", headers=h)),
        ("listEvents", await client.get("/v1/events", headers=h)),
    ]
    by_id = {op["operationId"]: op for _, _, op in _operations(spec)}
    for operation_id, r in checks:
        assert r.status_code == 200, r.text
        schema = by_id[operation_id]["responses"]["200"]["content"]["application/json"]["schema"]
        _validate(spec, schema, r.json())


async def test_the_event_catalog_is_in_the_document(spec: dict[str, Any], client: Any, tenant: Any) -> None:
    types = [t["type"] for t in (await client.get("/v1/event-types", headers=tenant.headers)).json()]
    assert set(spec["webhooks"]) == set(types)
    assert {"voice_call.started", "voice_call.ended", "voice_call.failed", "voice_call.recording_ready",
            "voice_call.recording_deleted", "batch.started", "batch.progress", "batch.completed",
            "batch.cancelled", "voice_call.cost_recorded", "voice_call.analyzed"} <= set(types)
    for name, item in spec["webhooks"].items():
        body = item["post"]["requestBody"]["content"]["application/json"]["schema"]
        envelope = _component(spec, body)
        assert envelope["properties"]["type"]["const"] == name
