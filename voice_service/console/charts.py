"""Small charts drawn on the server as SVG (no chart library, no script): a call's per-turn latency.

Colours come from classes in console.css (CSP allows no inline style; SVG presentation attributes are not styles).
Every chart carries a title and a description for screen readers, and the page shows the same figures as a table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from markupsafe import Markup, escape

# The three stages of an agent's answer, in the order they happen.
STAGES = (("stt_final_ms", "Speech-to-text", "lat-stt"), ("llm_first_token_ms", "LLM first token", "lat-llm"),
          ("tts_first_byte_ms", "Text-to-speech first byte", "lat-tts"))
_WIDTH, _LEFT, _RIGHT, _BAR, _GAP, _TOP, _AXIS = 640, 96, 40, 16, 10, 8, 28


def _nice_step(span: float) -> float:
    """A round tick step (1, 2 or 5 × 10^n) giving about five ticks over `span`."""
    raw = max(span / 5, 1e-9)
    power: float = 10.0 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def _ms(value: float) -> str:
    return f"{value:,.0f} ms" if value < 10_000 else f"{value / 1000:,.1f} s"


def latency_chart(turns: Sequence[Any], *, chart_id: str = "latency-chart") -> Markup:
    """Stacked horizontal bars, one per agent turn: how long speech-to-text, the LLM's first token and the TTS's
    first byte took. Empty markup when no turn has a figure."""
    rows = [t for t in turns if any(getattr(t, key) is not None for key, _, _ in STAGES)]
    if not rows:
        return Markup("")
    longest = max(sum(getattr(t, key) or 0.0 for key, _, _ in STAGES) for t in rows)
    step = _nice_step(longest)
    top = step * max(1, math.ceil(longest / step))
    plot = _WIDTH - _LEFT - _RIGHT
    height = _TOP + len(rows) * (_BAR + _GAP) + _AXIS

    def x(value: float) -> float:
        return _LEFT + plot * value / top

    parts = [Markup('<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
                    'role="img" aria-labelledby="{id}-title {id}-desc">').format(w=_WIDTH, h=height, id=chart_id),
             Markup('<title id="{}-title">Latency of each agent turn</title>').format(chart_id),
             Markup('<desc id="{}-desc">Stacked bars per turn: speech-to-text, LLM first token, text-to-speech first '
                    'byte, in milliseconds. The same figures are in the table below.</desc>').format(chart_id)]
    tick = 0.0
    while tick <= top + 1e-9:
        tx = x(tick)
        parts.append(Markup('<line class="chart-grid" x1="{x:.1f}" x2="{x:.1f}" y1="{y1}" y2="{y2}"/>'
                            '<text class="chart-label" x="{x:.1f}" y="{ty}" text-anchor="middle">{t}</text>').format(
            x=tx, y1=_TOP - 4, y2=height - _AXIS + 4, ty=height - 8, t=_ms(tick)))
        tick += step
    for i, turn in enumerate(rows):
        y = _TOP + i * (_BAR + _GAP)
        trigger = getattr(turn, "trigger", "") or ""
        parts.append(Markup('<text class="chart-label" x="{lx}" y="{ty}" text-anchor="end">Turn {n}</text>').format(
            lx=_LEFT - 8, ty=y + _BAR - 3, n=turn.turn))
        start = 0.0
        for key, name, css in STAGES:
            value = getattr(turn, key)
            if value is None or value <= 0:
                continue
            parts.append(Markup('<rect class="{c}" x="{x:.1f}" y="{y}" width="{w:.1f}" height="{h}">'
                                '<title>Turn {n}{tr}: {name} {v}</title></rect>').format(
                c=css, x=x(start), y=y, w=max(x(start + value) - x(start), 1.0), h=_BAR, n=turn.turn,
                tr=f" ({trigger})" if trigger else "", name=name, v=_ms(value)))
            start += value
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


def legend() -> Markup:
    items = [Markup('<li><span class="swatch {}" aria-hidden="true"></span>{}</li>').format(css, escape(name))
             for _, name, css in STAGES]
    return Markup('<ul class="chart-legend">{}</ul>').format(Markup("").join(items))
