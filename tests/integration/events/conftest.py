"""The events domain's fixtures: the delivery jobs a test leaves queued are dropped after it; for the webhook
security tests, the API's strict target checks (`strict_api`) and two worker runtimes that refuse
(`strict_runtime`) or allow (`local_runtime`) private addresses at delivery."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import pytest

from tests.support.pipeline import drop_jobs
from tests.support.webhooks import SECRETS_KEY, with_settings
from voice_service.composition import open_runtime
from voice_service.events.outbox import DELIVER_JOB
from voice_service.runtime import Runtime
from voice_service.settings import Settings


@pytest.fixture(autouse=True)
async def _no_leftover_jobs(admin_conn: asyncpg.Connection) -> AsyncIterator[None]:
    yield
    await drop_jobs(admin_conn, DELIVER_JOB)


@pytest.fixture
def strict_api(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The app refuses plain http and private addresses, and encrypts signing secrets (for this test)."""
    with_settings(
        app,
        monkeypatch,
        webhook_allow_insecure_targets=False,
        webhook_allow_private_targets=False,
        secrets_encryption_key=SECRETS_KEY,
    )


@pytest.fixture(scope="module")
async def strict_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """Plain http allowed (the receivers are local), private addresses not."""
    changes = {"webhook_allow_insecure_targets": True, "secrets_encryption_key": SECRETS_KEY}
    async with open_runtime(msgspec.structs.replace(settings, **changes)) as rt:
        yield rt


@pytest.fixture(scope="module")
async def local_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """Plain http and private addresses allowed (the receivers listen on 127.0.0.1)."""
    changes = {
        "webhook_allow_insecure_targets": True,
        "webhook_allow_private_targets": True,
        "secrets_encryption_key": SECRETS_KEY,
    }
    async with open_runtime(msgspec.structs.replace(settings, **changes)) as rt:
        yield rt
