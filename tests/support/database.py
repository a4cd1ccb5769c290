"""Database names in DSNs: the tests make their own databases on the test server and never touch another."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def swap_db(dsn: str, dbname: str) -> str:
    """`dsn` with its database name replaced by `dbname`."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + dbname))
