"""An in-memory ASGI socket standing in for uvicorn's receive/send, and a MediaSession on it for either carrier's
wire format (the media session and media tap tests)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec

from providers.telephony.base import MediaStarted
from providers.telephony.twilio import TwilioCodec
from providers.telephony.vonage import VonageCodec
from voice_service.calls.schemas import CallInfo
from voice_service.calls.session import MediaSession

_decode = msgspec.json.decode


class Socket:
    def __init__(self) -> None:
        self.inbound: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[tuple[float, dict[str, Any]]] = []

    async def receive(self) -> dict[str, Any]:
        return await self.inbound.get()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append((time.monotonic(), message))

    def text(self, payload: dict[str, Any]) -> None:
        self.inbound.put_nowait({"type": "websocket.receive", "text": msgspec.json.encode(payload).decode()})

    def frames(self) -> list[tuple[float, Any]]:
        out = []
        for at, message in self.sent:
            if message["type"] != "websocket.send":
                continue
            out.append((at, _decode(message["text"]) if "text" in message else message["bytes"]))
        return out


def session_on(kind: str, socket: Socket, **kwargs: Any) -> MediaSession:
    info = CallInfo(
        tenant_id=uuid.uuid4(),
        call_id=uuid.uuid4(),
        call_created_at=datetime.now(UTC),
        agent_id=1,
        lead_id=None,
        direction="outbound",
        variables={"a": 1},
        voice_id=None,
        provider=kind,
        provider_call_id="CA1",
        from_e164="+1",
        to_e164="+2",
    )
    if kind == "twilio":
        codec: Any = TwilioCodec()
        started = codec.decode(
            msgspec.json.encode(
                {
                    "event": "start",
                    "start": {
                        "streamSid": "MZ1",
                        "callSid": "CA1",
                        "customParameters": {"call_id": "x", "token": "y"},
                        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    },
                }
            ).decode()
        )
    else:
        codec = VonageCodec()
        started = codec.decode('{"event":"websocket:connected","content-type":"audio/l16;rate=16000"}')
    assert isinstance(started, MediaStarted)
    return MediaSession(
        call=info,
        codec=codec,
        started=started,
        receive=socket.receive,
        send=socket.send,
        clean_close_codes=(1000,) if kind == "vonage" else (),
        **kwargs,
    )
