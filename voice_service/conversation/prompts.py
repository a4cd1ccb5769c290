"""What the agent says and knows: `{{variable}}` substitution, the system prompt, the starter line.

Variables come from the call's lead (first_name, last_name, name, company_name, title, email, phone,
timezone and every custom field, also reachable as `lead.<field>`) overlaid with the request's own
`variables` (which win). A placeholder with no value renders as an empty string, never as the raw
`{{…}}`: the caller would hear the braces read out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from voice_service.agents.schemas import AgentConfig

_PLACEHOLDER = re.compile(r"\{\{\s*([\w.\-]+)\s*\}\}")
_LEAD_FIELDS = ("first_name", "last_name", "company_name", "title", "email", "phone", "timezone")

# How a phone agent must write: everything it writes is read aloud.
_VOICE_STYLE = (
    "You are speaking with a person on a live phone call; everything you write is spoken aloud by a "
    "text-to-speech voice. Answer in short, natural spoken sentences (one to three per turn). Never use "
    "markdown, lists, emojis, URLs or special characters. Spell out numbers, dates and times the way a "
    "person would say them. If you did not understand the caller, ask them to repeat."
)


def call_variables(
    lead: Mapping[str, Any] | None, request_variables: Mapping[str, Any] | None
) -> dict[str, str]:
    """The flat variable map a call's templates are rendered with (request variables override lead fields)."""
    values: dict[str, str] = {}
    if lead:
        for field in _LEAD_FIELDS:
            value = lead.get(field)
            if value not in (None, ""):
                values[field] = values[f"lead.{field}"] = str(value)
        name = " ".join(str(lead[f]) for f in ("first_name", "last_name") if lead.get(f))
        if name:
            values["name"] = values["full_name"] = values["lead.name"] = name
        custom = lead.get("custom_fields") or {}
        if isinstance(custom, Mapping):
            for key, value in custom.items():
                if value is not None and not isinstance(value, dict | list):
                    values.setdefault(str(key), str(value))
                    values[f"lead.{key}"] = str(value)
    for key, value in (request_variables or {}).items():
        if value is not None:
            values[str(key)] = value if isinstance(value, str) else str(value)
    return values


def render(template: str | None, variables: Mapping[str, str]) -> str:
    """Substitute `{{name}}` placeholders; unknown names become empty; whitespace left behind is tidied."""
    if not template:
        return ""
    text = _PLACEHOLDER.sub(lambda m: variables.get(m.group(1), ""), template)
    # "Hi {{first_name}}, …" with no name → "Hi , …": drop the space before punctuation, squeeze spaces.
    text = re.sub(r"[ \t]+([,.!?;:])", r"\1", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def starter_text(agent: Mapping[str, Any], direction: str, variables: Mapping[str, str]) -> str:
    """The line the agent opens with; empty when the agent has none for this direction (the LLM opens)."""
    if direction == "web":  # the person came to the agent (as on an inbound call); else the outbound greeting
        return render(agent.get("inbound_starter_prompt") or agent.get("outbound_starter_prompt"), variables)
    key = "inbound_starter_prompt" if direction == "inbound" else "outbound_starter_prompt"
    return render(agent.get(key), variables)


def language_name(language: str | None) -> str:
    return language or "en-US"


def system_prompt(
    agent: Mapping[str, Any], config: AgentConfig, *, direction: str, variables: Mapping[str, str]
) -> str:
    """System instructions, then the agent's own instructions and goal, language, tools and call facts."""
    parts: list[str] = []
    system = render(agent.get("system_instructions"), variables)
    if system:
        parts.append(system)
    parts.append(_VOICE_STYLE)
    instructions = render(agent.get("agent_instructions"), variables)
    if instructions:
        parts.append(f"Your instructions:\n{instructions}")
    goal = render(config.goal, variables)
    if goal:
        parts.append(f"The goal of this call: {goal}")
    language = language_name(agent.get("language"))
    parts.append(f"Speak only in the language with the code {language}, whatever language the caller uses.")
    who = {
        "inbound": "The caller phoned you.",
        "web": "The caller is talking to you from a web page (a call from their browser, not a phone).",
    }.get(direction, "You phoned this person.")
    parts.append(who)
    facts = {k: v for k, v in variables.items() if not k.startswith("lead.")}
    if facts:
        lines = "\n".join(f"- {k}: {v}" for k, v in sorted(facts.items()))
        parts.append(f"What you know about this call:\n{lines}")
    tools = [
        "When the conversation is over (the caller says goodbye, asks to end the call, or the goal is "
        "reached and nothing is left to discuss), call the end_call tool; say your goodbye in the same turn."
    ]
    if config.transfer_targets and direction != "web":  # a web call has no phone leg to transfer
        targets = "\n".join(
            f"- {t.name}" + (f": {t.description}" if t.description else "") for t in config.transfer_targets
        )
        tools.append(
            "If the caller asks for a person or something you cannot handle, call transfer_call with one of "
            f"these targets (tell the caller you are transferring them first):\n{targets}"
        )
    tools.append(
        'Keypad presses reach you as text like "[keypad] 1 2 3 #"; treat them as the caller\'s answer.'
    )
    parts.append("\n".join(tools))
    return "\n\n".join(parts)
