"""The property-based API fuzzer schemathesis, run against `voice-service serve` with a real owner key, over every
operation of /schema/openapi.json: no request it makes may get a 5xx. Bounded (examples per operation, a time budget,
a fixed seed) so it takes a few minutes at most; what it found earlier is pinned below as plain regression tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from voice_service.simulator import Simulator

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
TIME_BUDGET_SECONDS = 150


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def serve(dsn: str, tmp_path: Path, port: int, simulator: Simulator, sid: str) -> AsyncIterator[str]:
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        # The built-in simulator is the carrier: numbers registered with it are checked on its account.
        "SIMULATOR_BASE_URL": simulator.base_url,
        "SIMULATOR_ACCOUNT_SID": sid,
        "SIMULATOR_AUTH_TOKEN": simulator.twilio_accounts[sid],
        "DATABASE_URL": dsn,
        "DATA_DIR": str(tmp_path / "data"),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "PUBLIC_BASE_URL": url,
        "LOG_JSON": "false",
        "LOG_LEVEL": "ERROR",
        "RUN_WORKERS": "false",
        "CONVERSATION_ENGINE": "false",
        "DRAIN_TIMEOUT_SECONDS": "2",
    }
    log = (tmp_path / "serve.log").open("wb")
    proc = await asyncio.create_subprocess_exec(str(BIN / "voice-service"), "serve", env=env, cwd=ROOT,
                                                stdout=log, stderr=log)
    try:
        async with httpx.AsyncClient(base_url=url) as client:
            deadline = time.monotonic() + 60
            while True:
                assert proc.returncode is None, (tmp_path / "serve.log").read_text()
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/health")).status_code == 200:
                        break
                assert time.monotonic() < deadline, "voice-service serve did not come up"
                await asyncio.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        log.close()


async def test_the_fuzzer_finds_no_server_error(pg_dsn: str, tenant: Any, tmp_path: Path, settings: Any) -> None:
    port = free_port()
    async with (Simulator.from_settings(settings, service_url=f"http://127.0.0.1:{port}") as simulator,
                serve(pg_dsn, tmp_path, port, simulator, settings.simulator_account_sid) as url):
        proc = await asyncio.create_subprocess_exec(
            str(BIN / "st"), "run", f"{url}/schema/openapi.json",
            "--checks", "not_a_server_error",
            "--header", f"Authorization: Bearer {tenant.key}",
            # The coverage phase trips over a Hypothesis internals error in this schemathesis release; the
            # example, fuzzing and stateful phases (links between operations) run.
            "--phases", "examples,fuzzing,stateful",
            "--max-examples", "8",
            "--max-time", str(TIME_BUDGET_SECONDS),
            "--seed", "20251",
            "--workers", "2",
            "--request-timeout", "15",
            "--no-color",
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
    report = out.decode(errors="replace")
    server_log = (tmp_path / "serve.log").read_text()
    (ROOT / ".artifacts").mkdir(exist_ok=True)
    (ROOT / ".artifacts" / "schemathesis-report.txt").write_text(report + "\n--- server log ---\n" + server_log)
    assert "Server error" not in report and "unhandled error" not in server_log, report[-6000:] + server_log[-4000:]
    assert "Tested:" in report, report[-3000:]


@pytest.mark.parametrize("value", ["-9341289547312519970816", "9223372036854775808", "0"])
async def test_an_out_of_range_agent_filter_is_a_4xx(client: Any, tenant: Any, value: str) -> None:
    """Found by the fuzzer: `GET /v1/calls?agent_id=` beyond a bigint was a 500 (the database refused the value)."""
    r = await client.get("/v1/calls", params={"agent_id": value}, headers=tenant.headers)
    assert r.status_code == 400 and "agent_id" in r.text, r.text


@pytest.mark.parametrize("value", ["-459223949772489851142144", "9223372036854775808", "0"])
async def test_an_out_of_range_agent_id_is_a_4xx(client: Any, tenant: Any, value: str) -> None:
    """`/v1/agents/{agent_id}` beyond a bigint: no such agent (a 4xx, never the database's error)."""
    for method in ("GET", "DELETE"):
        r = await client.request(method, f"/v1/agents/{value}", headers=tenant.headers)
        assert r.status_code in (400, 404) and r.status_code < 500, r.text
        if r.status_code == 400:
            assert "agent_id" in r.text


async def test_an_out_of_range_agent_id_in_a_body_is_a_4xx(client: Any, tenant: Any) -> None:
    """Found by the fuzzer: an agent id beyond a bigint in a request body reached the database (500)."""
    number = await client.post(
        "/v1/numbers", json={"phone_number": "+14155550177", "provider": "twilio"}, headers=tenant.headers
    )
    assert number.status_code == 201, number.text
    huge = -459223949772489851142144
    requests = [
        ("POST", "/v1/calls", {"agent_id": huge, "from_number_id": number.json()["id"], "to": "+14155550188"}),
        ("POST", "/v1/batches", {"agent_id": 2**63, "from_number_id": number.json()["id"],
                                 "entries": [{"phone": "+14155550189"}]}),
        ("POST", "/v1/numbers", {"phone_number": "+14155550178", "provider": "twilio", "default_agent_id": huge}),
        ("PATCH", f"/v1/numbers/{number.json()['id']}", {"default_agent_id": 2**63}),
        ("PUT", "/v1/voice-profiles/me", {"default_agent_id": huge}),
    ]
    for method, path, body in requests:
        r = await client.request(method, path, json=body, headers=tenant.headers)
        assert 400 <= r.status_code < 500, (method, path, r.status_code, r.text)
