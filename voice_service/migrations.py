"""Migration runner for `sql/NNNN_name.sql`.

Files are applied in order, each in its own transaction, under a session advisory lock so that concurrent
processes (two replicas starting at once) apply each file exactly once. Applied files are recorded in
`schema_migrations` with a checksum; an applied file that changed on disk is an error, never re-applied.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

# An arbitrary constant: every process migrating this database takes the same lock.
MIGRATION_LOCK_KEY = 7_305_114_290_001
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str
    checksum: str


class MigrationError(RuntimeError):
    pass


def sql_dir() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "sql", here / "_sql"):
        if candidate.is_dir():
            return candidate
    raise MigrationError("no sql/ directory found next to the package")


def load_migrations(directory: Path | None = None) -> list[Migration]:
    directory = directory or sql_dir()
    found: list[Migration] = []
    for path in sorted(directory.iterdir()):
        m = _NAME.match(path.name)
        if not m:
            continue
        text = path.read_text(encoding="utf-8")
        found.append(Migration(m.group(1), path.name, text, hashlib.sha256(text.encode()).hexdigest()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration numbers in {directory}")
    return found


async def migrate(dsn: str, directory: Path | None = None) -> list[str]:
    """Apply pending migrations; returns the names applied (empty when up to date)."""
    migrations = load_migrations(directory)
    conn = await asyncpg.connect(dsn)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version text PRIMARY KEY,
                       name text NOT NULL,
                       checksum text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
            done = {r["version"]: r for r in rows}
            for mig in migrations:
                prior = done.get(mig.version)
                if prior is not None:
                    if prior["checksum"] != mig.checksum:
                        raise MigrationError(
                            f"{mig.name} was edited after it was applied (as {prior['name']}); "
                            "write a new migration instead"
                        )
                    continue
                async with conn.transaction():
                    await conn.execute(mig.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        mig.version,
                        mig.name,
                        mig.checksum,
                    )
                log.info("migration applied", extra={"migration": mig.name})
                applied_now.append(mig.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    finally:
        await conn.close()
    return applied_now
