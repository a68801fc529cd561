"""Small inline SVG charts rendered on the server: no script, no third-party library."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

PALETTE = ("#2f6fde", "#e8833a", "#3aa45b", "#c2413b", "#8a5cc2", "#6b7280")
# A delivery's meaning (ackhub.hub.console.data `meaning`) → its colour, the same as the pills in console.css.
MEANING_COLOURS = {"accepted": "#3aa45b", "rejected": "#c2413b", "waiting": "#d4920f", "closed": "#8a8f99"}


def _fmt(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def bars(
    items: Sequence[tuple[str, float]],
    *,
    title: str,
    width: int = 420,
    unit: str = "",
    meanings: Sequence[str] | None = None,
    label_w: int = 110,
) -> Markup:
    """Horizontal bars, one per (label, value); coloured by `meanings` (one per item) when given, so that
    a colour always says the same thing, else from the palette in turn."""
    row = 22
    height = max(1, len(items)) * row + 8
    top = max((v for _, v in items), default=0) or 1
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}"><title>{escape(title)}</title>'
    ]
    if not items:
        parts.append('<text x="4" y="18" class="muted">—</text>')
    for i, (label, value) in enumerate(items):
        y = 4 + i * row
        w = (width - label_w - 60) * value / top
        fill = MEANING_COLOURS[meanings[i]] if meanings else PALETTE[i % len(PALETTE)]
        tag = f' data-meaning="{meanings[i]}"' if meanings else ""
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{row - 8}" fill="{fill}"{tag}/>'
            f'<text x="{label_w + w + 4:.1f}" y="{y + 14}">{_fmt(value)}{escape(unit)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def columns(values: Sequence[float], *, title: str, width: int = 480, height: int = 120) -> Markup:
    """A column per value, oldest on the left (e.g. records per minute over the last hour)."""
    top = max(values, default=0) or 1
    n = max(1, len(values))
    step = (width - 30) / n
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height + 16}" '
        f'width="{width}" height="{height + 16}"><title>{escape(title)}</title>'
        f'<text x="0" y="10" class="muted">{_fmt(top)}</text>'
        f'<line x1="28" y1="{height}" x2="{width}" y2="{height}" stroke="#999"/>'
    ]
    for i, value in enumerate(values):
        h = (height - 14) * value / top
        parts.append(
            f'<rect x="{30 + i * step:.1f}" y="{height - h:.1f}" width="{max(step - 1, 1):.1f}" '
            f'height="{h:.1f}" fill="{PALETTE[0]}"><title>{_fmt(value)}</title></rect>'
        )
    parts.append(f'<text x="30" y="{height + 13}" class="muted">-60m</text>')
    parts.append(f'<text x="{width}" y="{height + 13}" text-anchor="end" class="muted">now</text></svg>')
    return Markup("".join(parts))


def grouped(
    groups: Sequence[tuple[str, Sequence[float]]], series: Sequence[str], *, title: str, width: int = 480
) -> Markup:
    """Grouped horizontal bars: per group (an agency) one bar per series (p50, p95, p99)."""
    bar, label_w = 12, 110
    group_h = bar * len(series) + 10
    height = max(1, len(groups)) * group_h + 24
    top = max((v for _, vs in groups for v in vs), default=0) or 1
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}"><title>{escape(title)}</title>'
    ]
    for j, name in enumerate(series):
        parts.append(
            f'<rect x="{label_w + j * 70}" y="2" width="10" height="10" fill="{PALETTE[j]}"/>'
            f'<text x="{label_w + j * 70 + 14}" y="11">{escape(name)}</text>'
        )
    if not groups:
        parts.append('<text x="4" y="36" class="muted">—</text>')
    for i, (label, vs) in enumerate(groups):
        y = 20 + i * group_h
        parts.append(
            f'<text x="{label_w - 6}" y="{y + group_h / 2 + 3:.0f}" text-anchor="end">{escape(label)}</text>'
        )
        for j, value in enumerate(vs):
            w = (width - label_w - 70) * value / top
            parts.append(
                f'<rect x="{label_w}" y="{y + j * bar}" width="{w:.1f}" height="{bar - 2}" fill="{PALETTE[j]}"/>'
                f'<text x="{label_w + w + 4:.1f}" y="{y + j * bar + 9}" font-size="10">{_fmt(value)} ms</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))
