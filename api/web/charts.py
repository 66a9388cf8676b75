"""Charts drawn on the server as inline SVG: no script, no CDN, and they print as they show.

Colours come from classes styled in static/web.css (``series-0``, ``series-1``), so the markup carries
no inline style (a Content-Security-Policy without 'unsafe-inline' keeps them).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup


def _nice_range(values: Sequence[float], floor_zero: bool = True) -> tuple[float, float]:
    lo = min(values) if values else 0.0
    hi = max(values) if values else 1.0
    if floor_zero:
        lo = min(lo, 0.0)
    if hi == lo:
        hi = lo + 1
    pad = (hi - lo) * 0.08
    return lo - (0 if floor_zero and lo == 0 else pad), hi + pad


def line_chart(title: str, x_labels: Sequence[str], series: Sequence[tuple[str, Sequence[float | None]]],
               width: int = 640, height: int = 260) -> Markup:
    """One polyline per series over shared x labels (visits); a gap where a value is missing."""
    left, right, top, bottom = 48, 16, 28, 40
    values = [v for _, vs in series for v in vs if v is not None]
    lo, hi = _nice_range(values)
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(len(x_labels), 1)

    def x(i: int) -> float:
        return left + (plot_w * (i + 0.5) / n)

    def y(v: float) -> float:
        return top + plot_h - (v - lo) / (hi - lo) * plot_h

    out = [f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    out.append(f'<text x="{left}" y="16" class="chart-title">{escape(title)}</text>')
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        out.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}"/>')
        out.append(f'<text class="tick" x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.0f}</text>')
    for i, label in enumerate(x_labels):
        out.append(f'<text class="tick" x="{x(i):.1f}" y="{height - bottom + 16}" text-anchor="middle">{escape(label)}</text>')
    for s, (name, vs) in enumerate(series):
        run: list[str] = []
        runs: list[list[str]] = []
        for i, v in enumerate(vs):
            if v is None:
                if run:
                    runs.append(run)
                run = []
                continue
            run.append(f"{x(i):.1f},{y(v):.1f}")
        if run:
            runs.append(run)
        for r in runs:
            out.append(f'<polyline class="line series-{s}" points="{" ".join(r)}"/>')
        for i, v in enumerate(vs):
            if v is not None:
                out.append(f'<circle class="dot series-{s}" cx="{x(i):.1f}" cy="{y(v):.1f}" r="3.5">'
                           f'<title>{escape(name)} at {escape(x_labels[i])}: {v:g}</title></circle>')
        lx = left + 10 + s * 200
        out.append(f'<rect class="swatch series-{s}" x="{lx}" y="{height - 14}" width="12" height="8"/>'
                   f'<text class="legend" x="{lx + 16}" y="{height - 6}">{escape(name)}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def box_chart(title: str, rows: Sequence[tuple[str, dict | None]], width: int = 640, row_h: int = 46) -> Markup:
    """Horizontal boxes per arm: the interquartile range, the median (line) and the mean (diamond)."""
    left, right, top = 190, 20, 30
    height = top + row_h * len(rows) + 30
    stats = [s for _, s in rows if s and s.get("n")]
    values = [s[k] for s in stats for k in ("q1", "q3", "median", "mean") if s.get(k) is not None]
    lo, hi = _nice_range(values, floor_zero=False)
    plot_w = width - left - right

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * plot_w

    out = [f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    out.append(f'<text x="8" y="16" class="chart-title">{escape(title)}</text>')
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        out.append(f'<line class="grid" x1="{x(v):.1f}" x2="{x(v):.1f}" y1="{top - 6}" y2="{height - 24}"/>')
        out.append(f'<text class="tick" x="{x(v):.1f}" y="{height - 8}" text-anchor="middle">{v:.1f}</text>')
    for i, (name, s) in enumerate(rows):
        cy = top + row_h * i + row_h / 2
        out.append(f'<text class="legend" x="8" y="{cy + 4:.1f}">{escape(name)}</text>')
        if not s or not s.get("n") or s.get("q1") is None:
            out.append(f'<text class="tick" x="{left}" y="{cy + 4:.1f}">no data</text>')
            continue
        x1, x3, xm = x(s["q1"]), x(s["q3"]), x(s["median"])
        out.append(f'<rect class="box series-{i}" x="{x1:.1f}" y="{cy - 12:.1f}" width="{max(x3 - x1, 1):.1f}" height="24">'
                   f'<title>{escape(name)}: n={s["n"]}, median {s["median"]:g}, IQR {s["q1"]:g} to {s["q3"]:g}, '
                   f'mean {s["mean"]:g}</title></rect>')
        out.append(f'<line class="median" x1="{xm:.1f}" x2="{xm:.1f}" y1="{cy - 14:.1f}" y2="{cy + 14:.1f}"/>')
        if s.get("mean") is not None:
            mx = x(s["mean"])
            out.append(f'<path class="mean" d="M{mx:.1f} {cy - 6:.1f} L{mx + 6:.1f} {cy:.1f} L{mx:.1f} {cy + 6:.1f} '
                       f'L{mx - 6:.1f} {cy:.1f} Z"/>')
    out.append("</svg>")
    return Markup("".join(out))
