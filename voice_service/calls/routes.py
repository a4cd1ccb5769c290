"""HTTP routes for calls (filled in by the issue that builds this domain)."""

from __future__ import annotations

from typing import Any

route_handlers: list[Any] = []
