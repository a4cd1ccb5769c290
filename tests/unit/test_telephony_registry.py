"""The carrier registry and declarations: what the service derives from them (URLs, configuration), and the
mistakes a new carrier module cannot make (a taken name or path, routes without an answer or status webhook)."""

from __future__ import annotations

import uuid
from dataclasses import replace

import msgspec
import pytest

from providers.telephony import registry, twilio, vonage
from providers.telephony.carrier import Carrier, CarrierRoutes, MediaRoute, WebhookRoute
from voice_service.carriers.clients import carrier_config
from voice_service.carriers.urls import answer_url, media_url, status_url
from voice_service.errors import ServiceUnavailable
from voice_service.settings import load_settings

CALL_ID = uuid.UUID("0193a0c4-7d1e-7000-8000-000000000001")


def test_callback_urls_of_the_built_in_carriers():
    https = load_settings(env={}, public_base_url="https://voice.example.test/")
    assert (
        status_url(https, "twilio", CALL_ID)
        == f"https://voice.example.test/v1/telephony/twilio/status?call_id={CALL_ID}"
    )
    assert status_url(https, "simulator", CALL_ID) == status_url(https, "twilio", CALL_ID)
    assert (
        status_url(https, "vonage", CALL_ID)
        == f"https://voice.example.test/v1/telephony/vonage/events?call_id={CALL_ID}"
    )
    assert (
        answer_url(https, "vonage", CALL_ID)
        == f"https://voice.example.test/v1/telephony/vonage/answer?call_id={CALL_ID}"
    )
    assert (
        answer_url(https, "twilio", CALL_ID)
        == f"https://voice.example.test/v1/telephony/twilio/voice?call_id={CALL_ID}"
    )
    assert media_url(https, "twilio") == "wss://voice.example.test/v1/telephony/twilio/media"
    assert media_url(https, "simulator") == "wss://voice.example.test/v1/telephony/twilio/media"
    assert media_url(https, "vonage") == "wss://voice.example.test/v1/telephony/vonage/media"
    local = load_settings(env={}, public_base_url="http://127.0.0.1:8000")
    assert media_url(local, "vonage") == "ws://127.0.0.1:8000/v1/telephony/vonage/media"
    with pytest.raises(ValueError, match="unknown telephony provider 'skype'"):
        media_url(local, "skype")


def test_the_simulator_shares_twilios_routes():
    families = {routes.segment: [c.name for c in members] for routes, members in registry.route_families()}
    assert families == {"twilio": ["twilio", "simulator"], "vonage": ["vonage"]}


def test_carrier_config_reads_settings_then_the_environment(monkeypatch: pytest.MonkeyPatch):
    settings = load_settings(env={}, twilio_account_sid="AC1", twilio_auth_token="tok")
    assert carrier_config(settings, twilio.CARRIER) == {
        "twilio_account_sid": "AC1",
        "twilio_auth_token": "tok",
        "twilio_base_url": None,
        "twilio_webhook_shared_keys": None,
    }
    with pytest.raises(
        ServiceUnavailable, match=r"^Twilio is not configured \(TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN\)$"
    ):
        carrier_config(msgspec.structs.replace(settings, twilio_auth_token=""), twilio.CARRIER)
    with pytest.raises(ServiceUnavailable, match=r"VONAGE_APPLICATION_ID, VONAGE_SIGNATURE_SECRET"):
        carrier_config(settings, vonage.CARRIER)
    # A name the Settings do not have comes from the environment (a carrier a deployment adds needs no field).
    extra = replace(twilio.CARRIER, name="extra", settings=("extra_api_key",), required=("extra_api_key",))
    monkeypatch.delenv("EXTRA_API_KEY", raising=False)
    with pytest.raises(ServiceUnavailable, match=r"\(EXTRA_API_KEY\)"):
        carrier_config(settings, extra)
    monkeypatch.setenv("EXTRA_API_KEY", "k-123")
    assert carrier_config(settings, extra) == {"extra_api_key": "k-123"}


def _routes(segment: str) -> CarrierRoutes:
    return CarrierRoutes(
        segment=segment,
        webhooks=(
            WebhookRoute(kind="answer", path="in", operation_id=f"{segment}In", summary="in"),
            WebhookRoute(kind="status", path="st", operation_id=f"{segment}St", summary="st"),
        ),
        media=MediaRoute(codec=twilio.TwilioCodec),
    )


def test_registration_refuses_taken_names_and_paths():
    other = Carrier(
        name="twilio", title="Not Twilio", routes=_routes("not_twilio"), build=twilio.CARRIER.build
    )
    with pytest.raises(ValueError, match="already registered"):
        registry.register(other)
    squatter = Carrier(
        name="squatter", title="Squatter", routes=_routes("vonage"), build=twilio.CARRIER.build
    )
    with pytest.raises(ValueError, match="already belongs to carrier 'vonage'"):
        registry.register(squatter)
    assert registry.names() == ["simulator", "twilio", "vonage"]
    registry.register(twilio.CARRIER)  # the same declaration again is harmless


def test_declarations_that_cannot_work_are_refused():
    with pytest.raises(ValueError, match="carrier name"):
        Carrier(name="Bad-Name", title="x", routes=_routes("x"), build=twilio.CARRIER.build)
    with pytest.raises(ValueError, match="undeclared settings"):
        Carrier(name="x", title="x", routes=_routes("x"), build=twilio.CARRIER.build, required=("x_key",))
    with pytest.raises(ValueError, match="one answer and one status"):
        CarrierRoutes(
            segment="x",
            webhooks=(WebhookRoute(kind="status", path="st", operation_id="xSt", summary="st"),),
            media=MediaRoute(codec=twilio.TwilioCodec),
        )
    with pytest.raises(ValueError, match="segment"):
        _routes("../x")
