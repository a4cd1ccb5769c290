"""The conversation engine on an in-memory phone line, without a database: a Twilio media stream played from the
carrier's side (`PhoneLine`), the fake Deepgram, OpenAI and TTS servers behind one local server (`fakes`), and
`run_call`, which drives the real MediaSession and CallSession through one call and returns what it recorded."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec

from providers.telephony.twilio import TwilioCodec
from tests.fakes.deepgram import FakeDeepgram
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import Fault, LocalServer, PathRouter, mulaw_silence, mulaw_tone
from tests.fakes.tts import FakeTts
from voice_service import composition
from voice_service.agents.schemas import AgentConfig
from voice_service.calls.schemas import CallInfo
from voice_service.calls.session import MediaSession
from voice_service.conversation.engine import CallSession
from voice_service.conversation.services import CallSetup, EngineConfig, RuntimeServices
from voice_service.runtime import Runtime
from voice_service.settings import load_settings

# --- the tests ---------------------------------------------------------------------------------------------

_json = msgspec.json.Encoder()
FRAME = 160  # 20 ms of μ-law 8 kHz


# --- the carrier side, in memory ---------------------------------------------------------------------------


def speech(seconds: float) -> bytes:
    return mulaw_tone(seconds, freq=300.0)


def silence(seconds: float) -> bytes:
    return mulaw_silence(seconds)


class PhoneLine:
    """A Twilio media stream seen from the carrier: the caller's audio in, the agent's audio played out."""

    def __init__(self, caller_audio: bytes, *, stop_after: float | None = None) -> None:
        self.caller_audio = caller_audio
        self.stop_after = stop_after  # the caller hangs up this long after the call starts
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.t0 = time.monotonic()
        self.received: list[tuple[float, dict[str, Any]]] = []  # everything the service sent, timestamped
        self.played_frames = 0
        self.first_frame_at: float | None = None
        self.clears: list[float] = []
        self.marks_echoed: list[str] = []
        self._playout: deque[bytes | str] = deque()
        self._wake = asyncio.Event()
        self._seq = 0
        self.dtmf_at: list[tuple[float, str]] = []

    def _event(self, event: str, **body: Any) -> dict[str, Any]:
        self._seq += 1
        return {
            "type": "websocket.receive",
            "text": _json.encode(
                {"event": event, "sequenceNumber": str(self._seq), "streamSid": "MZline", **body}
            ).decode(),
        }

    def start_message(self) -> str:
        return _json.encode(
            {
                "event": "start",
                "sequenceNumber": "1",
                "streamSid": "MZline",
                "start": {
                    "accountSid": "AC1",
                    "streamSid": "MZline",
                    "callSid": "CAline",
                    "tracks": ["inbound"],
                    "customParameters": {"call_id": "x", "token": "y"},
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
            }
        ).decode()

    async def receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] != "websocket.send":
            return
        data = msgspec.json.decode(message["text"])
        now = time.monotonic()
        self.received.append((now, data))
        kind = data["event"]
        if kind == "media":
            if self.first_frame_at is None:
                self.first_frame_at = now
            self._playout.append(base64.b64decode(data["media"]["payload"]))
        elif kind == "mark":
            self._playout.append(data["mark"]["name"])
        elif kind == "clear":
            self.clears.append(now)
            pending = [item for item in self._playout if isinstance(item, str)]
            self._playout.clear()
            for name in pending:
                self._echo(name)
        self._wake.set()

    def _echo(self, name: str) -> None:
        self.marks_echoed.append(name)
        self.inbox.put_nowait(self._event("mark", mark={"name": name}))

    def press(self, at: float, digit: str) -> None:
        self.dtmf_at.append((at, digit))

    def sent(self, kind: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, m) for t, m in self.received if m["event"] == kind]

    async def play(self) -> None:
        """Real-time playout: one frame per 20 ms; a mark is echoed once the audio before it has played."""
        start, n = 0.0, 0
        while True:
            if not self._playout:
                self._wake.clear()
                await self._wake.wait()
                start, n = time.monotonic(), 0
                continue
            item = self._playout.popleft()
            if isinstance(item, str):
                self._echo(item)
                continue
            n += 1
            self.played_frames += 1
            delay = start + n * 0.02 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    async def speak(self) -> None:
        """The caller: audio frames at real time, then silence, keypad presses on schedule, then stop."""
        audio = self.caller_audio
        start = time.monotonic()
        dtmf = sorted(self.dtmf_at)
        i = 0
        while True:
            elapsed = time.monotonic() - start
            while dtmf and dtmf[0][0] <= elapsed:
                _, digit = dtmf.pop(0)
                self.inbox.put_nowait(self._event("dtmf", dtmf={"track": "inbound_track", "digit": digit}))
            if self.stop_after is not None and elapsed >= self.stop_after:
                self.inbox.put_nowait(self._event("stop", stop={"accountSid": "AC1", "callSid": "CAline"}))
                return
            frame = audio[i * FRAME : (i + 1) * FRAME] or b"\xff" * FRAME
            if len(frame) < FRAME:
                frame += b"\xff" * (FRAME - len(frame))
            payload = base64.b64encode(frame).decode()
            self.inbox.put_nowait(
                self._event(
                    "media",
                    media={
                        "track": "inbound",
                        "chunk": str(i + 1),
                        "timestamp": str(i * 20),
                        "payload": payload,
                    },
                )
            )
            i += 1
            delay = start + i * 0.02 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)


class Timestamped:
    """Wraps an ASGI fake: remembers when each WebSocket text message left it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.sent: list[tuple[float, dict[str, Any]]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def timed_send(message: Any) -> None:
            await send(message)
            if message["type"] == "websocket.send" and message.get("text"):
                self.sent.append((time.monotonic(), msgspec.json.decode(message["text"])))

        await self.app(scope, receive, timed_send)


# --- services without a database ---------------------------------------------------------------------------


@dataclass
class Fakes:
    deepgram: FakeDeepgram
    openai: FakeOpenAI
    tts: FakeTts
    stt_wire: Timestamped
    url: str = ""


class MemoryServices(RuntimeServices):
    """RuntimeServices with the call's setup from dicts and the records kept in memory."""

    def __init__(
        self, runtime: Runtime, config: EngineConfig, agent: dict[str, Any], lead: dict[str, Any] | None
    ) -> None:
        super().__init__(runtime, config)
        self.agent = agent
        self.lead = lead
        self.saved: list[tuple[list[dict[str, Any]], dict[str, Any]]] = []
        self.transfers: list[str] = []
        self.transfer_error: Exception | None = None
        self.config_override: AgentConfig | None = None  # bypasses the API's validation limits

    async def setup(self, call: CallInfo) -> CallSetup:
        setup = self.build_setup(call, self.agent, None, self.lead)
        if self.config_override is not None:
            setup.config = self.config_override
        return setup

    async def save(self, call: CallInfo, transcripts: list[dict[str, Any]], metadata: Any) -> None:
        self.saved.append((transcripts, dict(metadata)))

    async def transfer(self, call: CallInfo, to_e164: str) -> None:
        if self.transfer_error is not None:
            raise self.transfer_error
        self.transfers.append(to_e164)


@dataclass
class Result:
    line: PhoneLine
    services: MemoryServices
    media: MediaSession
    session: CallSession
    transcripts: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def usage(self) -> dict[str, Any]:
        return self.metadata["usage"]

    @property
    def conversation(self) -> dict[str, Any]:
        return self.metadata["conversation"]

    def texts(self, role: str | None = None) -> list[str]:
        return [t["text"] for t in self.transcripts if role is None or t["role"] == role]


@contextlib.asynccontextmanager
async def fakes(
    *,
    script: Sequence[str] = (),
    replies: Sequence[Any] = (),
    tts_faults: Sequence[Fault] = (),
    seconds_per_char: float = 0.01,
    **deepgram: Any,
) -> AsyncIterator[Fakes]:
    dg = FakeDeepgram(script=list(script), **deepgram)
    wire = Timestamped(dg)
    oai = FakeOpenAI(replies=list(replies))
    tts = FakeTts(seconds_per_char=seconds_per_char, chunk_ms=40, faults=list(tts_faults))
    router = PathRouter({"/v1/listen": wire, "/v1/speak": tts, "/v1/chat": oai})
    async with LocalServer(router) as srv:
        yield Fakes(dg, oai, tts, wire, srv.http_url)


def call_info(direction: str = "outbound") -> CallInfo:
    return CallInfo(
        tenant_id=uuid.uuid4(),
        call_id=uuid.uuid4(),
        call_created_at=datetime.now(UTC),
        agent_id=1,
        lead_id=None,
        direction=direction,
        variables={"product": "the spring menu"},
        voice_id=None,
        provider="twilio",
        provider_call_id="CAline",
        from_e164="+15550001111",
        to_e164="+442071838750",
    )


def agent(starter: str | None = "Hi there.", **config: Any) -> dict[str, Any]:
    return {
        "name": "Ana",
        "agent_instructions": "You book tables for {{product}}.",
        "system_instructions": None,
        "outbound_starter_prompt": starter,
        "inbound_starter_prompt": "Hello, thanks for calling.",
        "language": "en-US",
        "config": msgspec.to_builtins(AgentConfig(**config)),
    }


ENGINE = EngineConfig(
    llm_first_token_timeout=1.0,
    llm_stall_timeout=1.0,
    tts_first_byte_timeout=1.0,
    tts_stall_timeout=1.0,
    stt_connect_timeout=2.0,
    transfer_stop_timeout=0.5,
    playback_grace_seconds=0.5,
)


async def run_call(
    f: Fakes,
    caller_audio: bytes,
    *,
    agent_row: dict[str, Any],
    stop_after: float = 12.0,
    lead: dict[str, Any] | None = None,
    dtmf: Sequence[tuple[float, str]] = (),
    config: EngineConfig = ENGINE,
    direction: str = "outbound",
    transfer_error: Exception | None = None,
    within: float = 20.0,
    config_override: AgentConfig | None = None,
    during: Callable[[CallSession, PhoneLine], Awaitable[None]] | None = None,
) -> Result:
    settings = load_settings(
        env={},
        deepgram_api_key="test-key",
        deepgram_base_url=f.url.replace("http", "ws"),
        deepgram_http_url=f.url,
        openai_api_key="test-key",
        openai_base_url=f"{f.url}/v1",
        default_tts_provider="deepgram",
        default_tts_voice="aura-2-thalia-en",
    )
    async with AsyncExitStack() as stack, httpx.AsyncClient() as http:
        runtime = Runtime(  # type: ignore[arg-type]
            settings=settings, dsn="", pool=None, http=http, exit_stack=stack,
            call_listeners=composition.call_listeners(), billing_listeners=composition.billing_listeners(),
        )
        services = MemoryServices(runtime, config, agent_row, lead)
        services.transfer_error = transfer_error
        services.config_override = config_override
        line = PhoneLine(caller_audio, stop_after=stop_after)
        for at, digit in dtmf:
            line.press(at, digit)
        codec = TwilioCodec()
        started = codec.decode(line.start_message())
        media = MediaSession(
            call=call_info(direction), codec=codec, started=started, receive=line.receive, send=line.send
        )
        session = CallSession(media, services)
        async with asyncio.timeout(within), asyncio.TaskGroup() as tg:
            player = tg.create_task(line.play())
            caller = tg.create_task(line.speak())
            # Created before the media session's own tasks, so it runs (and can attach observers) first.
            driver = tg.create_task(during(session, line)) if during is not None else None
            await media.run(session)
            player.cancel()
            caller.cancel()
            if driver is not None:
                driver.cancel()
    assert len(services.saved) == 1, "the records are written exactly once"
    transcripts, metadata = services.saved[0]
    return Result(line, services, media, session, transcripts, metadata)


def chat_messages(f: Fakes, index: int) -> list[dict[str, Any]]:
    return f.openai.chat_requests()[index].json["messages"]  # type: ignore[no-any-return]
