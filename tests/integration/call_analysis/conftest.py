"""The call-analysis domain's fixtures: the runtime's analysis LLM is OpenAI at a URL mocked with respx (`openai`),
with the job's own retry policy, and the jobs a test leaves queued are dropped after it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
import respx

from providers.llm.openai import OpenAiLlm
from tests.support.analysis import BASE
from tests.support.pipeline import drop_jobs
from voice_service.billing.pipeline import POST_CALL_JOB
from voice_service.call_analysis.service import ANALYSIS_JOB, AnalysisPolicy
from voice_service.runtime import Runtime


@pytest.fixture(scope="module")
def runtime(runtime: Runtime) -> Runtime:
    # No SDK-level retries: the job's own retry policy is what is under test.
    runtime.analysis_llm = OpenAiLlm("sk-test", base_url=BASE, http_client=runtime.http, json_max_retries=0)
    runtime.analysis_policy = AnalysisPolicy(base_delay_seconds=30, factor=2, max_failures=3)
    return runtime


@pytest.fixture(autouse=True)
async def _no_leftover_jobs(admin_conn: asyncpg.Connection) -> AsyncIterator[None]:
    yield
    await drop_jobs(admin_conn, POST_CALL_JOB, ANALYSIS_JOB, "events.deliver")


@pytest.fixture
def openai() -> Iterator[Any]:
    """The mocked chat-completions route: a test sets its response (`openai.mock(return_value=…)`)."""
    with respx.mock(base_url=BASE, assert_all_called=False, assert_all_mocked=True) as mock:
        yield mock.post("/chat/completions")
