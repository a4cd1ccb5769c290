"""Which webhook target URLs the service may call (server-side request forgery guard).

Hosts are normalised first (:func:`normalize_url`): a host that is not plain ASCII is folded with the UTS #46 mapping
(Unicode compatibility forms such as full-width digits and dots become ASCII, so `https://１２７.０.０.１/` is
127.0.0.1) and IDNA-encoded, the way the HTTP client would send it; a host that cannot be encoded is refused. The
checks below then apply to the host that will really be called, and the endpoint stores that URL.

Two checks. When an endpoint is registered, :func:`check_url` refuses non-https URLs (http only when
`webhook_allow_insecure_targets`), URLs with credentials, and hosts that are IP literals in a private, loopback,
link-local, multicast, reserved or unspecified range (IPv4 and IPv6, IPv4-mapped/embedded IPv6 included). At
delivery time the name is resolved again, inside the HTTP client's connect (see :class:`GuardedBackend`): if any
address it resolves to is disallowed the connection is refused, and the socket is opened to the vetted address
itself, so a DNS answer that changes between the check and the connect (rebinding) cannot slip through.
`webhook_allow_private_targets` turns the address checks off (local development, tests).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import typing
from urllib.parse import urlsplit, urlunsplit

import httpcore
import httpx
import idna

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
# inet_aton accepts shorthand IPv4 (127.1, 0x7f.0.0.1, 2130706433) that resolvers treat as literals too.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}\.?$", re.IGNORECASE)


# DNS labels of letters, digits, hyphens (and underscores, which resolvers accept), 63 characters at most.
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"^(?=.{{1,253}}\.?$){_LABEL}(?:\.{_LABEL})*\.?$", re.IGNORECASE)


class TargetRejected(ValueError):
    """The URL or one of the addresses its host resolves to may not be called."""


class InvalidTarget(TargetRejected):
    """The URL cannot be called at all (not a URL, a host no resolver could be asked for): retrying never helps."""


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def disallowed_reason(ip: IPAddress) -> str | None:
    """Why a webhook may not be sent to `ip` (None: a public unicast address)."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_v4(ip)
        if inner is not None:
            return disallowed_reason(inner)
    for reason, hit in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("shared (CGNAT)", isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT),
        ("not globally routable", not ip.is_global),
    ):
        if hit:
            return reason
    return None


def host_literal(host: str) -> IPAddress | None:
    """The address when `host` (as urlsplit gives it: no brackets) is an IP literal, else None."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host.rstrip(".")))
        except OSError:
            return None
    return None


def normalize_url(url: str) -> str:
    """`url` with its host as it goes on the wire: unchanged when the host is ASCII, else folded and IDNA-encoded
    (UTS #46, as the HTTP client encodes it). Raises InvalidTarget when there is no such host."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port out of range or not a number
    except ValueError as exc:
        raise InvalidTarget(f"not a valid URL: {exc}") from None
    host = parts.hostname or ""
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise InvalidTarget(f"host {parts.hostname!r} is not a valid host name: {exc}") from None
        netloc = host if port is None else f"{host}:{port}"
        url = urlunsplit(parts._replace(netloc=netloc))
    elif host and ":" not in host and not _HOST_NAME.match(host):  # ":" only in an IPv6 literal
        raise InvalidTarget(f"host {host!r} is not a valid host name")
    try:
        httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise InvalidTarget(f"not a valid URL: {exc}") from None
    return url


def check_url(url: str, *, allow_insecure: bool, allow_private: bool) -> str:
    """The URL a webhook will be sent to (see normalize_url); raise TargetRejected (with the reason) for a URL no
    webhook may be sent to."""
    url = normalize_url(url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and allow_insecure):
        raise TargetRejected("must be an https:// URL")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise TargetRejected("must not contain credentials (user:password@)")
    host = parts.hostname
    if not host:
        raise InvalidTarget("has no host")
    if allow_private:
        return url
    literal = host_literal(host)
    if literal is not None:
        reason = disallowed_reason(literal)
        if reason is not None:
            raise TargetRejected(f"host {literal} is a {reason} address")
    return url


async def resolve_allowed(host: str, port: int) -> list[str]:
    """Resolve `host` without blocking the loop; every address must be allowed. Returns them in resolver order."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TargetRejected(f"cannot resolve {host}: {exc}") from None
    addresses: list[str] = []
    for *_, sockaddr in infos:
        text = str(sockaddr[0]).split("%", 1)[0]
        reason = disallowed_reason(ipaddress.ip_address(text))
        if reason is not None:
            raise TargetRejected(f"{host} resolves to {text}, a {reason} address")
        if text not in addresses:
            addresses.append(text)
    if not addresses:
        raise TargetRejected(f"{host} resolves to no address")
    return addresses


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore network backend that vets every address a host resolves to, then connects to one of them.

    TLS still verifies the certificate against the URL's host name (httpcore passes it as server_hostname).
    """

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's backend interface
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if self.allow_private:
            return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        try:
            async with asyncio.timeout(timeout):
                addresses = await resolve_allowed(host, port)
        except TargetRejected as exc:
            raise httpcore.ConnectError(f"target refused: {exc}") from None
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's backend interface
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhook targets are TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, backend: GuardedBackend, limits: httpx.Limits) -> None:
        super().__init__(trust_env=False, limits=limits)
        # httpx has no network_backend option: the same pool httpx builds, connecting through the guard.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )


def guarded_client(*, allow_private: bool, timeout: float = 10.0) -> httpx.AsyncClient:
    """An HTTP client for webhook deliveries: no proxies from the environment, no redirects, guarded connects."""
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
    return httpx.AsyncClient(
        transport=_GuardedTransport(GuardedBackend(allow_private=allow_private), limits),
        timeout=httpx.Timeout(timeout, connect=5.0),
        follow_redirects=False,
        trust_env=False,
    )
