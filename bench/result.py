"""The row every benchmark returns, and its checks against targets."""

from __future__ import annotations

import operator
from typing import Any

_OPS = {">=": operator.ge, "<=": operator.le, "==": operator.eq, ">": operator.gt, "<": operator.lt}


def check(what: str, value: float | None, op: str, limit: float, unit: str = "") -> dict[str, Any]:
    """One target: ``value op limit``; a missing value fails."""
    passed = value is not None and _OPS[op](value, limit)
    return {"what": what, "value": value, "op": op, "limit": limit, "unit": unit, "passed": passed}


def row(
    module: str,
    name: str,
    figure: float | None,
    unit: str,
    *,
    p50_ms: float | None = None,
    p99_ms: float | None = None,
    errors: int | None = None,
    baseline: str | None = None,
    baseline_figure: float | None = None,
    ratio: float | None = None,
    checks: list[dict[str, Any]] | None = None,
    notes: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A result row. With ``checks`` it has a target and passes iff every check passes; without, it is a
    reference figure (``passed`` is None)."""
    if ratio is None and figure is not None and baseline_figure:
        ratio = figure / baseline_figure
    checks = checks or []
    target = ", ".join(f"{c['what']} {c['op']} {_fmt(c['limit'])}{c['unit']}" for c in checks) or None
    return {
        "module": module,
        "name": name,
        "figure": figure,
        "unit": unit,
        "p50_ms": p50_ms,
        "p99_ms": p99_ms,
        "errors": errors,
        "baseline": baseline,
        "baseline_figure": baseline_figure,
        "ratio": ratio,
        "target": target,
        "checks": checks,
        "passed": all(c["passed"] for c in checks) if checks else None,
        "notes": notes,
        **extra,
    }


def _fmt(x: float) -> str:
    if isinstance(x, float) and not x.is_integer():
        return f"{x:g}"
    return f"{int(x):,}"
