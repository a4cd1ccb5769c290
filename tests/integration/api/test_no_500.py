"""No request body produces a 500: every JSON write operation in the OpenAPI document gets hostile bodies."""

from __future__ import annotations

import re
import uuid
from typing import Any

NASTY: list[Any] = [
    {}, [], None, 0, "x", {"name": None}, {"name": 2**70}, {"id": -1}, {"phone": "\u0000"},
    {"name": "\u0000"}, {"metadata": {"a": "\u0000"}}, {"limit": -5}, {"name": "x" * 100_000},
    {"agent_id": 2**63}, {"agent_id": -(2**63) - 1}, {"from_number_id": "nope"}, {"entries": [{}] * 3},
    {"entries": "all"}, {"to": "+1"}, {"amount": "1e999"}, {"url": "javascript:alert(1)"},
    {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {"j": {}}}}}}}}}}},
]
_PARAM = re.compile(r"\{([a-z_]+)\}")


def _fill(path: str, ids: dict[str, str]) -> str:
    return _PARAM.sub(lambda m: ids.get(m.group(1), str(uuid.uuid4())), path)


async def test_no_body_produces_a_500(client: Any, tenant: Any) -> None:
    agent = (await client.post("/v1/agents", json={"name": "a"}, headers=tenant.headers)).json()
    ids = {"agent_id": str(agent["id"])}
    spec = (await client.get("/schema/openapi.json")).json()
    checked = 0
    for path, item in spec["paths"].items():
        if path.startswith("/v1/telephony/"):
            continue  # signed provider webhooks: covered by the telephony tests
        for method in ("post", "patch", "put"):
            op = item.get(method)
            if op is None:
                continue
            url = _fill(path, ids)
            for body in NASTY:
                r = await client.request(method.upper(), url, json=body, headers=tenant.headers)
                assert r.status_code < 500, (method, url, body if len(str(body)) < 200 else "<long>", r.text[:300])
                checked += 1
            for raw in (b"{", b"\xff\xfe\x00", b"{\"name\": \"\\ud800\"}", b"[" * 5000 + b"]" * 5000, b'{"a":1}{"b":2}'):
                r = await client.request(method.upper(), url, content=raw,
                                         headers={**tenant.headers, "content-type": "application/json"})
                assert r.status_code < 500, (method, url, raw[:20], r.text[:300])
    assert checked > 100
