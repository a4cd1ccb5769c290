"""The user's time zone and the day boundaries the console computes in it.

The browser reports its IANA zone in the `console_tz` cookie (set by static/console.js); anything missing or unknown
falls back to UTC. "Today" and a date filter are local days, turned into UTC instants for the queries.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from litestar.connection import ASGIConnection

TZ_COOKIE = "console_tz"


@lru_cache(maxsize=512)
def _zone(name: str) -> tzinfo | None:
    if not name or len(name) > 64 or ".." in name or name.startswith("/"):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def user_tz(connection: ASGIConnection[Any, Any, Any, Any]) -> tzinfo:
    return _zone(connection.cookies.get(TZ_COOKIE, "")) or UTC


def tz_name(tz: tzinfo) -> str:
    return getattr(tz, "key", None) or "UTC"


def day_start(day: date, tz: tzinfo) -> datetime:
    """The first instant of `day` in `tz` (as an aware datetime; DST-safe)."""
    return datetime.combine(day, time.min, tzinfo=tz)


def day_bounds(day: date, tz: tzinfo) -> tuple[datetime, datetime]:
    return day_start(day, tz), day_start(day + timedelta(days=1), tz)


def today(tz: tzinfo) -> date:
    return datetime.now(tz).date()
