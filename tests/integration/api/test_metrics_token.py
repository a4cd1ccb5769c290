"""/metrics for deployments that expose the port: open by default, behind `Authorization: Bearer <METRICS_TOKEN>`
once that setting is set."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest


async def test_metrics_are_open_without_a_token(client: Any) -> None:
    r = await client.get("/metrics")
    assert r.status_code == 200 and "http_requests_total" in r.text and "voice_calls_total" in r.text


async def test_metrics_token_protects_metrics(client: Any, app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app.state, "settings", msgspec.structs.replace(app.state.settings, metrics_token="s3cret"))
    missing = await client.get("/metrics")
    assert missing.status_code == 401 and "METRICS_TOKEN" in missing.json()["detail"]
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer guess"})
    assert wrong.status_code == 401
    ok = await client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and "http_requests_total" in ok.text
    # Only /metrics: health checks stay open.
    assert (await client.get("/health")).status_code == 200
