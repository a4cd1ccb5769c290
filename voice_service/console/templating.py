"""The console's Jinja2 environment (autoescaping on, undefined names are errors), its filters, and page responses.

Pages render through Litestar's TemplateConfig with this environment; live views render fragments with it directly
(one render per update, shared by every viewer). Filters format what people read: local times, durations, money.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context
from jinja2.runtime import Context
from litestar import Request
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.template.config import TemplateConfig
from markupsafe import Markup, escape

from voice_service.console.charts import latency_chart
from voice_service.console.charts import legend as chart_legend
from voice_service.console.clock import tz_name, user_tz

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
STATIC_PATH = "/console/static"


def _static_version() -> str:
    """A digest of the static files: their URLs change when they do, so browsers may cache them for long."""
    digest = hashlib.sha256()
    for path in sorted(STATIC.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(STATIC).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def static_url(name: str) -> str:
    return f"{STATIC_PATH}/{name}?v={STATIC_VERSION}"


@pass_context
def localtime(ctx: Context, value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> Markup | str:
    """A <time> element: the machine-readable instant, shown in the user's zone."""
    if value is None:
        return "—"
    tz: tzinfo = ctx["tz"]
    local = value.astimezone(tz)
    # Formatted by hand (a list page calls this for every row): an ISO instant and strftime of a template's own
    # format hold nothing to escape; the escape keeps it so should a format ever carry text.
    return Markup(f'<time datetime="{value.isoformat()}">{escape(local.strftime(fmt))}</time>')


def duration(seconds: float | int | None) -> str:
    if seconds is None:
        return "—"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def money(amount: Decimal | str | float | None, currency: str | None = None, places: int = 2) -> str:
    if amount is None:
        return "—"
    value = Decimal(str(amount))
    text = f"{value:,.{places}f}"
    return f"{text} {currency}" if currency else text


def plain(amount: Decimal | str | float | None) -> str:
    """A decimal as people write it: 0.00000015, never 1.5E-7 nor 0.000000150000."""
    if amount is None:
        return "—"
    value = Decimal(str(amount))
    return format(value.normalize() if value else Decimal(0), "f")


def percent(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio * 100:.0f} %"


def pairs(values: Any) -> list[tuple[str, str]]:
    """Options whose value is also their text (for select_field)."""
    return [(str(v), str(v)) for v in values]


def pretty_json(value: Any) -> str:
    if value is None:
        return ""
    return json.dumps(msgspec.to_builtins(value), indent=2, ensure_ascii=False, sort_keys=True)


def make_environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters.update(localtime=localtime, duration=duration, money=money, percent=percent,
                       pretty_json=pretty_json, pairs=pairs, plain=plain)
    env.globals.update(static_url=static_url, latency_chart=latency_chart, chart_legend=chart_legend)
    return env


STATIC_VERSION = _static_version()
environment = make_environment()


def template_config() -> TemplateConfig[Any]:
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment))


def page(request: Request[Any, Any, Any], template: str, *, status_code: int = 200,
         headers: dict[str, str] | None = None, **context: Any) -> Template:
    """A console page (or fragment) for a signed-in request: the session, CSRF token and time zone come along."""
    session = request.auth
    tz = user_tz(request)
    ctx = {"session": session, "principal": session.principal, "csrf": session.csrf_token, "tz": tz,
           "tz_name": tz_name(tz), "path": request.url.path, "nav": "", **context}
    return Template(template_name=template, context=ctx, status_code=status_code,
                    headers={"Cache-Control": "no-store", **(headers or {})})


def public_page(request: Request[Any, Any, Any], template: str, *, status_code: int = 200,
                headers: dict[str, str] | None = None, **context: Any) -> Template:
    """A page shown without a session (sign-in, errors before sign-in)."""
    tz = user_tz(request)
    ctx = {"session": None, "principal": None, "csrf": "", "tz": tz, "tz_name": tz_name(tz),
           "path": request.url.path, "nav": "", **context}
    return Template(template_name=template, context=ctx, status_code=status_code,
                    headers={"Cache-Control": "no-store", **(headers or {})})


def render(template: str, **context: Any) -> str:
    """A fragment rendered outside a request (live views)."""
    return environment.get_template(template).render(**context)
