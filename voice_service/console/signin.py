"""Signing in and out of the console.

Sign-in takes an API key or a platform token once, checks it exactly as the API does, and opens a server-side
session (voice_service/console/sessions.py); the credential is never put in the page, a cookie or browser storage.
Sign-out ends the session in the database and clears the cookie.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.response import Redirect, Response, Template

from voice_service.console import csrf, sessions
from voice_service.console.middleware import SIGN_IN_PATH, safe_next
from voice_service.console.templating import public_page
from voice_service.errors import Unauthorized
from voice_service.params import QueryParameter


def _sign_in_page(request: Request[Any, Any, Any], *, next_path: str, error: str | None = None,
                  status_code: int = 200, signed_out: bool = False) -> Template:
    token = csrf.new_sign_in_token()
    secure = sessions.is_secure(request.app.state.settings, request)
    response = public_page(request, "console/sign_in.html", status_code=status_code, sign_in_token=token,
                           next_path=next_path, error=error, signed_out=signed_out)
    response.cookies.append(csrf.sign_in_cookie(token, secure=secure))
    return response


class SignInPages(Controller):
    path = "/sign-in"

    @get("/", name="console:sign-in")
    async def sign_in_form(
        self, request: Request[Any, Any, Any],
        next_path: str | None = QueryParameter(name="next", default=None, max_length=500),
        signed_out: bool = QueryParameter(name="signed_out", default=False),
    ) -> Response[Any] | Template:
        state = request.app.state
        token = request.cookies.get(sessions.COOKIE, "")
        if token and await sessions.resolve(state.pool, state.settings, token) is not None:
            return Redirect(safe_next(next_path), status_code=303)
        return _sign_in_page(request, next_path=safe_next(next_path), signed_out=signed_out)

    @post("/", name="console:sign-in-submit", status_code=303)
    async def sign_in(self, request: Request[Any, Any, Any]) -> Response[Any] | Template:
        await csrf.check_sign_in_token(request)
        form = await request.form()
        credential = form.get("credential")
        next_path = safe_next(form.get("next") if isinstance(form.get("next"), str) else None)
        state = request.app.state
        try:
            token, _ = await sessions.sign_in(state.pool, state.settings, state.key_cache,
                                              credential if isinstance(credential, str) else "",
                                              request.headers.get("user-agent"))
        except Unauthorized as exc:
            return _sign_in_page(request, next_path=next_path, error=_sign_in_error(exc), status_code=401)
        old = request.cookies.get(sessions.COOKIE, "")
        if old:
            await sessions.sign_out(state.pool, old)  # never two live sessions behind one browser's cookie
        secure = sessions.is_secure(state.settings, request)
        max_age = state.settings.console_session_max_hours * 3600
        return Redirect(next_path, status_code=303, headers={"Cache-Control": "no-store"}, cookies=[
            sessions.session_cookie(token, secure=secure, max_age=max_age),
            csrf.sign_in_cookie("", secure=secure, max_age=0),
        ])


def _sign_in_error(exc: Unauthorized) -> str:
    if exc.field == "credential":
        return exc.detail[0].upper() + exc.detail[1:] + "."
    if "not enabled" in exc.detail:
        return "Platform tokens are not enabled on this service: sign in with an API key (vsk_…)."
    return "That API key or token was not accepted: it may be mistyped, revoked or expired."


class SignOut(Controller):
    path = "/sign-out"

    @post("/", name="console:sign-out", status_code=303)
    async def sign_out(self, request: Request[Any, Any, Any]) -> Response[Any]:
        state = request.app.state
        await sessions.sign_out(state.pool, request.cookies.get(sessions.COOKIE, ""))
        secure = sessions.is_secure(state.settings, request)
        return Redirect(SIGN_IN_PATH + "?signed_out=true", status_code=303,
                        cookies=[sessions.cleared_cookie(secure=secure)], headers={"Cache-Control": "no-store"})
