"""The composition root's wiring: every listener is required and comes from the domain that reacts, and the job
runner serves every job the domains enqueue."""

from __future__ import annotations

import dataclasses

import pytest

from voice_service import composition, workers
from voice_service.batches import dispatcher
from voice_service.billing import pipeline
from voice_service.billing.listeners import BillingListeners
from voice_service.call_analysis.service import ANALYSIS_JOB
from voice_service.calls.listeners import CallListeners
from voice_service.events.outbox import DELIVER_JOB
from voice_service.recordings.purge import PURGE_JOB
from voice_service.recordings.service import ENCODE_JOB
from voice_service.webcalls.service import EXPIRE_JOB


@pytest.mark.parametrize("listeners", [CallListeners, BillingListeners])
def test_a_listener_left_out_is_an_error_not_a_skip(listeners: type) -> None:
    fields = dataclasses.fields(listeners)
    assert fields and all(
        f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING for f in fields
    )
    with pytest.raises(TypeError):
        listeners(**{f.name: pipeline.on_call_progress for f in fields[1:]})


def test_each_listener_is_the_reacting_domains_function() -> None:
    calls = composition.call_listeners()
    owners = {name: getattr(calls, name).__module__ for name in (f.name for f in dataclasses.fields(calls))}
    assert owners == {
        "on_answered": "voice_service.batches.hooks",
        "on_final": "voice_service.batches.hooks",
        "on_progress": "voice_service.billing.pipeline",
        "on_provider_price": "voice_service.billing.pipeline",
        "schedule_finalize_timeout": "voice_service.billing.pipeline",
        "reserve_call": "voice_service.billing.wallet",
    }
    assert composition.billing_listeners().on_call_billed.__module__ == "voice_service.call_analysis.service"


def test_the_runner_serves_every_job_the_domains_enqueue() -> None:
    registry = workers.job_registry()
    enqueued = {dispatcher.JOB, pipeline.POST_CALL_JOB, pipeline.RECONCILE_JOB, ANALYSIS_JOB, DELIVER_JOB,
                ENCODE_JOB, PURGE_JOB, EXPIRE_JOB}
    assert set(registry) == enqueued
    # Names stored with queued jobs in the database: a rename would strand the jobs already queued.
    assert ANALYSIS_JOB == "billing.analyze_call"
    assert {name: spec.concurrency for name, spec in registry.items()} == {
        "batches.dispatch": 0,
        "billing.post_call": 32,
        "billing.reconcile": 8,
        "billing.analyze_call": 32,
        "events.deliver": 50,
        "recordings.encode": 2,
        "recordings.purge": 1,
        "webcalls.expire": 8,
    }
