"""An agent's language must be one the configured speech-to-text model can take (Deepgram refuses the stream
otherwise, and every call of the agent would end stt_failed): refused with a 422 naming `language`."""

from __future__ import annotations

from typing import Any

import pytest


def _refused(r: Any) -> dict[str, Any]:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert [e["field"] for e in body["errors"]] == ["language"]
    return body  # type: ignore[no-any-return]


@pytest.mark.parametrize("language", ["de-DE", "fr-FR", "es-ES", "en-US", "de-CH", "es-MX", "pt-BR"])
async def test_languages_the_default_model_takes_are_accepted(client: Any, tenant: Any, language: str) -> None:
    r = await client.post("/v1/agents", json={"name": "Ana", "language": language}, headers=tenant.headers)
    assert r.status_code == 201, r.text
    assert r.json()["language"] == language  # stored as given; mapped to Deepgram's code at the stream


@pytest.mark.parametrize(
    ("body", "model"),
    [
        ({"name": "Ana", "language": "ar-SA"}, "nova-3"),
        ({"name": "Ana", "language": "de-DE", "config": {"stt_model": "nova-2-phonecall"}}, "nova-2-phonecall"),
    ],
)
async def test_a_language_the_model_cannot_take_is_refused(
    client: Any, tenant: Any, body: dict[str, Any], model: str
) -> None:
    problem = _refused(await client.post("/v1/agents", json=body, headers=tenant.headers))
    assert body["language"] in problem["detail"] and model in problem["detail"]


async def test_an_update_is_checked_against_the_agent_it_produces(client: Any, tenant: Any) -> None:
    made = await client.post("/v1/agents", json={"name": "Ana", "language": "de-DE"}, headers=tenant.headers)
    agent = made.json()["id"]
    _refused(await client.patch(f"/v1/agents/{agent}", json={"language": "ar-SA"}, headers=tenant.headers))
    # Switching the model alone: German on an English-only model.
    _refused(
        await client.patch(
            f"/v1/agents/{agent}", json={"config": {"stt_model": "nova-2-phonecall"}}, headers=tenant.headers
        )
    )
    ok = await client.patch(f"/v1/agents/{agent}", json={"language": "it-IT"}, headers=tenant.headers)
    assert ok.status_code == 200 and ok.json()["language"] == "it-IT"
    # A model this service has no table for (self-hosted, newer) is not second-guessed.
    custom = await client.patch(
        f"/v1/agents/{agent}", json={"config": {"stt_model": "my-finetuned-model"}}, headers=tenant.headers
    )
    assert custom.status_code == 200
