"""A browser's worth of console over HTTP (no browser): its own cookie jar, signed in with one credential."""

from __future__ import annotations

import re
from typing import Any

import httpx


class Console:
    """One browser's worth of console: its own cookie jar, signed in with one credential."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.csrf = ""
        self.session_token = ""
        self.sign_in_response: httpx.Response | None = None

    async def sign_in(self, credential: str, *, next_path: str | None = None) -> httpx.Response:
        form_page = await self.http.get("/console/sign-in", params={"next": next_path} if next_path else None)
        assert form_page.status_code == 200, form_page.text
        token = re.search(r'name="_csrf" value="([^"]+)"', form_page.text)
        assert token is not None
        r = await self.http.post("/console/sign-in", data={"_csrf": token.group(1), "credential": credential,
                                                           "next": next_path or "/console"})
        self.sign_in_response = r
        if r.status_code == 303:
            self.session_token = self.http.cookies.get("console_session", path="/console") or ""
            self.csrf = await self.page_csrf()
        return r

    async def page_csrf(self) -> str:
        page = await self.http.get("/console/agents")
        assert page.status_code == 200, page.text
        m = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
        assert m is not None
        return m.group(1)

    async def post(self, path: str, data: dict[str, Any], *, csrf: bool = True, **kw: Any) -> httpx.Response:
        return await self.http.post(path, data={**data, **({"_csrf": self.csrf} if csrf else {})}, **kw)
