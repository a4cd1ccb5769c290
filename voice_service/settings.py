"""Service settings: one frozen msgspec Struct read from the environment once, at start-up.

`.env.example` lists every variable. A `.env` file in the working directory (or the file ENV_FILE names) is read
too; a variable set in the real environment wins over the file. Nothing here opens a connection; the app's
lifespan does that.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

_TRUE = {"1", "true", "yes", "on"}


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    # The owner's URL: migrations, the command line's admin commands. Unset → the embedded server under DATA_DIR.
    database_url: str | None = None
    # The service's own logins (db.py): a role that is no superuser and belongs to voice_app (the API and the job
    # handlers) / to voice_worker (the job queue). Unset → created by the service, with a generated password.
    app_database_url: str | None = None
    worker_database_url: str | None = None
    data_dir: str = "./.data"
    host: str = "0.0.0.0"
    port: int = 8000
    public_base_url: str = "http://127.0.0.1:8000"
    log_level: str = "INFO"
    log_json: bool = True
    pool_min_size: int = 2
    pool_max_size: int = 20
    # Pool connections kept for one-statement reads (GET one agent, a page: db.ReadLane), at most half of
    # pool_max_size; 0 for none.
    pool_read_lane: int = 10
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
    vonage_api_secret: str | None = None  # with the API key: the account's number list (registering numbers)
    vonage_signature_secret: str | None = None
    vonage_base_url: str = "https://api.nexmo.com"
    # The Vonage account's billing currency (ISO 4217): event webhooks report prices in it without saying so.
    vonage_account_currency: str = "EUR"
    vonage_rest_url: str = "https://rest.nexmo.com"  # the account APIs (numbers)

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
    # Set it where the service's port is reachable by others: /metrics then needs `Authorization: Bearer <it>`.
    metrics_token: str | None = None

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
    # Browser origins (`https://shop.example.com`, comma-separated; `*` = any) allowed to use this service from
    # another site: CORS on the API and, for web calls, the origins whose pages may open the call's socket (the
    # service's own origin always may). Empty: none.
    cors_allowed_origins: str = ""

    # The settings file read besides the environment (default `.env` in the working directory; ENV_FILE= with no
    # value reads none). Set by load_settings to the file it read, or None.
    env_file: str | None = None

    @property
    def resolved_data_dir(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()


_ORIGIN = re.compile(r"^https?://[^\s/?#*]+$")


def cors_origins(settings: Settings) -> list[str]:
    """CORS_ALLOWED_ORIGINS as a list of origins (a trailing slash dropped). Raises ValueError naming the setting
    for anything that is not an origin: a path, another scheme, or `*` (every origin would get the API)."""
    origins = []
    for raw in settings.cors_allowed_origins.split(","):
        origin = raw.strip().rstrip("/")
        if not origin:
            continue
        if not _ORIGIN.match(origin):
            raise ValueError(
                f"CORS_ALLOWED_ORIGINS: {raw.strip()!r} is not an origin (scheme://host[:port], e.g. "
                "https://console.example.com)"
            )
        origins.append(origin)
    return origins


def _coerce(field_type: Any, raw: str) -> Any:
    text = str(field_type)
    if "bool" in text:
        return raw.strip().lower() in _TRUE
    if text in ("int", "<class 'int'>"):
        return int(raw)
    if text in ("float", "<class 'float'>"):
        return float(raw)
    return raw


def read_env_file(path: Path) -> dict[str, str]:
    """`KEY=value` lines of a .env file: blank lines and `#` comments are skipped, `export KEY=value` is allowed; a
    value may be quoted ('…' as written, "…" with \\n and \\" escapes); an unquoted value ends at ` #` (an inline
    comment, as in .env.example) and is stripped."""
    out: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8-sig").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.replace("_", "").isalnum():
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        elif len(value) >= 2 and value[0] == '"' and value.rfind('"') > 0:
            value = value[1:value.rfind('"')].replace("\\n", "\n").replace('\\"', '"')
        else:
            hash_at = value.find(" #")
            value = (value[:hash_at] if hash_at >= 0 else value).strip()
        out[key] = value
    return out


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build Settings from the environment (upper-case field names) and, when `env` is not given, the .env file;
    explicit overrides win, then the environment, then the file."""
    env_file: str | None = None
    if env is None:
        name = os.environ.get("ENV_FILE", ".env")
        path = Path(name) if name else None
        file_values: dict[str, str] = {}
        if path is not None and path.is_file():
            file_values = read_env_file(path)
            env_file = str(path.resolve())
        env = {**file_values, **os.environ}
    values: dict[str, Any] = {}
    for field in msgspec.structs.fields(Settings):
        if field.name == "env_file":
            continue
        raw = env.get(field.name.upper())
        if raw is not None and raw != "":
            values[field.name] = _coerce(field.type, raw)
    values["env_file"] = env_file
    values.update(overrides)
    return Settings(**values)
