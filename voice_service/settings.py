"""Service settings: one frozen msgspec Struct read from the environment once, at start-up.

`.env.example` lists every variable. Nothing here opens a connection; the app's lifespan does that.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

_TRUE = {"1", "true", "yes", "on"}


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str | None = None
    data_dir: str = "./.data"
    host: str = "0.0.0.0"
    port: int = 8000
    public_base_url: str = "http://127.0.0.1:8000"
    log_level: str = "INFO"
    log_json: bool = True
    pool_min_size: int = 2
    pool_max_size: int = 20
    # Provider HTTP connections (LLM, TTS) are spread over this many small pools (providers/http.py).
    http_pool_shards: int = 32

    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None

    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_base_url: str | None = None
    # Webhooks signed under Twilio's webhook signature settings (HMAC-SHA1 or HMAC-SHA256 with a SharedKey):
    # comma-separated `key_id:secret` pairs. Webhooks without those settings are signed with the auth token.
    twilio_webhook_shared_keys: str | None = None

    vonage_application_id: str | None = None
    vonage_private_key: str | None = None
    vonage_api_key: str | None = None
    vonage_signature_secret: str | None = None
    vonage_base_url: str = "https://api.nexmo.com"

    # The built-in simulator "carrier": Twilio's wire format against a local simulator process.
    simulator_base_url: str = "http://127.0.0.1:8765"
    simulator_account_sid: str = "ACsimulator0000000000000000000000"
    simulator_auth_token: str = "simulator-dev-token"

    deepgram_api_key: str | None = None
    deepgram_base_url: str = "wss://api.deepgram.com"
    deepgram_http_url: str = "https://api.deepgram.com"

    openai_api_key: str | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    openai_model: str = "gpt-4o-mini"
    analysis_model: str = "gpt-4o-mini"

    elevenlabs_api_key: str | None = None
    elevenlabs_base_url: str = "https://api.elevenlabs.io"
    cartesia_api_key: str | None = None
    cartesia_base_url: str = "https://api.cartesia.ai"
    google_tts_api_key: str | None = None
    google_tts_base_url: str = "https://texttospeech.googleapis.com"
    default_tts_provider: str = "deepgram"
    default_tts_voice: str = "aura-2-thalia-en"

    run_workers: bool = True
    # false: media sessions only meter audio (telephony load tests, carrier debugging); no STT/LLM/TTS.
    conversation_engine: bool = True
    drain_timeout_seconds: float = 30.0
    bootstrap_tenant_name: str = "Default tenant"
    enforce_wallet_balance: bool = True
    demo_credit: str = "25.00"
    platform_admin_token: str | None = None

    # Base64 of 32 bytes: the AES-256-GCM key for secrets stored in the database (webhook signing secrets).
    # Unset: a development key generated once under DATA_DIR (a warning is logged).
    secrets_encryption_key: str | None = None
    # Webhook endpoint targets: http:// URLs, and hosts that are (or resolve to) private, loopback, link-local,
    # … addresses are refused unless these allow them (local development and tests only).
    webhook_allow_insecure_targets: bool = False
    webhook_allow_private_targets: bool = False

    # Call recordings: unset → the folder DATA_DIR/recordings; a path or file:///path; or s3://bucket/prefix
    # with the S3_* settings (any S3-compatible store; S3_ENDPOINT_URL unset → AWS).
    recordings_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_region: str = "us-east-1"
    # Operator console (/console): a session ends after this long without a request, and in any case this long
    # after sign-in; live views recompute their figures this often (once per tenant, shared by every viewer).
    console_session_idle_minutes: int = 60
    console_session_max_hours: int = 12
    console_live_interval_seconds: float = 5.0

    @property
    def resolved_data_dir(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()


def _coerce(field_type: Any, raw: str) -> Any:
    text = str(field_type)
    if "bool" in text:
        return raw.strip().lower() in _TRUE
    if text in ("int", "<class 'int'>"):
        return int(raw)
    if text in ("float", "<class 'float'>"):
        return float(raw)
    return raw


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build Settings from the environment (upper-case field names); explicit overrides win."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for field in msgspec.structs.fields(Settings):
        raw = env.get(field.name.upper())
        if raw is not None and raw != "":
            values[field.name] = _coerce(field.type, raw)
    values.update(overrides)
    return Settings(**values)
