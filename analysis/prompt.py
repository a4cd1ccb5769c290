"""The post-call analysis request: the strict response schema and the prompt messages (pure functions).

OpenAI structured outputs in strict mode accept a subset of JSON Schema: every property listed in ``required``,
``additionalProperties: false`` on every object, optional values expressed as nullable types, and only some
keywords. :func:`to_strict_schema` turns an agent's own ``analysis_schema`` into that subset; the original schema
is still used to validate the output on our side (see :mod:`analysis.llm`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from jsonschema import Draft202012Validator

SENTIMENTS = ("positive", "neutral", "negative", "mixed")
LEAD_CATEGORIES = (
    "hot",
    "warm",
    "cold",
    "not_interested",
    "callback_requested",
    "wrong_number",
    "voicemail",
    "do_not_call",
)
SCHEMA_NAME = "call_analysis"
DEFAULT_MAX_TRANSCRIPT_CHARS = 24_000
MAX_TURN_CHARS = 2_000
MAX_INSTRUCTIONS_CHARS = 4_000
# OpenAI allows 10 levels of nesting; lead_extraction sits one level down and leaves headroom for the wrapper.
MAX_OBJECT_DEPTH = 8

# Keywords strict mode accepts (others are dropped from the copy sent to the model; the original schema, with
# them, still validates the answer locally).
_KEPT_SCALAR_KEYWORDS = (
    "description",
    "enum",
    "const",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
)
_STRICT_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"}
)
_LEAD_EXTRACTION_POINTER = "#/properties/lead_extraction"

_AGENT_ROLES = frozenset({"agent", "assistant", "bot", "ai"})
_CALLER_ROLES = frozenset({"user", "caller", "human", "lead", "customer", "contact"})


# ---------------------------------------------------------------------------------------------------------------
# Strict schema


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if "anyOf" in schema:
        if {"type": "null"} not in schema["anyOf"]:
            return {**schema, "anyOf": [*schema["anyOf"], {"type": "null"}]}
        return schema
    if "$ref" in schema or "const" in schema or "type" not in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    out = dict(schema)
    types = [out["type"]] if isinstance(out["type"], str) else list(out["type"])
    if "null" not in types:
        out["type"] = [*types, "null"]
    if "enum" in out and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    return out


def _rewrite_ref(ref: str) -> str | None:
    if ref.startswith("#/$defs/"):
        return ref
    if ref.startswith("#/definitions/"):
        return "#/$defs/" + ref.removeprefix("#/definitions/")
    if ref == "#":
        return _LEAD_EXTRACTION_POINTER
    if ref.startswith("#/"):
        return _LEAD_EXTRACTION_POINTER + ref[1:]
    return None  # remote references are rejected by validate_json_schema; drop them here


def _infer_type(node: Mapping[str, Any]) -> str | list[str]:
    if "properties" in node:
        return "object"
    if "items" in node:
        return "array"
    values = node.get("enum", [node["const"]] if "const" in node else [])
    kinds: list[str] = []
    for v in values:
        kind = (
            "null"
            if v is None
            else "boolean"
            if isinstance(v, bool)
            else "integer"
            if isinstance(v, int)
            else "number"
            if isinstance(v, float)
            else "string"
        )
        if kind not in kinds:
            kinds.append(kind)
    if not kinds:
        return "string"  # strict mode has no "any" type: free-form values are asked for as text
    return kinds[0] if len(kinds) == 1 else kinds


def _strict(node: Any) -> dict[str, Any]:
    if not isinstance(node, Mapping):
        return {"type": "string"} if node is not False else {"type": "null"}
    if "$ref" in node:
        ref = _rewrite_ref(str(node["$ref"]))
        return {"$ref": ref} if ref is not None else {"type": "string"}
    if "allOf" in node and len(node["allOf"]) == 1 and isinstance(node["allOf"][0], Mapping):
        merged = {**node["allOf"][0], **{k: v for k, v in node.items() if k != "allOf"}}
        return _strict(merged)
    branches = node.get("anyOf") or node.get("oneOf")
    if branches:
        out: dict[str, Any] = {"anyOf": [_strict(b) for b in branches]}
        if "description" in node:
            out["description"] = node["description"]
        return out

    out = {"type": node["type"] if "type" in node else _infer_type(node)}
    types = [out["type"]] if isinstance(out["type"], str) else list(out["type"])
    for key in _KEPT_SCALAR_KEYWORDS:
        if key in node:
            out[key] = node[key]
    if node.get("format") in _STRICT_FORMATS:
        out["format"] = node["format"]
    if "object" in types:
        props = node.get("properties") or {}
        required = set(node.get("required") or ())
        out["properties"] = {
            name: (_strict(sub) if name in required else _nullable(_strict(sub)))
            for name, sub in props.items()
        }
        out["required"] = list(props)
        out["additionalProperties"] = False
    if "array" in types:
        out["items"] = _strict(node.get("items", {"type": "string"}))
    return out


def to_strict_schema(schema: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The agent's schema made strict-compatible, and its definitions (to hoist to the response's root $defs).

    Every property becomes required, the non-required ones nullable; ``additionalProperties: false`` everywhere;
    ``oneOf`` becomes ``anyOf``; unsupported keywords are dropped. ``None`` or an empty schema → an empty object.
    """
    if not schema:
        return {"type": "object", "properties": {}, "required": [], "additionalProperties": False}, {}
    defs: dict[str, Any] = {}
    for key in ("definitions", "$defs"):
        for name, sub in (schema.get(key) or {}).items():
            defs[name] = _strict(sub)
    body = {k: v for k, v in schema.items() if k not in ("$defs", "definitions", "$schema", "$id")}
    return _strict(body), defs


def build_response_schema(agent_analysis_schema: Mapping[str, Any] | None) -> dict[str, Any]:
    """The strict json_schema for the analysis answer (summary, sentiment, category, evaluation, extraction)."""
    extraction, defs = to_strict_schema(agent_analysis_schema)
    extraction = {
        **extraction,
        "description": "Facts the caller stated, per the agent's schema; null for anything not stated.",
    }
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "summary": {"type": "string", "description": "What happened on the call, in 2-4 sentences."},
            "sentiment": {
                "type": "string",
                "enum": list(SENTIMENTS),
                "description": "The caller's attitude.",
            },
            "lead_category": {"type": "string", "enum": list(LEAD_CATEGORIES)},
            "success_evaluation": {
                "type": "object",
                "properties": {
                    "success": {"type": "boolean"},
                    "score": {"type": "integer", "minimum": 0, "maximum": 10},
                    "reason": {"type": "string"},
                },
                "required": ["success", "score", "reason"],
                "additionalProperties": False,
            },
            "lead_extraction": extraction,
        },
        "required": ["summary", "sentiment", "lead_category", "success_evaluation", "lead_extraction"],
        "additionalProperties": False,
    }
    if defs:
        schema["$defs"] = defs
    return schema


def _path(parts: Iterable[Any]) -> str:
    text = ".".join(str(p) for p in parts)
    return text or "(root)"


def _object_depth(node: Any, depth: int = 0) -> int:
    if isinstance(node, Mapping):
        here = depth + 1 if "properties" in node else depth
        return max([here, *(_object_depth(v, here) for v in node.values())])
    if isinstance(node, list):
        return max([depth, *(_object_depth(v, depth) for v in node)])
    return depth


def _non_local_refs(node: Any, path: tuple[Any, ...] = ()) -> list[str]:
    found: list[str] = []
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and not value.startswith("#"):
                found.append(f"{_path((*path, key))}: only local references (#/...) are allowed")
            else:
                found.extend(_non_local_refs(value, (*path, key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(_non_local_refs(value, (*path, i)))
    return found


def validate_json_schema(schema: Any) -> list[str]:
    """Errors (``path: message``) that make ``schema`` unusable as an agent's analysis_schema; [] if fine.

    It must be a valid JSON Schema (Draft 2020-12) describing an object, with local references only and at most
    MAX_OBJECT_DEPTH levels of nested objects.
    """
    if not isinstance(schema, Mapping):
        return ["(root): the schema must be a JSON object"]
    meta = Draft202012Validator(Draft202012Validator.META_SCHEMA)
    errors = [f"{_path(e.absolute_path)}: {e.message}" for e in meta.iter_errors(dict(schema))]
    declared = schema.get("type")
    if declared != "object" and declared != ["object"]:
        errors.append('type: the schema must have "type": "object"')
    errors.extend(_non_local_refs(schema))
    depth = _object_depth(schema)
    if depth > MAX_OBJECT_DEPTH:
        errors.append(
            f"(root): objects are nested {depth} levels deep; at most {MAX_OBJECT_DEPTH} are allowed"
        )
    return sorted(set(errors))


# ---------------------------------------------------------------------------------------------------------------
# Messages


def iter_turns(turns: Iterable[Any]) -> list[tuple[str, str]]:
    """(speaker, text) pairs, speaker ``Agent`` or ``Caller``; other roles (system, tool) and empty text skipped.

    A turn is a mapping or object with ``role`` (or ``speaker``) and ``text`` (or ``content``).
    """
    out: list[tuple[str, str]] = []
    for turn in turns:
        if isinstance(turn, Mapping):
            role, text = turn.get("role") or turn.get("speaker"), turn.get("text") or turn.get("content")
        else:
            role = getattr(turn, "role", None) or getattr(turn, "speaker", None)
            text = getattr(turn, "text", None) or getattr(turn, "content", None)
        if not isinstance(text, str) or not text.strip():
            continue
        role = str(role or "").lower()
        if role in _AGENT_ROLES:
            out.append(("Agent", text.strip()))
        elif role in _CALLER_ROLES:
            out.append(("Caller", text.strip()))
    return out


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_transcript(turns: Iterable[Any], max_chars: int) -> tuple[str, bool]:
    """The transcript as ``Agent:``/``Caller:`` lines, the middle cut out when longer than ``max_chars``."""
    lines = [f"{who}: {_clip(' '.join(text.split()), MAX_TURN_CHARS)}" for who, text in iter_turns(turns)]
    if sum(len(line) + 1 for line in lines) <= max_chars:
        return "\n".join(lines), False
    budget = max_chars // 2
    head: list[str] = []
    used = 0
    for line in lines:
        if used + len(line) + 1 > budget:
            break
        head.append(line)
        used += len(line) + 1
    tail: list[str] = []
    used = 0
    for line in reversed(lines[len(head) :]):
        if used + len(line) + 1 > budget:
            break
        tail.append(line)
        used += len(line) + 1
    tail.reverse()
    omitted = len(lines) - len(head) - len(tail)
    marker = f"[... {omitted} turns omitted from the middle of the call ...]"
    return "\n".join([*head, marker, *tail]), True


def _field(source: Mapping[str, Any] | Any, *names: str) -> Any:
    for name in names:
        value = source.get(name) if isinstance(source, Mapping) else getattr(source, name, None)
        if value not in (None, ""):
            return value
    return None


def build_messages(
    transcript_turns: Sequence[Any],
    agent: Mapping[str, Any] | Any,
    call: Mapping[str, Any] | Any,
    *,
    max_transcript_chars: int = DEFAULT_MAX_TRANSCRIPT_CHARS,
) -> list[dict[str, str]]:
    """System + user messages for the analysis completion.

    ``agent``: name, goal and/or instructions, language. ``call``: direction, answered_by, duration (seconds).
    """
    transcript, truncated = render_transcript(transcript_turns, max_transcript_chars)
    name = _field(agent, "name") or "the agent"
    goal = _field(agent, "goal")
    instructions = _field(agent, "instructions", "system_prompt", "prompt")
    language = _field(agent, "language")
    direction = _field(call, "direction") or "unknown"
    answered_by = _field(call, "answered_by") or "unknown"
    duration = _field(call, "duration", "duration_seconds")

    categories = (
        "hot (ready to buy or book now), warm (interested, needs follow-up), cold (little interest, not a "
        "refusal), not_interested (declined), callback_requested (asked to be called at another time), "
        "wrong_number (not the intended person or business), voicemail (an answering machine or voicemail), "
        "do_not_call (asked not to be called again)"
    )
    system = [
        "You analyse a finished phone call between an AI voice agent and a person (the caller).",
        "Answer with one JSON object that matches the response schema:",
        "- summary: 2-4 factual sentences about what happened and what was agreed.",
        "- sentiment: the caller's overall attitude (positive, neutral, negative or mixed).",
        f"- lead_category: one of {categories}.",
        "- success_evaluation: whether the agent achieved its goal, a score from 0 (not at all) to 10 "
        "(fully), and a one-sentence reason.",
        "- lead_extraction: only facts the caller actually stated; use null for anything not stated. Never guess.",
        "Only the transcript is evidence; the agent's statements are not facts about the caller.",
    ]
    if language:
        system.append(f"Write summary and reason in the language of the call ({language}).")
    if truncated:
        system.append(
            "The transcript was too long: its middle part was omitted (marked in the text). Judge from the "
            "beginning and the end, and do not assume what the omitted part said."
        )
    context = [f"Agent: {name}"]
    if goal:
        context.append(f"Agent's goal: {_clip(str(goal), MAX_INSTRUCTIONS_CHARS)}")
    if instructions:
        context.append(f"Agent's instructions: {_clip(str(instructions), MAX_INSTRUCTIONS_CHARS)}")
    context.append(f"Call direction: {direction}")
    context.append(f"Answered by: {answered_by}")
    if duration is not None:
        context.append(f"Duration: {duration} seconds")
    user = "\n".join(context) + "\n\nTranscript:\n" + (transcript or "(no speech was transcribed)")
    return [{"role": "system", "content": "\n".join(system)}, {"role": "user", "content": user}]
