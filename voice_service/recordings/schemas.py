"""Recording schemas: the tenant's recording settings (retention), as shown and as set."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

__all__ = ["RecordingSettings", "RecordingSettingsUpdate"]

RetentionDays = Annotated[int, Meta(ge=1, le=36500, description="delete recordings this many days after the call")]


class RecordingSettings(msgspec.Struct, omit_defaults=False):
    retention_days: int | None  # null: recordings are kept until deleted
    updated_at: datetime | None


class RecordingSettingsUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """PUT replaces the settings: `retention_days` null (or absent) keeps recordings until deleted."""

    retention_days: RetentionDays | None = None
