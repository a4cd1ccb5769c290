"""The URLs a carrier calls back on for one call: its answer and status webhooks and its media socket.

Derived from the carrier's declared routes (providers/telephony/carrier.py) and PUBLIC_BASE_URL, the address the
carriers reach this service at (Twilio signs the URL it calls, so it must be exactly this one).
"""

from __future__ import annotations

import uuid

from providers.telephony.carrier import CallbackUrls
from providers.telephony.registry import carrier
from voice_service.settings import Settings

__all__ = ["answer_url", "callback_urls", "media_url", "status_url"]


def callback_urls(settings: Settings, provider: str, call_id: uuid.UUID | str) -> CallbackUrls:
    return carrier(provider).routes.callback_urls(settings.public_base_url, str(call_id))


def media_url(settings: Settings, provider: str) -> str:
    """The carrier's media socket (wss:// behind https), no query string."""
    return callback_urls(settings, provider, "").media


def status_url(settings: Settings, provider: str, call_id: uuid.UUID) -> str:
    return callback_urls(settings, provider, call_id).status


def answer_url(settings: Settings, provider: str, call_id: uuid.UUID) -> str:
    return callback_urls(settings, provider, call_id).answer
