"""Rules for agents: references stay inside the tenant, analysis_schema must be a valid JSON Schema, and the
language must be one the agent's speech-to-text model can take."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from analysis.prompt import validate_json_schema
from providers.stt.deepgram import DEFAULT_MODEL as DEFAULT_STT_MODEL
from providers.stt.deepgram import UnsupportedLanguage, deepgram_language
from voice_service.agents.repository import agents, read_agent_json, read_page_json
from voice_service.agents.schemas import Agent, AgentCreate, AgentUpdate
from voice_service.auth import Principal
from voice_service.crud import fields_of
from voice_service.deps import TenantReader
from voice_service.errors import NotFound, ValidationFailed
from voice_service.pagination import Page, check_limit, decode_cursor, page_from_rows, page_json
from voice_service.voices.repository import voices


def to_agent(row: asyncpg.Record) -> Agent:
    data = dict(row)
    data["analysis_schema"] = data["analysis_schema"] or None  # stored as {} when the agent has none
    return Agent(**data)


def _store(fields: dict[str, Any]) -> dict[str, Any]:
    if "analysis_schema" in fields and fields["analysis_schema"] is None:
        fields["analysis_schema"] = {}
    return fields


def _check_schema(schema: dict[str, Any] | None) -> None:
    if schema is None:
        return
    problems = validate_json_schema(schema)
    if problems:
        raise ValidationFailed(f"not a valid JSON Schema: {problems[0]}", field="analysis_schema",
                               errors=[{"field": "analysis_schema", "message": p} for p in problems])


def _check_language(language: str, config: dict[str, Any] | None) -> None:
    """Deepgram refuses a stream whose language its model does not take: every call of such an agent would end
    stt_failed, so the agent is refused instead (calls use config.stt_model, else Deepgram's default model)."""
    model = (config or {}).get("stt_model") or DEFAULT_STT_MODEL
    try:
        deepgram_language(model, language)
    except UnsupportedLanguage as exc:
        raise ValidationFailed(f"language: {exc}", field="language") from None


async def _check_voice(conn: asyncpg.Connection, principal: Principal, voice_id: Any) -> None:
    if voice_id is not None and not await voices.exists(conn, principal.tenant_id, voice_id):
        raise ValidationFailed("no voice with this id in your tenant", field="voice_id")


async def create(conn: asyncpg.Connection, principal: Principal, data: AgentCreate) -> Agent:
    _check_schema(data.analysis_schema)
    await _check_voice(conn, principal, data.voice_id)
    fields = fields_of(data, not_null=("name", "language", "config", "metadata"))
    _check_language(fields["language"], fields["config"])
    return to_agent(await agents.insert(conn, principal.tenant_id, _store(fields)))


MAX_BIGINT = 2**63 - 1


def _check_id(agent_id: int) -> None:
    if not 0 < agent_id <= MAX_BIGINT:
        raise NotFound("agent not found")


async def get(conn: asyncpg.Connection, principal: Principal, agent_id: int) -> Agent:
    _check_id(agent_id)
    row = await agents.get(conn, principal.tenant_id, agent_id)
    if row is None:
        raise NotFound("agent not found")
    return to_agent(row)


_doc_decoder = msgspec.json.Decoder()  # as db's jsonb codec decodes the row's JSON columns
_doc_encoder = msgspec.json.Encoder()


async def read_json(reader: TenantReader, agent_id: int) -> bytes:
    """`get` in one database round trip (no transaction), as the response's JSON: the text the row stores (sql/0097, PostgreSQL's spacing) re-encoded by msgspec,
    which gives the bytes the `Agent` itself encodes to (the same fields in the same order, the JSON columns decoded
    by the same decoder) without decoding the row's columns into objects first."""
    _check_id(agent_id)
    doc = await read_agent_json(reader.pool, reader.tenant_id, agent_id)
    if doc is None:
        raise NotFound("agent not found")
    return _doc_encoder.encode(_doc_decoder.decode(doc))


async def update(conn: asyncpg.Connection, principal: Principal, agent_id: int, data: AgentUpdate) -> Agent:
    _check_id(agent_id)
    fields = fields_of(data, not_null=("name", "language", "config", "metadata"))
    _check_schema(fields.get("analysis_schema"))
    await _check_voice(conn, principal, fields.get("voice_id"))
    if "language" in fields or "config" in fields:
        current = await agents.get(conn, principal.tenant_id, agent_id)
        if current is None:
            raise NotFound("agent not found")
        language = fields.get("language", current["language"]) or "en-US"  # a NULL language calls in en-US
        _check_language(language, fields.get("config", current["config"]))
    row = await agents.update(conn, principal.tenant_id, agent_id, _store(fields))
    if row is None:
        raise NotFound("agent not found")
    return to_agent(row)


async def delete(conn: asyncpg.Connection, principal: Principal, agent_id: int) -> None:
    _check_id(agent_id)
    if not await agents.soft_delete(conn, principal.tenant_id, agent_id):
        raise NotFound("agent not found")


async def read_page(reader: TenantReader, limit: int, cursor: str | None) -> bytes:
    """`list_` in one database round trip, as the response's JSON (`Page[Agent]`), the items encoded by
    PostgreSQL (a 50-item page decoded into objects and encoded again cost the service most of its time)."""
    items, last = await read_page_json(reader.pool, reader.tenant_id, limit=check_limit(limit),
                                       after=decode_cursor(cursor, id_kind="int") if cursor else None)
    return page_json(items, last)


async def list_(conn: asyncpg.Connection, principal: Principal, limit: int, cursor: str | None) -> Page[Agent]:
    rows = await agents.page(conn, principal.tenant_id, limit=check_limit(limit),
                             after=decode_cursor(cursor, id_kind="int") if cursor else None)
    return page_from_rows(rows, limit, to_agent)
