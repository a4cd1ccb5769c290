"""The OpenAPI configuration and the documentation page, whose browser files are served by the service itself.

Paths: `/schema/openapi.json` is the document; `/schema` (and `/schema/swagger`) is Swagger UI, which loads its
script, style sheet and icon from `/schema/assets/vendor/…` (static/vendor/VENDORED.md says where they come from),
so the page works with no internet access.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar.datastructures import CacheControlHeader
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, PathItem, Reference, SecurityScheme, Tag
from litestar.static_files import create_static_files_router

__all__ = ["ASSETS_PATH", "DOCS_PATH", "SWAGGER_UI_VERSION", "assets_router", "openapi_config"]

DOCS_PATH = "/schema"
ASSETS_PATH = f"{DOCS_PATH}/assets"
SWAGGER_UI_VERSION = "5.36.0"
STATIC = Path(__file__).parent / "static"
_VENDOR = f"{ASSETS_PATH}/vendor/swagger-ui-{SWAGGER_UI_VERSION}"

DESCRIPTION = """\
AI voice agents on the phone: agents, numbers, voices, leads, batches of outbound calls, call logs with costs and
analyses, billing, events.

**Authentication.** `Authorization: Bearer vsk_…` (an API key; `voice-service create-api-key`) or a platform JWT.
Roles: viewer < member < admin < owner; viewers read, members place calls, admins and owners manage the tenant.

**Errors** are `application/problem+json` (`ProblemDetails`): `detail` is a sentence that names the field, and
`errors` lists every field at fault. 400: the request could not be read (malformed JSON, wrong type, unknown
field or query parameter); 422: a value is not acceptable; 401, 403, 404 (another tenant's ids are 404 too), 409,
413 (body over the operation's limit), 415, 402 (wallet).

**Lists** are cursor-paginated, newest first: `?limit=` (1–200, default 50) and `?cursor=` = the `next_cursor` of
the previous page (`null` on the last page). The event feed is oldest first and its `next_cursor` never runs out.

**Idempotency.** `POST /v1/calls` and `POST /v1/batches` honour an `Idempotency-Key` header: the same key and body
return the first response (with `Idempotent-Replayed: true`); the same key with another body is a 409.

**Limits.** A request body is at most 1 MiB (`POST /v1/batches` 16 MiB, lead imports 64 MiB); each free-form JSON
object (`metadata`, `custom_fields`, `variables`, `preferences`) at most 16 KB encoded.

**Events** (`GET /v1/events`, webhooks): see `GET /v1/event-types` and the webhooks section of this document.
"""

TAGS = [
    Tag(name="agents", description="AI voice agents: prompts, voice, language, behaviour, analysis schema."),
    Tag(name="numbers", description="The tenant's phone numbers and the carrier each is with."),
    Tag(name="voices", description="The voice catalog (TTS provider voices) agents and calls speak with."),
    Tag(name="leads", description="People to call: CRUD and bulk import (CSV or JSON, from a file upload too)."),
    Tag(name="batches", description="Batches of outbound calls: pacing, calling windows, retries, pause/cancel."),
    Tag(name="calls", description="Calls: place one, list and export call logs, analyses, recordings."),
    Tag(name="billing", description="Prices, wallet, ledger and usage events."),
    Tag(name="events", description="The event feed (pull) and webhook endpoints (push), and the event catalog."),
    Tag(name="api-keys", description="API keys of the tenant."),
    Tag(name="voice-permissions", description="Which numbers and voices a member may call with."),
    Tag(name="voice-profiles", description="A user's own voice defaults."),
    Tag(name="telephony", description="Carrier webhooks (signed by the carrier; not called by API clients)."),
    Tag(name="ops", description="Health and metrics."),
]


def openapi_config(*, version: str, webhooks: dict[str, PathItem | Reference] | None = None) -> OpenAPIConfig:
    swagger = SwaggerRenderPlugin(
        js_url=f"{_VENDOR}/swagger-ui-bundle.js",
        css_url=f"{_VENDOR}/swagger-ui.css",
        standalone_preset_js_url=f"{_VENDOR}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{_VENDOR}/favicon-32x32.png'>",
        path="/swagger",
    )
    return OpenAPIConfig(
        title="Voice service API",
        version=version,
        description=DESCRIPTION,
        path=DOCS_PATH,
        render_plugins=[swagger],  # the first is also served at /schema itself
        components=Components(security_schemes={
            "bearer": SecurityScheme(type="http", scheme="bearer",
                                     description="An API key `vsk_…` or a platform JWT"),
            "platformAdmin": SecurityScheme(type="http", scheme="bearer",
                                            description="The billing platform's `PLATFORM_ADMIN_TOKEN`"),
            "metricsToken": SecurityScheme(type="http", scheme="bearer",
                                           description="`METRICS_TOKEN`, when the deployment sets one"),
        }),
        security=[{"bearer": []}],
        tags=TAGS,
        webhooks=webhooks,
        use_handler_docstrings=True,
        create_examples=False,
    )


def assets_router() -> Any:
    return create_static_files_router(
        path=ASSETS_PATH,
        directories=[STATIC],
        opt={"exclude_from_auth": True},
        include_in_schema=False,
        name="docs-assets",
        # The folder names carry the version: a browser may keep the files until it changes.
        cache_control=CacheControlHeader(public=True, max_age=86400),
    )

