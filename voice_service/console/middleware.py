"""ASGI middleware of the console routes: security headers on every response, and the session gate.

The session gate runs before any console page: no live session → no page (a redirect to sign-in; for htmx requests
an HX-Redirect, so the whole window goes there rather than a fragment). With a session, the request carries the same
`Principal` the API's authentication would produce (`request.user`), so the API's guards and the domains' services
authorize console requests exactly as they authorize API calls.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from litestar import Request
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.response import Redirect, Response
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from voice_service.console import sessions
from voice_service.observability import tenant_id_var

# No inline script or style anywhere (htmx is told not to inject its indicator styles); the console is never framed.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; media-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    # The agent page's "Talk to this agent" uses the microphone (this origin only, never a framed page).
    "Permissions-Policy": "camera=(), geolocation=(), microphone=(self), payment=(), usb=()",
}

SIGN_IN_PATH = "/console/sign-in"


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def safe_next(path: str | None) -> str:
    """Where to go after sign-in: a console path only (never another site)."""
    if path and path.startswith("/console") and not path.startswith("//") and "\\" not in path:
        return path
    return "/console"


def sign_in_redirect(connection: Request[Any, Any, Any], *, clear_cookie: bool) -> Response[Any]:
    settings = connection.app.state.settings
    target = connection.url.path
    if connection.url.query:
        target += "?" + connection.url.query
    location = SIGN_IN_PATH
    if connection.method == "GET" and target not in ("/console", "/console/"):
        location += "?next=" + quote(safe_next(target), safe="/")
    cookies = [sessions.cleared_cookie(secure=sessions.is_secure(settings, connection))] if clear_cookie else []
    if connection.headers.get("hx-request") == "true":
        # htmx would swap the sign-in page into a fragment; HX-Redirect sends the whole window there instead.
        return Response(content=None, status_code=401, headers={"HX-Redirect": location,
                                                                "Cache-Control": "no-store"}, cookies=cookies)
    return Redirect(location, status_code=303, cookies=cookies, headers={"Cache-Control": "no-store"})


class SessionMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        connection: Request[Any, Any, Any] = Request(scope, receive=receive, send=send)
        state = connection.app.state
        token = connection.cookies.get(sessions.COOKIE, "")
        session = await sessions.resolve(state.pool, state.settings, token) if token else None
        if session is None:
            response = sign_in_redirect(connection, clear_cookie=bool(token))
            await response.to_asgi_response(app=None, request=connection)(scope, receive, send)
            return
        scope["user"] = session.principal
        scope["auth"] = session
        scope.setdefault("state", {})["tenant_id"] = str(session.principal.tenant_id)
        tenant_id_var.set(str(session.principal.tenant_id))
        await self.app(scope, receive, send)
