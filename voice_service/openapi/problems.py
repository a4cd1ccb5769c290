"""The error body every operation answers with (`application/problem+json`, RFC 9457) and the helpers that document
it: `problems(...)` for a route's own statuses, `example(...)` for a schema's example.

The shape is what voice_service/errors.py sends; tests/integration/test_openapi_contract.py checks one real response
per documented status against it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import msgspec
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.openapi.spec.base import BaseSchemaObject
from msgspec import UNSET, Meta, UnsetType

PROBLEM_JSON = "application/problem+json"

T = TypeVar("T")


@dataclass
class RawJson(BaseSchemaObject):
    """An example value written into the document as it is: Litestar drops every null from the dicts it
    serialises, which would leave examples without their required null fields."""

    value: Any

    def to_schema(self) -> Any:
        return self.value


def example(value: dict[str, Any] | list[Any]) -> Callable[[type[T]], type[T]]:
    """Class decorator: `value` is the schema's example in the OpenAPI document (a whole request or response body;
    field examples go in each field's `Meta(examples=…)`)."""

    def attach(cls: type[T]) -> type[T]:
        cls.__openapi_example__ = value  # type: ignore[attr-defined]
        return cls

    return attach


class FieldProblem(msgspec.Struct, omit_defaults=True):
    """One thing wrong with the request."""

    field: Annotated[
        str | None,
        Meta(description="Where: a dotted path into the JSON body (`config.voice_id`, `entries[3].phone`), a query "
                         "parameter (`status`) or a header (`Idempotency-Key`); null when the whole request is "
                         "the problem.", examples=["phone_number"]),
    ]
    message: Annotated[str, Meta(description="What is wrong, as a sentence a person can act on.",
                                 examples=["`phone_number` must be a phone number in E.164 form, e.g. +15551234567."])]
    source: Annotated[str, Meta(description="`body`, `query`, `path` or `header`, when known.",
                                examples=["body"])] | UnsetType = UNSET
    limit: Annotated[int, Meta(description="The limit that was exceeded, when there is one.")] | UnsetType = UNSET
    # 402 (the wallet): what the operation needs and what the wallet has, decimal strings.
    required: Annotated[str, Meta(description="402: the amount needed.")] | UnsetType = UNSET
    available: Annotated[str, Meta(description="402: the wallet's available balance.")] | UnsetType = UNSET
    shortfall: Annotated[str, Meta(description="402: the least top-up that covers it.")] | UnsetType = UNSET
    currency: Annotated[str, Meta(description="402: the wallet's currency.")] | UnsetType = UNSET


@example({
    "type": "about:blank",
    "title": "Invalid request",
    "status": 400,
    "detail": "`phone_number` must be a phone number in E.164 form, e.g. +15551234567.",
    "field": "phone_number",
    "instance": "/v1/numbers",
    "request_id": "3f9c2a7e5b1d4c8fa0e6d2b4c7a9e1f3",
    "errors": [{"field": "phone_number", "source": "body",
                "message": "`phone_number` must be a phone number in E.164 form, e.g. +15551234567."}],
})
class ProblemDetails(msgspec.Struct, omit_defaults=True):
    """An error (RFC 9457 problem details), sent as `application/problem+json` with the HTTP status."""

    type: Annotated[str, Meta(description="Always `about:blank`: `title` and `status` say what kind of error.",
                              examples=["about:blank"])]
    title: Annotated[str, Meta(description="Short, fixed text for the status, e.g. `Not found`.",
                               examples=["Validation failed"])]
    status: Annotated[int, Meta(description="The HTTP status code, repeated.", examples=[422])]
    detail: Annotated[str, Meta(description="What went wrong in this request, as a sentence that names the field.",
                                examples=["`agent_id`: agent 42 does not exist."])]
    field: Annotated[str, Meta(description="The field the error is about (the first one of `errors`), when the "
                                           "error is about one.", examples=["agent_id"])] | UnsetType = UNSET
    instance: Annotated[str, Meta(description="The request path.", examples=["/v1/calls"])] | UnsetType = UNSET
    request_id: Annotated[str, Meta(description="The request's id (also the `x-request-id` response header): quote "
                                                "it when asking for help.")] | UnsetType = UNSET
    errors: Annotated[list[FieldProblem], Meta(description="Every problem found, each with its field.")] | UnsetType = (
        UNSET
    )


# What each status means on this API, whatever the operation (an operation may say more about its own case).
STATUS_TEXT: dict[int, tuple[str, str]] = {
    400: ("Invalid request", "The request could not be read: malformed JSON, a value of the wrong type, a missing "
                             "or unknown field, or a query parameter this operation does not take. `errors` names "
                             "each field."),
    401: ("Unauthorized", "No valid credentials: send `Authorization: Bearer <API key>` (a `vsk_…` key) or a "
                          "platform JWT. A revoked key is a 401 too."),
    402: ("Payment required", "The wallet's available balance does not cover this; top up first."),
    403: ("Forbidden", "Authenticated, but the key's role may not do this (or a member lacks the number or voice "
                       "permission)."),
    404: ("Not found", "Nothing with this id in your tenant (another tenant's ids answer 404 as well)."),
    409: ("Conflict", "The request conflicts with the resource's current state."),
    413: ("Payload too large", "The request body is over this operation's size limit; `detail` says the limit."),
    415: ("Unsupported media type", "The body's content type is not one this operation reads."),
    416: ("Range not satisfiable", "The Range header asks only for bytes past the end of the file."),
    422: ("Validation failed", "The request was read, but a value is not acceptable (a rule the schema cannot "
                               "express: a reference to something that does not exist, a value out of range, a "
                               "free-form object over 16 KB). `errors` names each field."),
    503: ("Service unavailable", "The service cannot do this right now (shutting down, or a dependency is down); "
                                 "retry after the `Retry-After` header's seconds."),
}


def _example_body(status: int, detail: str, field: str | None) -> dict[str, Any]:
    title = STATUS_TEXT.get(status, ("Error", ""))[0]
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if field:
        body["field"] = field
        body["errors"] = [{"field": field, "message": detail}]
    return body


_EXAMPLE_DETAIL: dict[int, tuple[str, str | None]] = {
    400: ("`limit` must be an integer, not a string.", "limit"),
    401: ("missing credentials: send `Authorization: Bearer <API key or token>`", None),
    402: ("the wallet's available balance (1.20 USD) does not cover the estimated cost (4.00 USD); top up first",
          None),
    403: ("this action needs the admin role; your role is viewer", None),
    404: ("call 0190a6f2-7c1e-7b3a-9a51-3c2d4e5f6a7b not found", None),
    409: ("this Idempotency-Key was used with another request body", "Idempotency-Key"),
    413: ("the request body is over this endpoint's limit of 1 MiB (1,048,576 bytes)", None),
    415: ("send the leads as text/csv, application/json or multipart/form-data, not text/plain", "content-type"),
    416: ("the recording has 48213 bytes; the requested range starts past its end", "Range"),
    422: ("`agent_id`: agent 42 does not exist.", "agent_id"),
    503: ("the service is shutting down; retry shortly", None),
}


def problem_response(status: int, description: str | None = None) -> ResponseSpec:
    """The documented response for an error `status`: the ProblemDetails schema and an example."""
    title, meaning = STATUS_TEXT.get(status, ("Error", "An error."))
    detail, field = _EXAMPLE_DETAIL.get(status, (meaning, None))
    return ResponseSpec(
        data_container=ProblemDetails,
        media_type=PROBLEM_JSON,
        description=description or meaning,
        generate_examples=False,
        examples=[Example(summary=title, value=RawJson(_example_body(status, detail, field)))],
    )


def problems(*statuses: int, **descriptions: str) -> dict[int, ResponseSpec]:
    """A route's own error responses, for `responses=` on its decorator: `problems(409, 503)`, or with what the
    status means for this operation: `problems(s409="the batch is completed or cancelled")`. The standard ones
    (400, 401, 403, 404, 413, 422) are added by ApiDocsPlugin from the route itself; give them here only to say
    more than the standard text."""
    out = {status: problem_response(status) for status in statuses}
    for key, text in descriptions.items():
        status = int(key.removeprefix("s"))
        out[status] = problem_response(status, text)
    return out
