"""Server-side SVG charts for the admin dashboard (no JavaScript, no CDN).

Every value placed in the markup is a number computed here or a label escaped here.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from reports.selectors import PeriodRow


def human_bytes(value: int) -> str:
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"  # pragma: no cover


def _nice_max(value: int) -> int:
    """A round axis maximum at or above `value` (1, 2 or 5 times a power of ten)."""
    if value <= 0:
        return 1
    magnitude = 1
    while magnitude * 10 <= value:
        magnitude *= 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude  # pragma: no cover


def daily_chart_svg(
    rows: Sequence[PeriodRow], *, width: int = 900, height: int = 260
) -> SafeString:
    """Bars: uploads per day (left axis). Line: bytes per day (right axis)."""
    left, right, top, bottom = 56, 72, 16, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(len(rows), 1)
    slot = plot_w / n
    max_uploads = _nice_max(max((r.uploads for r in rows), default=0))
    max_bytes = _nice_max(max((r.bytes for r in rows), default=0))

    parts: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="Uploads and bytes per day" class="daily-chart">',
        "<title>Uploads (bars) and bytes (line) per day</title>",
    ]
    for i in range(5):  # horizontal grid with both axes' labels
        frac = i / 4
        y = top + plot_h - frac * plot_h
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
            f'stroke="#ddd" stroke-width="1"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#417690">{round(max_uploads * frac):,}</text>'
        )
        parts.append(
            f'<text x="{left + plot_w + 6}" y="{y + 4:.1f}" font-size="11" fill="#b35900">'
            f"{escape(human_bytes(round(max_bytes * frac)))}</text>"
        )
    points = []
    for i, row in enumerate(rows):
        x = left + i * slot
        bar_h = row.uploads / max_uploads * plot_h
        label = f"{row.period.isoformat()}: {row.uploads:,} uploads, {human_bytes(row.bytes)}"
        parts.append(
            f'<rect class="bar" x="{x + slot * 0.15:.1f}" y="{top + plot_h - bar_h:.1f}" '
            f'width="{slot * 0.7:.1f}" height="{bar_h:.1f}" fill="#79aec8" '
            f'data-day="{row.period.isoformat()}" data-uploads="{row.uploads}" '
            f'data-bytes="{row.bytes}"><title>{escape(label)}</title></rect>'
        )
        points.append(f"{x + slot / 2:.1f},{top + plot_h - row.bytes / max_bytes * plot_h:.1f}")
        if n <= 16 or i % max(1, n // 8) == 0 or i == n - 1:
            parts.append(
                f'<text x="{x + slot / 2:.1f}" y="{height - bottom + 16}" text-anchor="middle" '
                f'font-size="10" fill="#666">{row.period.strftime("%m-%d")}</text>'
            )
    if points:
        parts.append(
            f'<polyline class="bytes-line" points="{" ".join(points)}" fill="none" '
            f'stroke="#b35900" stroke-width="2"/>'
        )
    parts.append(
        f'<text x="{left}" y="{height - 4}" font-size="11" fill="#417690">■ uploads</text>'
        f'<text x="{left + 90}" y="{height - 4}" font-size="11" fill="#b35900">— bytes</text>'
    )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - built above from numbers and escaped text
