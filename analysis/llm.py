"""Running the post-call analysis through an LLM and validating what comes back.

One strict json_schema completion; the answer is checked against the response schema and the agent's own
``analysis_schema`` (Draft 2020-12). An invalid answer is retried once with the validation errors appended; if
it is still invalid it is stored as returned, with ``validation_error`` set. Not JSON at all, or a provider
error, makes the analysis ``failed``. Every attempt's tokens are reported so a retry is billed too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from jsonschema import Draft202012Validator

from analysis.prompt import SCHEMA_NAME, build_messages, build_response_schema
from analysis.usage import LlmUsage, UsageMeter
from providers.llm.base import LlmError, LlmProvider

MAX_ATTEMPTS = 2
MAX_REPORTED_ERRORS = 10
_CHARS_PER_TOKEN = 4  # rough estimate, used only when the server reports no usage


class AnalysisOutcome(msgspec.Struct, kw_only=True):
    status: str  # completed | failed
    summary: str | None = None
    sentiment: str | None = None
    lead_category: str | None = None
    success_evaluation: dict[str, Any] | None = None
    lead_extraction: dict[str, Any] | None = None
    validation_error: str | None = None
    error: str | None = None
    usage: list[LlmUsage] = []
    attempts: int = 0
    model: str | None = None

    def usage_meter(self) -> UsageMeter:
        """The outcome's LLM usage as a meter, ready for :func:`analysis.pricing.price_usage`."""
        meter = UsageMeter()
        for u in self.usage:
            meter.add_llm(
                u.provider,
                u.model,
                u.prompt_tokens,
                u.completion_tokens,
                estimated=u.estimated,
                cached_prompt_tokens=u.cached_prompt_tokens,
            )
        return meter


def _error_path(parts: Sequence[Any]) -> str:
    return ".".join(str(p) for p in parts) or "(root)"


def _resolve(schema: Any, root: Mapping[str, Any]) -> Any:
    seen = 0
    while isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str) and seen < 20:
        ref: str = schema["$ref"]
        if not ref.startswith("#"):
            return schema
        target: Any = root
        for part in [p for p in ref[1:].split("/") if p]:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, Mapping) or part not in target:
                return schema
            target = target[part]
        schema, seen = target, seen + 1
    return schema


def prune_optional_nulls(value: Any, schema: Any, root: Mapping[str, Any]) -> Any:
    """Drop nulls the strict schema allowed for optional properties, so the agent's own schema can judge."""
    schema = _resolve(schema, root)
    if not isinstance(schema, Mapping):
        return value
    if isinstance(value, dict) and isinstance(schema.get("properties"), Mapping):
        props = schema["properties"]
        required = set(schema.get("required") or ())
        return {
            k: prune_optional_nulls(v, props[k], root) if k in props else v
            for k, v in value.items()
            if not (v is None and k not in required)
        }
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [prune_optional_nulls(v, schema["items"], root) for v in value]
    return value


def validate_output(
    data: Any, response_schema: Mapping[str, Any], agent_schema: Mapping[str, Any] | None
) -> list[str]:
    """``path: message`` errors of an analysis answer (response schema first, then the agent's schema)."""
    errors = [
        f"{_error_path(e.absolute_path)}: {e.message}"
        for e in Draft202012Validator(response_schema).iter_errors(data)
    ]
    if agent_schema and isinstance(data, dict) and isinstance(data.get("lead_extraction"), dict):
        extraction = prune_optional_nulls(data["lead_extraction"], agent_schema, agent_schema)
        errors.extend(
            f"{_error_path(['lead_extraction', *e.absolute_path])}: {e.message}"
            for e in Draft202012Validator(dict(agent_schema)).iter_errors(extraction)
        )
    # Both validators can report the same problem inside lead_extraction.
    unique = list(dict.fromkeys(errors))
    return unique[:MAX_REPORTED_ERRORS]


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _dict_or_none(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _estimate_tokens(text: str) -> int:
    return max(1, len(text) // _CHARS_PER_TOKEN) if text else 0


async def analyze_call(
    llm: LlmProvider,
    *,
    turns: Sequence[Any],
    agent: Mapping[str, Any] | Any,
    call: Mapping[str, Any] | Any,
    analysis_schema: Mapping[str, Any] | None,
    model: str | None = None,
) -> AnalysisOutcome:
    """Analyse one call with ``llm`` (``model`` overrides the provider's default, e.g. ANALYSIS_MODEL)."""
    schema = build_response_schema(analysis_schema)
    messages: list[dict[str, str]] = list(build_messages(turns, agent, call))
    usage: list[LlmUsage] = []
    used_model = model or getattr(llm, "model", None)

    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            content, reported = await llm.complete_json(
                messages, schema=schema, schema_name=SCHEMA_NAME, model=model
            )
        except LlmError as exc:
            return AnalysisOutcome(
                status="failed", error=f"llm_error: {exc}", usage=usage, attempts=attempt, model=used_model
            )
        if reported is not None:
            used_model = reported.model or used_model
            usage.append(
                LlmUsage(
                    llm.name,
                    used_model or "unknown",
                    reported.prompt_tokens,
                    reported.completion_tokens,
                    cached_prompt_tokens=reported.cached_prompt_tokens,
                )
            )
        else:
            prompt = "".join(m["content"] for m in messages)
            usage.append(
                LlmUsage(
                    llm.name,
                    used_model or "unknown",
                    _estimate_tokens(prompt),
                    _estimate_tokens(content),
                    estimated=True,
                )
            )

        try:
            data = msgspec.json.decode(content)
        except msgspec.DecodeError as exc:
            return AnalysisOutcome(
                status="failed",
                error=f"invalid_json: the model's answer is not JSON ({exc})",
                usage=usage,
                attempts=attempt,
                model=used_model,
            )

        errors = validate_output(data, schema, analysis_schema)
        if errors and attempt < MAX_ATTEMPTS:
            messages = [
                *messages,
                {"role": "assistant", "content": content},
                {
                    "role": "user",
                    "content": "That JSON does not validate:\n"
                    + "\n".join(f"- {e}" for e in errors)
                    + "\nReturn the corrected JSON object, complete, and nothing else.",
                },
            ]
            continue

        fields = data if isinstance(data, dict) else {}
        return AnalysisOutcome(
            status="completed",
            summary=_str_or_none(fields.get("summary")),
            sentiment=_str_or_none(fields.get("sentiment")),
            lead_category=_str_or_none(fields.get("lead_category")),
            success_evaluation=_dict_or_none(fields.get("success_evaluation")),
            lead_extraction=_dict_or_none(fields.get("lead_extraction")),
            validation_error="; ".join(errors) if errors else None,
            usage=usage,
            attempts=attempt,
            model=used_model,
        )
    raise AssertionError("unreachable: the last attempt always returns")
