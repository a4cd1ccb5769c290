"""Webhook signatures the way the providers make them: Twilio's HMAC-SHA1 (the SDK's own RequestValidator
algorithm) and Vonage's HS256 JWT with payload_hash, iat and jti."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Mapping

import jwt
from twilio.request_validator import RequestValidator

__all__ = ["twilio_signature", "vonage_signed_jwt"]


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str] | None = None) -> str:
    """X-Twilio-Signature for a request to `url` (query included) with these POST params."""
    return str(RequestValidator(auth_token).compute_signature(url, dict(params or {})))


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
