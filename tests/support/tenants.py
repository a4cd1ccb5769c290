"""A tenant made for one test: its id and an owner API key (the `tenant` and `make_tenant` fixtures give these)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass
class Tenant:
    id: uuid.UUID
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}
