"""Shared SQL for the plain CRUD tables: tenant-scoped get/insert/update/soft-delete and keyset pages.

Domain repositories call these with their own table and column lists (constants in code, never user input).
Every statement filters on tenant_id even though RLS would too: defence in depth, and it lets the planner use the
(tenant_id, …) indexes.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from voice_service.db import fetch_one


class Table:
    def __init__(self, name: str, columns: Sequence[str], *, soft_delete: bool = True, id_cast: str = "uuid") -> None:
        self.name = name
        self.columns = tuple(columns)
        self.select = ", ".join(self.columns)
        self.has_deleted_at = soft_delete
        self.id_cast = id_cast
        self.alive = "AND deleted_at IS NULL" if soft_delete else ""

    async def get(self, conn: asyncpg.Connection, tenant_id: uuid.UUID, id_: Any) -> asyncpg.Record | None:
        return await conn.fetchrow(
            f"SELECT {self.select} FROM {self.name} WHERE tenant_id = $1 AND id = $2 {self.alive}", tenant_id, id_
        )

    async def exists(self, conn: asyncpg.Connection, tenant_id: uuid.UUID, id_: Any) -> bool:
        return bool(await conn.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM {self.name} WHERE tenant_id = $1 AND id = $2 {self.alive})", tenant_id, id_
        ))

    async def insert(self, conn: asyncpg.Connection, tenant_id: uuid.UUID, fields: Mapping[str, Any]) -> asyncpg.Record:
        names = ["tenant_id", *fields.keys()]
        params = ", ".join(f"${i}" for i in range(1, len(names) + 1))
        return await fetch_one(
            conn,
            f"INSERT INTO {self.name} ({', '.join(names)}) VALUES ({params}) RETURNING {self.select}",
            tenant_id, *fields.values(),
        )

    async def update(self, conn: asyncpg.Connection, tenant_id: uuid.UUID, id_: Any,
                     fields: Mapping[str, Any]) -> asyncpg.Record | None:
        if not fields:
            return await self.get(conn, tenant_id, id_)
        sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(fields.keys(), start=3))
        return await conn.fetchrow(
            f"UPDATE {self.name} SET {sets} WHERE tenant_id = $1 AND id = $2 {self.alive} RETURNING {self.select}",
            tenant_id, id_, *fields.values(),
        )

    async def soft_delete(self, conn: asyncpg.Connection, tenant_id: uuid.UUID, id_: Any) -> bool:
        if self.has_deleted_at:
            sql = f"UPDATE {self.name} SET deleted_at = now() WHERE tenant_id = $1 AND id = $2 {self.alive} RETURNING 1"
        else:
            sql = f"DELETE FROM {self.name} WHERE tenant_id = $1 AND id = $2 RETURNING 1"
        return (await conn.fetchval(sql, tenant_id, id_)) is not None

    async def page(self, conn: asyncpg.Connection, tenant_id: uuid.UUID, *, limit: int,
                   after: tuple[datetime, str] | None, filters: Mapping[str, Any] | None = None,
                   created_after: datetime | None = None, created_before: datetime | None = None,
                   ) -> list[asyncpg.Record]:
        """Newest first; `filters` maps a column to an exact value (None values are skipped); `created_after`
        (inclusive) and `created_before` (exclusive) bound created_at."""
        args: list[Any] = [tenant_id, limit + 1]
        conds = [f"tenant_id = $1 {self.alive}"]
        for column, value in (filters or {}).items():
            if value is None:
                continue
            args.append(value)
            conds.append(f"{column} = ${len(args)}")
        for op, bound in ((">=", created_after), ("<", created_before)):
            if bound is not None:
                args.append(bound)
                conds.append(f"created_at {op} ${len(args)}")
        if after is not None:
            args += [after[0], after[1]]
            conds.append(f"(created_at, id) < (${len(args) - 1}, ${len(args)}::{self.id_cast})")
        return await conn.fetch(
            f"SELECT {self.select} FROM {self.name} WHERE {' AND '.join(conds)} "
            f"ORDER BY created_at DESC, id DESC LIMIT $2",
            *args,
        )

