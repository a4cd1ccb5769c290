"""Which web pages may open a web call's socket: the check of the browser's `Origin` header.

A WebSocket is not subject to CORS: a page on any site can open one to this service, and the browser only tells
which site it is in `Origin`. A web call's token is the credential (single-use, short-lived), so the origin check
is a second lock: a token that leaked to another site's page is refused there. A page may open the socket when its
origin is

* the service's own: the origin of PUBLIC_BASE_URL, or the host the request was sent to (the console, on
  whatever address the operator opened it);
* in CORS_ALLOWED_ORIGINS (the deployment's list, shared with the API's CORS; `*` allows every origin);
* in the call's own `allowed_origins` (given by the tenant's backend when it creates the call: each tenant names
  its own sites without the deployment's list growing).

Clients that are not browsers send no Origin: they are let through (the token alone decides).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["origin_allowed", "parse_origins", "normalize_origin"]

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def normalize_origin(value: str) -> str:
    """`HTTPS://Shop.Example.com:443/` → `https://shop.example.com` (the form browsers send); '' if malformed."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return ""
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if not scheme or not host:
        return ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    return f"{scheme}://{host}"


def parse_origins(text: str | None) -> frozenset[str]:
    """The comma-separated list of a setting (`*` stays `*`; malformed entries are dropped)."""
    out: set[str] = set()
    for item in (text or "").split(","):
        item = item.strip()
        if item == "*":
            out.add("*")
        elif item:
            normalized = normalize_origin(item)
            if normalized:
                out.add(normalized)
    return frozenset(out)


def _host_of(origin: str) -> str:
    return origin.split("://", 1)[1] if "://" in origin else ""


def _same_host(origin: str, host_header: str | None) -> bool:
    if not host_header:
        return False
    scheme = origin.split("://", 1)[0]
    # The Host header carries the port only when it is not the scheme's default (as the Origin does).
    return normalize_origin(f"{scheme}://{host_header.strip()}") == origin


def origin_allowed(
    origin: str | None,
    *,
    host_header: str | None,
    public_base_url: str,
    configured: frozenset[str],
    per_call: Iterable[str] = (),
) -> bool:
    if origin is None:
        return True
    normalized = normalize_origin(origin)
    if not normalized:
        return "*" in configured  # "null" (sandboxed frames, file:// pages) and junk: only with `*`
    if "*" in configured or normalized in configured:
        return True
    if normalized == normalize_origin(public_base_url) or _same_host(normalized, host_header):
        return True
    return normalized in {normalize_origin(o) for o in per_call}
