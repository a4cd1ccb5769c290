"""CSRF protection for the console: every request that changes something carries the session's token.

Forms carry it in a hidden `_csrf` field; htmx sends it in the `X-CSRF-Token` header (static/console.js configures
that once). The sign-in form has no session yet: it is protected by a double-submit token instead (a random value in
a short-lived SameSite=Strict cookie and in the form), so another site cannot sign a browser into its own account.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from litestar import Request
from litestar.datastructures import Cookie

from voice_service.errors import Forbidden

HEADER = "x-csrf-token"
FIELD = "_csrf"
SIGN_IN_COOKIE = "console_signin"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CsrfRefused(Forbidden):
    """A form or htmx request without the session's CSRF token."""


async def submitted_token(request: Request[Any, Any, Any]) -> str:
    header = request.headers.get(HEADER)
    if header:
        return header
    form = await request.form()  # parsed once; Litestar caches it for the handler
    value = form.get(FIELD)
    return value if isinstance(value, str) else ""


async def require_token(request: Request[Any, Any, Any]) -> None:
    """before_request hook of the signed-in console routes."""
    if request.method in _SAFE_METHODS:
        return
    expected: str = request.auth.csrf_token
    if not hmac.compare_digest((await submitted_token(request)).encode(), expected.encode()):
        raise CsrfRefused("this form has expired or did not come from the console; reload the page and try again")


def new_sign_in_token() -> str:
    return secrets.token_urlsafe(24)


def sign_in_cookie(token: str, *, secure: bool, max_age: int = 3600) -> Cookie:
    return Cookie(key=SIGN_IN_COOKIE, value=token, path="/console/sign-in", httponly=True, samesite="strict",
                  secure=secure, max_age=max_age)


async def check_sign_in_token(request: Request[Any, Any, Any]) -> None:
    cookie = request.cookies.get(SIGN_IN_COOKIE, "")
    submitted = await submitted_token(request)
    if not cookie or not hmac.compare_digest(cookie.encode(), submitted.encode()):
        raise CsrfRefused("the sign-in form has expired; reload the page and sign in again")
