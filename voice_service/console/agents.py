"""Agent pages: the list, create, and edit (prompts, voice, language, transfer targets, analysis schema).

Writes go through the agents service with the API's own schemas and the API's guard (admin and owner write; anyone
in the tenant reads). A refused value is shown next to its input, in words that name the field; an htmx submit swaps
only the form, a plain submit gets the whole page back.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import FormMultiDict
from litestar.plugins.htmx import ClientRedirect
from litestar.response import Redirect, Response, Template

from voice_service.agents import service as agents
from voice_service.agents.schemas import Agent, AgentCreate, AgentUpdate
from voice_service.auth import requires, writes_need
from voice_service.console import forms
from voice_service.console.templating import page
from voice_service.db import tenant_tx
from voice_service.deps import Caller, Conn
from voice_service.errors import AppError, NotFound, ValidationFailed
from voice_service.params import QueryParameter
from voice_service.voices import service as voices

PAGE_SIZE = 25
MAX_TARGETS = 20  # AgentConfig.transfer_targets allows 20
_TARGET_INPUT = re.compile(r"^tt-(\d+)-(name|phone|description)$")
_TARGET_PATH = re.compile(r"^transfer_targets\.(\d+)\.(name|phone|description)$")
_TEXT = ("name", "language", "agent_instructions", "system_instructions", "outbound_starter_prompt",
         "inbound_starter_prompt")
LABELS = {
    "name": "Name",
    "language": "Language",
    "gender": "Gender",
    "voice_id": "Voice",
    "agent_instructions": "Instructions",
    "system_instructions": "System instructions",
    "outbound_starter_prompt": "Greeting on outbound calls",
    "inbound_starter_prompt": "Greeting on inbound calls",
    "analysis_schema": "Analysis schema",
    "transfer_targets": "Transfer targets",
    "config": "Settings",
}
_TARGET_WORDS = {"name": "name", "phone": "phone number", "description": "description"}


class AgentForm(msgspec.Struct, kw_only=True):
    """What the inputs hold, as typed (re-shown as they were when something is refused)."""

    name: str = ""
    language: str = "en-US"
    gender: str = ""
    voice_id: str = ""
    agent_instructions: str = ""
    system_instructions: str = ""
    outbound_starter_prompt: str = ""
    inbound_starter_prompt: str = ""
    analysis_schema: str = ""
    transfer_targets: list[dict[str, str]] = []


def label(key: str) -> str:
    m = re.match(r"^tt-(\d+)-(\w+)$", key)
    if m:
        return f"Transfer target {int(m.group(1)) + 1} {_TARGET_WORDS.get(m.group(2), m.group(2))}"
    return LABELS.get(key, key.replace("_", " ").capitalize())


def form_from_agent(agent: Agent) -> AgentForm:
    targets = [{"name": str(t.get("name", "")), "phone": str(t.get("phone", "")),
                "description": str(t.get("description", ""))} for t in agent.config.get("transfer_targets", [])]
    return AgentForm(
        name=agent.name, language=agent.language or "", gender=agent.gender or "",
        voice_id=str(agent.voice_id) if agent.voice_id else "",
        agent_instructions=agent.agent_instructions or "", system_instructions=agent.system_instructions or "",
        outbound_starter_prompt=agent.outbound_starter_prompt or "",
        inbound_starter_prompt=agent.inbound_starter_prompt or "",
        analysis_schema=json.dumps(agent.analysis_schema, indent=2) if agent.analysis_schema else "",
        transfer_targets=targets,
    )


def form_from_request(data: FormMultiDict) -> AgentForm:
    def text(name: str) -> str:
        value = data.get(name)
        return value if isinstance(value, str) else ""

    rows: dict[int, dict[str, str]] = {}
    for key in data:
        m = _TARGET_INPUT.match(key)
        if m and int(m.group(1)) < MAX_TARGETS * 5:
            rows.setdefault(int(m.group(1)), {"name": "", "phone": "", "description": ""})[m.group(2)] = text(key)
    return AgentForm(**{name: text(name) for name in _TEXT}, gender=text("gender"), voice_id=text("voice_id"),
                     analysis_schema=text("analysis_schema"), transfer_targets=[rows[i] for i in sorted(rows)])


def parse(form: AgentForm, base_config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Form → the API's field values, and the errors keyed by input (`name`, `tt-0-phone`, `analysis_schema`)."""
    errors: dict[str, str] = {}
    values: dict[str, Any] = {
        "name": form.name.strip(),
        "language": form.language.strip(),
        "gender": form.gender or None,
        "voice_id": form.voice_id or None,
    }
    for name in ("agent_instructions", "system_instructions", "outbound_starter_prompt", "inbound_starter_prompt"):
        values[name] = getattr(form, name).strip() or None
    schema_text = form.analysis_schema.strip()
    if schema_text:
        try:
            schema = json.loads(schema_text)
        except json.JSONDecodeError as exc:
            errors["analysis_schema"] = (f"Analysis schema is not valid JSON: {exc.msg} "
                                         f"(line {exc.lineno}, column {exc.colno})")
        else:
            if isinstance(schema, dict):
                values["analysis_schema"] = schema
            else:
                errors["analysis_schema"] = 'Analysis schema must be a JSON object, e.g. {"type": "object", …}'
    else:
        values["analysis_schema"] = None
    # Blank rows are left out; each kept row remembers its input row so an error lands next to the right input.
    kept = [(i, row) for i, row in enumerate(form.transfer_targets) if any(v.strip() for v in row.values())]
    values["config"] = {**base_config, "transfer_targets": [
        {k: v.strip() for k, v in row.items()} for _, row in kept
    ]}

    def key(field: str, path: str) -> str:
        if field == "config":
            m = _TARGET_PATH.match(path)
            if m:
                return f"tt-{kept[int(m.group(1))][0]}-{m.group(2)}"
            return "transfer_targets" if path.startswith("transfer_targets") else "config"
        return field

    errors.update(forms.check(AgentCreate, values, key=key, label=label))
    return values, errors


def agent_id_of(text: str) -> int:
    """A str path parameter, parsed here: a malformed id is this console's 404 page, behind the session check."""
    if not (text.isdigit() and len(text) <= 19):
        raise NotFound("agent not found")
    return int(text)


def _service_errors(exc: AppError) -> dict[str, str]:
    """A service's refusal, keyed by input: every message it gives for a field, or one for the whole form."""
    out: dict[str, str] = {}
    for item in exc.errors or [{"field": exc.field, "message": exc.detail}]:
        field = item.get("field") or "_form"
        text = str(item.get("message", exc.detail))
        text = f"{label(field)}: {text}" if field != "_form" else text
        out[field] = f"{out[field]}; {text}" if field in out else text
    return out


class AgentPages(Controller):
    path = "/agents"
    guards = [writes_need("admin")]  # the API's rule for /v1/agents

    async def _voices(self, conn: Any, principal: Any) -> list[Any]:
        return (await voices.list_(conn, principal, 200, None, None, None)).items

    @get("/", name="console:agents")
    async def list_agents(self, request: Request[Any, Any, Any], conn: Conn, principal: Caller,
                          cursor: str | None = QueryParameter(name="cursor", default=None, max_length=200)
                          ) -> Template:
        result = await agents.list_(conn, principal, PAGE_SIZE, cursor)
        return page(request, "console/agents/list.html", nav="agents", agents=result.items,
                    next_cursor=result.next_cursor, paged=cursor is not None)

    @get("/new", name="console:agent-new", guards=[requires("admin")])
    async def new_agent(self, request: Request[Any, Any, Any], conn: Conn, principal: Caller) -> Template:
        return self._form(request, AgentForm(), {}, await self._voices(conn, principal), agent=None)

    @post("/new", name="console:agent-create", status_code=303)
    async def create_agent(self, request: Request[Any, Any, Any], principal: Caller) -> Response[Any]:
        form = form_from_request(await request.form())
        values, errors = parse(form, {})
        pool = request.app.state.pool
        agent: Agent | None = None
        if not errors:
            try:
                async with tenant_tx(pool, principal.tenant_id) as conn:
                    agent = await agents.create(conn, principal, msgspec.convert(values, AgentCreate))
            except ValidationFailed as exc:
                errors = _service_errors(exc)
        if agent is None:
            async with tenant_tx(pool, principal.tenant_id) as conn:
                voice_list = await self._voices(conn, principal)
            return self._form(request, form, errors, voice_list, agent=None, status_code=422)
        return self._saved(request, agent.id)

    @get("/{agent_id:str}", name="console:agent")
    async def show_agent(self, request: Request[Any, Any, Any], conn: Conn, principal: Caller,
                         agent_id: str, saved: bool = QueryParameter(name="saved", default=False)) -> Template:
        agent = await agents.get(conn, principal, agent_id_of(agent_id))
        voice_list = await self._voices(conn, principal)
        if not principal.at_least("admin"):
            voice = next((v for v in voice_list if v.id == agent.voice_id), None)
            return page(request, "console/agents/view.html", nav="agents", agent=agent, voice=voice, saved=saved)
        return self._form(request, form_from_agent(agent), {}, voice_list, agent=agent, saved=saved)

    @post("/{agent_id:str}", name="console:agent-update", status_code=303)
    async def update_agent(self, request: Request[Any, Any, Any], principal: Caller, agent_id: str) -> Response[Any]:
        number = agent_id_of(agent_id)
        form = form_from_request(await request.form())
        pool = request.app.state.pool
        errors: dict[str, str] = {}
        try:
            async with tenant_tx(pool, principal.tenant_id) as conn:
                current = await agents.get(conn, principal, number)
                values, errors = parse(form, current.config)
                if not errors:
                    await agents.update(conn, principal, number, msgspec.convert(values, AgentUpdate))
        except ValidationFailed as exc:
            errors = _service_errors(exc)
        if errors:
            async with tenant_tx(pool, principal.tenant_id) as conn:
                voice_list = await self._voices(conn, principal)
            return self._form(request, form, errors, voice_list, agent=current, status_code=422)
        return self._saved(request, number)

    @get("/transfer-target-row", name="console:agent-transfer-row")
    async def transfer_target_row(self, request: Request[Any, Any, Any]) -> Template | Response[Any]:
        """One more empty row of transfer-target inputs (the "Add a transfer target" button)."""
        used = [int(m.group(1)) for k in request.query_params if (m := _TARGET_INPUT.match(k))]
        if len({*used}) >= MAX_TARGETS:
            return Response("An agent has at most 20 transfer targets.", status_code=422, media_type="text/plain")
        index = max(used, default=-1) + 1
        return page(request, "console/agents/_transfer_row.html", index=index,
                    row={"name": "", "phone": "", "description": ""}, errors={})

    def _form(self, request: Request[Any, Any, Any], form: AgentForm, errors: dict[str, str], voice_list: list[Any],
              *, agent: Agent | None, status_code: int = 200, saved: bool = False) -> Template:
        template = ("console/agents/_form.html" if request.headers.get("hx-request") == "true" and status_code == 422
                    else "console/agents/form.html")
        voice_options = [(str(v.id), f"{v.name or v.provider_voice_id} ({v.provider})") for v in voice_list]
        return page(request, template, status_code=status_code, nav="agents", form=form, errors=errors,
                    voice_options=voice_options, agent=agent, saved=saved, labels=LABELS, label=label)

    def _saved(self, request: Request[Any, Any, Any], agent_id: int) -> Response[Any]:
        target = f"/console/agents/{agent_id}?saved=true"
        if request.headers.get("hx-request") == "true":
            response = ClientRedirect(target)
            response.status_code = 200  # not the handler's 303: htmx acts on HX-Redirect of a 2xx
            return response
        return Redirect(target, status_code=303)
