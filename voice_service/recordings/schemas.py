"""Recording schemas: the tenant's recording settings (retention), as shown and as set."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

from voice_service.openapi import example

__all__ = ["RecordingSettings", "RecordingSettingsUpdate"]

RetentionDays = Annotated[int, Meta(ge=1, le=36500, description="delete recordings this many days after the call")]


@example({"retention_days": 90, "updated_at": "2025-03-01T09:00:00Z"})
class RecordingSettings(msgspec.Struct, omit_defaults=False):
    """The tenant's recording settings."""

    retention_days: Annotated[int | None, Meta(description="Recordings are deleted this many days after their "
                                                           "call; null: kept until deleted.")]
    updated_at: datetime | None


@example({"retention_days": 90})
class RecordingSettingsUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """PUT replaces the settings: `retention_days` null (or absent) keeps recordings until deleted."""

    retention_days: RetentionDays | None = None
