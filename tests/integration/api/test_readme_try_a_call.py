"""The README's "Try a call with no carrier account", run as written: `voice-service serve` on a fresh database (it
prints the bootstrap key), `voice-service simulate serve --talk-seconds 3`, and the section's curl lines executed by
bash, one by one, with only the ports and the ids the section asks the reader to fill in substituted. Then what the
section says the reader sees is checked: with speech and LLM providers (the local fakes, reached through
DEEPGRAM_BASE_URL / OPENAI_BASE_URL as the README suggests), and without them (setup_failed, still billed).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from tests.fakes.server import LocalServer, PathRouter
from tests.support.conversation import Fakes, analysis_reply
from tests.support.database import swap_db

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
_dec = msgspec.json.Decoder()


def readme_section() -> tuple[str, list[str], str]:
    """(the simulator command, the curl session's lines, the section's prose) of the README section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Try a call with no carrier account", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 2, "the section has the simulator's block and the session's block"
    [simulator] = [line for line in blocks[0].splitlines() if line.strip()]
    session = [line for line in blocks[1].splitlines() if line.strip()]
    return simulator, session, re.sub(r"```sh\n.*?```", "", section, flags=re.S)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def process(args: list[str], env: dict[str, str], log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(*args, env=env, cwd=ROOT, stdout=out, stderr=out)
        try:
            yield proc
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 15)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


async def wait_until(check: Any, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what}: not within {within} s"
        await asyncio.sleep(0.2)


@pytest.fixture
async def fresh_dsn(pg_server_dsn: str) -> AsyncIterator[str]:
    """A database of its own, as a first `make run` has: the bootstrap tenant is the first, the agent gets id 1."""
    name = f"voice_readme_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield swap_db(pg_server_dsn, name)
    admin = await asyncpg.connect(pg_server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    f = Fakes()
    f.openai.responder = analysis_reply
    router = PathRouter({"/v1/listen": f.deepgram, "/v1/speak": f.tts, "/v1/chat": f.openai})
    async with LocalServer(router) as srv:
        f.url = srv.http_url
        yield f


@pytest.mark.parametrize("providers", [True, False], ids=["with-providers", "without-providers"])
async def test_the_readme_try_a_call_section_is_true(
    fresh_dsn: str, fakes: Fakes, tmp_path: Path, providers: bool
) -> None:
    simulator_line, session, prose = readme_section()
    port, sim_port = _free_port(), _free_port()
    service = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATABASE_URL": fresh_dsn,
        "DATA_DIR": str(tmp_path / "data"),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "PUBLIC_BASE_URL": service,
        "SIMULATOR_BASE_URL": f"http://127.0.0.1:{sim_port}",
        "LOG_JSON": "false",
        "LOG_LEVEL": "WARNING",
        "DRAIN_TIMEOUT_SECONDS": "2",
    }
    for name in ("DEEPGRAM_API_KEY", "OPENAI_API_KEY", "DEEPGRAM_BASE_URL", "DEEPGRAM_HTTP_URL", "OPENAI_BASE_URL"):
        env.pop(name, None)
    if providers:
        fakes.reset(script=["Hi! Who is calling?"], replies=["This is the demo agent. Have a nice day."])
        env.update(
            DEEPGRAM_API_KEY="test-key",
            DEEPGRAM_BASE_URL=fakes.url.replace("http://", "ws://"),
            DEEPGRAM_HTTP_URL=fakes.url,
            OPENAI_API_KEY="test-key",
            OPENAI_BASE_URL=f"{fakes.url}/v1",
        )
    serve_log, sim_log = tmp_path / "serve.log", tmp_path / "simulator.log"

    # `make run` is `voice-service serve`; the simulator line runs as written, on a free port.
    simulator_args = simulator_line.split("#", 1)[0].split()
    assert simulator_args[0] == ".venv/bin/voice-service" and simulator_args[1:3] == ["simulate", "serve"]
    async with (
        process([str(BIN / "voice-service"), "serve"], env, serve_log) as serve,
        process([str(BIN / "voice-service"), *simulator_args[1:], "--port", str(sim_port)], env, sim_log),
        httpx.AsyncClient(base_url=service) as client,
    ):

        async def up() -> bool:
            assert serve.returncode is None, serve_log.read_text()
            with contextlib.suppress(httpx.TransportError):
                return (await client.get("/health")).status_code == 200
            return False

        await wait_until(up, 60, "voice-service serve up")
        printed = re.search(r"owner API key \(shown once, store it now\): (vsk_\S+)", serve_log.read_text())
        assert printed, serve_log.read_text()
        key = printed.group(1)

        ids: dict[str, str] = {}

        async def run(line: str) -> Any:
            """One line of the session, in bash, after the lines that set its variables."""
            line = line.replace("localhost:8000", f"localhost:{port}")
            for name, value in ids.items():
                line = line.replace(f"<{name} id>", value)
            assert "<" not in line.split("#", 1)[0], f"unfilled placeholder in {line!r}"
            prelude = "\n".join(lines_before_curl).replace("vsk_…", key)
            proc = await asyncio.create_subprocess_exec(
                "bash", "-c", f"{prelude}\n{line}", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            out, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
            return _dec.decode(out)

        lines_before_curl = [line for line in session if not line.startswith("curl")]
        assert lines_before_curl[0].startswith("KEY=vsk_…")
        curls = [line for line in session if line.startswith("curl")]
        assert len(curls) == 5

        agent = await run(curls[0])
        ids["agent"] = str(agent["id"])
        number = await run(curls[1])
        ids["number"] = number["id"]
        call = await run(curls[2])
        ids["call"] = call["id"]
        assert call["status"] in ("pending", "ringing", "ongoing"), call

        async def billed() -> Any:
            shown = await run(curls[3])
            return shown if shown["status"] == "ended" and shown["cost"] is not None else None

        shown = await wait_until(billed, 60, "the call ended and billed")

        async def both_events() -> Any:
            events = await run(curls[4])
            kinds = {e["type"] for e in events["items"] if e["aggregate_id"] == ids["call"]}
            return kinds >= {"voice_call.cost_recorded", "voice_call.analyzed"}

        await wait_until(both_events, 60, "the call's cost_recorded and analyzed events")

        async def printed_by_simulator() -> bool:
            return ids["call"] in sim_log.read_text()

        await wait_until(printed_by_simulator, 10, "the simulator printed the call it played")

    # What the prose says the reader sees.
    assert '`"status": "ended"`' in prose and shown["status"] == "ended"
    assert "`duration_seconds`" in prose and isinstance(shown["duration_seconds"], int)
    assert "`cost` and `currency`" in prose and Decimal(shown["cost"]) >= 0 and shown["currency"] == "USD"
    assert Decimal(shown["cost"]) == sum(Decimal(i["cost"]) for i in shown["cost_breakdown"])
    for item in shown["cost_breakdown"]:
        assert {"category", "quantity", "unit", "unit_price", "cost"} <= set(item)
    categories = [i["category"] for i in shown["cost_breakdown"]]
    if providers:
        assert "two seconds later" in prose and shown["duration_seconds"] >= 3
        assert "(`telephony`,\n`stt`, `llm`, `tts`)" in prose and set(categories) == {"telephony", "stt", "llm", "tts"}
        assert "the agent greets the callee with `\"Hello Ann!\"`" in prose
        assert ("agent", "Hello Ann!") in [(t["role"], t["text"]) for t in shown["transcripts"]]
        assert {t["role"] for t in shown["transcripts"]} == {"agent", "user"}
        for turn in shown["transcripts"]:
            assert {"role", "text", "start_ms", "end_ms", "interrupted"} <= set(turn)
    else:
        assert '`"end_reason": "setup_failed"`' in prose and shown["end_reason"] == "setup_failed"
        assert "`end_reason_detail` names the missing settings" in prose
        assert "DEEPGRAM_API_KEY" in shown["end_reason_detail"] and "OPENAI_API_KEY" in shown["end_reason_detail"]
        assert "a `telephony` item" in prose and categories == ["telephony"]
        assert shown["transcripts"] == []
        assert "warns at start-up,\nnaming the missing settings" in prose
        warned = [line for line in serve_log.read_text().splitlines() if "providers are not configured" in line]
        assert len(warned) == 1 and "DEEPGRAM_API_KEY" in warned[0] and "OPENAI_API_KEY" in warned[0]
