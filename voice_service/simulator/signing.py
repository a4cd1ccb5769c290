"""Webhook signatures the way the providers make them: Twilio's (the SDK's own RequestValidator algorithm: HMAC-SHA1
with the auth token, or HMAC-SHA1/SHA256 with a Webhooks SharedKey named in X-Twilio-Webhooks-Signature-Settings)
and Vonage's HS256 JWT with payload_hash, iat and jti."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Mapping

import jwt
from twilio.request_validator import SIGNATURE_HEADER, SIGNATURE_SETTINGS_HEADER, RequestValidator

__all__ = ["twilio_signature", "twilio_signature_headers", "vonage_signed_jwt"]


def twilio_signature(
    auth_token: str, url: str, params: Mapping[str, str] | None = None, *, algorithm: str | None = None
) -> str:
    """X-Twilio-Signature for a request to `url` (query included) with these POST params."""
    return str(RequestValidator(auth_token).compute_signature(url, dict(params or {}), algorithm))


def twilio_signature_headers(
    auth_token: str,
    url: str,
    params: Mapping[str, str] | None = None,
    *,
    shared_key: tuple[str, str] | None = None,
    algorithm: str = "HMAC_SHA256",
) -> dict[str, str]:
    """The signature headers of a Twilio request: with the auth token (HMAC-SHA1, no settings header), or, with
    `shared_key` = (key id, secret), under webhook signature settings naming that key and `algorithm`."""
    if shared_key is None:
        return {SIGNATURE_HEADER: twilio_signature(auth_token, url, params)}
    key_id, secret = shared_key
    return {
        SIGNATURE_HEADER: twilio_signature(secret, url, params, algorithm=algorithm),
        SIGNATURE_SETTINGS_HEADER: f"key={key_id},algorithm={algorithm}",
    }


def vonage_signed_jwt(
    signature_secret: str,
    body: bytes,
    *,
    api_key: str | None = None,
    application_id: str | None = None,
    iat: float | None = None,
    jti: str | None = None,
) -> str:
    """The Bearer token of a Vonage signed webhook."""
    claims: dict[str, object] = {
        "iat": int(time.time() if iat is None else iat),
        "jti": jti or str(uuid.uuid4()),
        "iss": "Vonage",
        "payload_hash": hashlib.sha256(body).hexdigest(),
    }
    if api_key:
        claims["api_key"] = api_key
    if application_id:
        claims["application_id"] = application_id
    return jwt.encode(claims, signature_secret, algorithm="HS256")
