"""Batch rules over plain data (no SQL, no I/O): calling windows, time zones, outcomes and retries, pacing.

Everything time-dependent takes `now` as an argument, so the dispatcher's clock can be injected in tests.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

import phonenumbers
from phonenumbers import timezone as pn_timezone
from phonenumbers import tzdata

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# Provider account defaults for calls per second (Twilio's default account limit is 1 CPS; Vonage documents the
# same default for outbound calls). The simulator has none.
PROVIDER_DEFAULT_CPS: Mapping[str, float] = {"twilio": 1.0, "vonage": 1.0, "simulator": 0.0}

DEFAULT_RETRY_ON = ("no_answer", "busy")
DEFAULT_BACKOFF_SECONDS = (900,)

# Which retry_on reason an attempt outcome counts as (outcomes not listed are never retried).
RETRY_REASON = {
    "no_answer": "no_answer",
    "busy": "busy",
    "failed": "failed",
    "dispatch_interrupted": "failed",
    "voicemail": "voicemail",
}


@functools.cache
def _zone(name: str) -> zoneinfo.ZoneInfo | None:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


def zone(name: str) -> zoneinfo.ZoneInfo | None:
    """The IANA zone, or None when the name is not one (keys like 'localtime' or paths are refused)."""
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        return None
    return _zone(name)


_number_zones: dict[str, str | None] = {}


def number_zone(phone_e164: str) -> str | None:
    """The one IANA zone phonenumbers gives for the number, or None (unknown or several)."""
    # phonenumbers looks zones up by the number's longest known prefix (TIMEZONE_LONGEST_PREFIX digits), so
    # the answer is cached per prefix: a 10,000-entry batch computes a handful instead of 10,000.
    key = phone_e164[: 1 + tzdata.TIMEZONE_LONGEST_PREFIX]
    try:
        return _number_zones[key]
    except KeyError:
        pass
    try:
        pn = phonenumbers.parse(phone_e164, None)
    except phonenumbers.NumberParseException:
        return None
    zones = pn_timezone.time_zones_for_number(pn)
    found = None
    if len(zones) == 1 and zones[0] != pn_timezone.UNKNOWN_TIMEZONE and zone(zones[0]) is not None:
        found = str(zones[0])
    if len(_number_zones) > 100_000:
        _number_zones.clear()
    _number_zones[key] = found
    return found


def timezone_for(phone_e164: str, lead_timezone: str | None, batch_timezone: str) -> str:
    """The zone an entry's calling window is evaluated in: the lead's, else the number's (when phonenumbers
    knows exactly one for it), else the batch's."""
    if lead_timezone and zone(lead_timezone) is not None:
        return lead_timezone
    return number_zone(phone_e164) or batch_timezone


def e164(value: str) -> str | None:
    """The number in E.164 if it is a valid international number, else None. Like phones.parse_phone without the
    region lookup (a third of its cost, which matters for 10,000 entries)."""
    if not value.startswith("+") or len(value) > 32:
        return None
    try:
        pn = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(pn):
        return None
    return phonenumbers.format_number(pn, phonenumbers.PhoneNumberFormat.E164)


@dataclass(frozen=True, slots=True)
class Window:
    days: frozenset[int]  # ISO weekday - 1 (0 = Monday)
    start: time
    end: time  # exclusive; time.max stands for 24:00

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | None) -> Window | None:
        if not value:
            return None
        days = value.get("days") or list(WEEKDAYS)
        return cls(
            frozenset(WEEKDAYS.index(d) for d in days), parse_hhmm(value["start"]), parse_hhmm(value["end"])
        )

    def is_open(self, local: datetime) -> bool:
        return local.weekday() in self.days and self.start <= local.time() < self.end

    def next_open(self, now: datetime, tz: zoneinfo.ZoneInfo) -> datetime:
        """The first instant >= now at which the window is open in `tz` (now itself when it is open)."""
        local = now.astimezone(tz)
        if self.is_open(local):
            return now
        for days_ahead in range(8):
            day = local.date() + timedelta(days=days_ahead)
            if day.weekday() not in self.days:
                continue
            opening = datetime.combine(day, self.start, tzinfo=tz)
            if opening.astimezone(UTC) > now:
                return opening.astimezone(UTC)
        raise ValueError("calling window has no open day")  # validated on input: days is never empty


def parse_hhmm(value: str) -> time:
    if value == "24:00":
        return time.max
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def check_window(value: Mapping[str, Any]) -> str | None:
    """A problem with a calling window (as the API received it), or None."""
    try:
        start, end = parse_hhmm(value["start"]), parse_hhmm(value["end"])
    except (KeyError, ValueError):
        return "start and end must be HH:MM (00:00-24:00)"
    if end <= start:
        return "end must be later than start (windows that cross midnight are not supported; use two batches)"
    days = value.get("days")
    if days is not None and not days:
        return "days must name at least one day"
    return None


@dataclass(frozen=True, slots=True)
class WindowState:
    open_zones: list[str]
    # The next opening among the zones that are closed now (None when none is closed).
    next_open: datetime | None


def window_state(window: Window | None, zones: Iterable[str], now: datetime) -> WindowState:
    zones = list(zones)
    if window is None:
        return WindowState(zones, None)
    open_zones: list[str] = []
    nxt: datetime | None = None
    for name in zones:
        tz = zone(name) or zoneinfo.ZoneInfo("UTC")
        if window.is_open(now.astimezone(tz)):
            open_zones.append(name)
        else:
            at = window.next_open(now, tz)
            nxt = at if nxt is None or at < nxt else nxt
    return WindowState(open_zones, nxt)


# --- outcomes and retries ---


# End reasons of an answered call where the service, not the callee, ended it before any conversation: the
# conversation could not be set up (providers not configured, agent unreadable), or a provider failed before the
# agent said anything. Such a call never spoke to the callee: the attempt failed.
SETUP_FAILURES = frozenset({"setup_failed"})
SERVICE_FAILURES = frozenset({"setup_failed", "stt_failed", "llm_failed", "tts_failed"})


def classify(status: str, answered_by: str | None, end_reason: str | None, *, agent_spoke: bool = True) -> str:
    """The outcome of one attempt from the call's terminal status (see schemas.EntryOutcome for the values).

    `agent_spoke`: the transcript has an agent turn (the callee heard the agent)."""
    if status == "ended":
        if end_reason in SETUP_FAILURES or (end_reason in SERVICE_FAILURES and not agent_spoke):
            return "failed"
        if answered_by and (answered_by.startswith("machine") or answered_by == "fax"):
            return "voicemail"
        return "answered"
    if status == "declined":
        return "busy" if end_reason in ("busy", "rejected") else "no_answer"
    if status == "cancelled":
        return "cancelled"
    if end_reason == "dispatch_interrupted":
        return "dispatch_interrupted"
    return "failed"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 1
    retry_on: tuple[str, ...] = DEFAULT_RETRY_ON
    backoff_seconds: tuple[int, ...] = DEFAULT_BACKOFF_SECONDS

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | None) -> RetryPolicy:
        value = value or {}
        return cls(
            int(value.get("max_attempts", 1)),
            tuple(value.get("retry_on", DEFAULT_RETRY_ON)),
            tuple(value.get("backoff_seconds", DEFAULT_BACKOFF_SECONDS)) or DEFAULT_BACKOFF_SECONDS,
        )

    def backoff(self, attempts_made: int) -> timedelta:
        """Wait before attempt `attempts_made + 1` (the last interval repeats)."""
        i = min(max(attempts_made - 1, 0), len(self.backoff_seconds) - 1)
        return timedelta(seconds=self.backoff_seconds[i])


@dataclass(frozen=True, slots=True)
class AfterAttempt:
    status: str  # the entry's new status: completed, failed or retrying
    next_attempt_at: datetime | None = None


def after_attempt(
    outcome: str, *, attempts: int, policy: RetryPolicy, do_not_call: bool, batch_status: str, now: datetime
) -> AfterAttempt:
    """What an entry becomes once an attempt has ended with `outcome`."""
    if outcome in ("answered", "voicemail"):
        final = "completed"
    elif outcome == "cancelled" and batch_status == "cancelled":
        final = "cancelled"
    else:
        final = "failed"
    reason = RETRY_REASON.get(outcome)
    if (
        reason is not None
        and reason in policy.retry_on
        and attempts < policy.max_attempts
        and not do_not_call
        and batch_status in ("scheduled", "running", "paused")
    ):
        return AfterAttempt("retrying", now + policy.backoff(attempts))
    return AfterAttempt(final)


# --- pacing ---


@dataclass(frozen=True, slots=True)
class Slot:
    number_index: int
    at: datetime


def plan_slots(
    n_wanted: int,
    *,
    numbers: Sequence[Sequence[str]],
    rates: Mapping[str, float],
    next_free: dict[str, datetime | None],
    start_index: int,
    now: datetime,
    horizon: timedelta,
) -> list[Slot]:
    """Start times for up to `n_wanted` calls, rotating over `numbers` (each a list of pacing keys) from
    `start_index`. A call takes the earliest time all its keys are free; calls that would start later than
    now + horizon are not planned. `next_free` is updated in place (key -> next free time)."""
    slots: list[Slot] = []
    if not numbers:
        return slots
    blocked: set[int] = set()
    i = start_index
    limit = now + horizon
    while len(slots) < n_wanted and len(blocked) < len(numbers):
        idx = i % len(numbers)
        i += 1
        if idx in blocked:
            continue
        keys = [k for k in numbers[idx] if rates.get(k, 0) > 0]
        at = max([now, *(free for k in keys if (free := next_free.get(k)) is not None)])
        if at > limit:
            blocked.add(idx)
            continue
        for k in keys:
            next_free[k] = at + timedelta(seconds=1 / rates[k])
        slots.append(Slot(idx, at))
    return slots
