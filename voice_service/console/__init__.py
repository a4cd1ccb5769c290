"""The operator console at /console: server-rendered pages (Jinja2 + htmx, server-sent events for live views) on the
same service layer and authorization as the API.

Layout: `plugin.py` installs everything (routers, template engine, live-view lifespan); `sessions.py`, `csrf.py`,
`middleware.py` are the security layer (server-side sessions, CSRF, headers); one module per page group
(`overview.py`, `agents.py`, `calls.py`, `numbers.py`, `signin.py`); `templates/` and `static/` (hand-written CSS and
JS, vendored htmx: see static/vendor/VENDORED.md). Pages call the domains' services; there is no SQL here.
"""

from voice_service.console.plugin import ConsolePlugin

__all__ = ["ConsolePlugin"]
