"""Builds the configured `TtsProvider` from settings-like values; one shared httpx client for all."""

from __future__ import annotations

from typing import Any

import httpx

from providers.tts.base import TtsProvider
from providers.tts.cartesia import CartesiaTts
from providers.tts.deepgram import DeepgramTts
from providers.tts.elevenlabs import ElevenLabsTts
from providers.tts.google import GoogleTts
from providers.tts.openai import OpenAiTts

TTS_PROVIDERS = ("deepgram", "openai", "elevenlabs", "cartesia", "google")


def build_tts_provider(
    name: str,
    *,
    http_client: httpx.AsyncClient,
    model: str | None = None,
    deepgram_api_key: str | None = None,
    deepgram_base_url: str | None = None,
    openai_api_key: str | None = None,
    openai_base_url: str | None = None,
    elevenlabs_api_key: str | None = None,
    elevenlabs_base_url: str | None = None,
    cartesia_api_key: str | None = None,
    cartesia_base_url: str | None = None,
    cartesia_version: str | None = None,
    google_tts_api_key: str | None = None,
    google_tts_base_url: str | None = None,
    timeout: float = 10.0,
) -> TtsProvider:
    """`name` is one of TTS_PROVIDERS; `model` overrides the provider's default model (for Google, where
    the voice name carries the priced tier, pass `providers.tts.google.voice_model(voice_name)`).

    Raises ValueError for an unknown provider or a missing API key (a configuration error)."""
    options: dict[str, Any] = {"http_client": http_client, "timeout": timeout}
    if model:
        options["model"] = model
    if name == "deepgram":
        if deepgram_base_url:
            options["base_url"] = deepgram_base_url
        return DeepgramTts(_required(name, "DEEPGRAM_API_KEY", deepgram_api_key), **options)
    if name == "openai":
        return OpenAiTts(
            _required(name, "OPENAI_API_KEY", openai_api_key), base_url=openai_base_url, **options
        )
    if name == "elevenlabs":
        if elevenlabs_base_url:
            options["base_url"] = elevenlabs_base_url
        return ElevenLabsTts(_required(name, "ELEVENLABS_API_KEY", elevenlabs_api_key), **options)
    if name == "cartesia":
        if cartesia_base_url:
            options["base_url"] = cartesia_base_url
        if cartesia_version:
            options["version"] = cartesia_version
        return CartesiaTts(_required(name, "CARTESIA_API_KEY", cartesia_api_key), **options)
    if name == "google":
        if google_tts_base_url:
            options["base_url"] = google_tts_base_url
        return GoogleTts(_required(name, "GOOGLE_TTS_API_KEY", google_tts_api_key), **options)
    raise ValueError(f"unknown TTS provider {name!r}; expected one of {', '.join(TTS_PROVIDERS)}")


def _required(provider: str, setting: str, value: str | None) -> str:
    if not value:
        raise ValueError(f"TTS provider {provider!r} needs {setting}")
    return value
