"""``python -m bench``: run the benchmarks found in bench/, print one table, optionally write JSON.

Exit status: 0 when every target is met, 1 when one is missed (or a benchmark failed to run), 2 on usage errors.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import pkgutil
import re
import platform
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.result import check
from rich.console import Console
from rich.table import Table

import bench
from bench._stores import postgres_base_url

console = Console(width=None if sys.stdout.isatty() else 200)


def discover() -> dict[str, ModuleType]:
    """Every bench/<name>.py without a leading underscore that defines ``run(args)``, by ORDER then name."""
    found = {}
    for info in pkgutil.iter_modules(bench.__path__):
        if info.name.startswith("_") or info.name in ("result",):
            continue
        module = importlib.import_module(f"bench.{info.name}")
        if callable(getattr(module, "run", None)):
            found[info.name] = module
    return dict(sorted(found.items(), key=lambda kv: (getattr(kv[1], "ORDER", 100), kv[0])))


def parse_args(modules: dict[str, ModuleType], argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", action="append", metavar="NAME", choices=sorted(modules),
                   help="run only this benchmark (repeatable); see --list")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.add_argument("--duration", type=float, default=10.0,
                   help="seconds per main measurement; references take half (default 10)")
    p.add_argument("--connections", type=int, default=16, help="concurrent clients / threads (default 16)")
    p.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite", help="the store (default sqlite)")
    p.add_argument("--postgres-url", default=None,
                   help="PostgreSQL server for --store postgres; a fresh schema is made and dropped "
                        "(default: $TRIALAUDIT_BENCH_POSTGRES_URL, $TRIALAUDIT_TEST_POSTGRES_URL or "
                        "postgresql://postgres@127.0.0.1:5432/test)")
    p.add_argument("--json", metavar="FILE", type=Path, help="also write the rows and the run's context as JSON")
    p.add_argument("--keep", action="store_true", help="keep the temporary stores (for inspection)")
    for module in modules.values():
        if hasattr(module, "add_arguments"):
            module.add_arguments(p)
    args = p.parse_args(argv)
    if args.store == "postgres" and not args.postgres_url:
        args.postgres_url = postgres_base_url()
    return args


def _num(x: Any, digits: int = 0) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return f"{x:,}"


def normalise(r: dict[str, Any]) -> None:
    """Rows written as plain dicts with a textual ``target`` ("<= 50 ms", ">= 20,000 events/s and
    ratio >= 0.5") get the same checks and verdict as rows made with bench.result.row."""
    if "passed" in r:
        return
    r.setdefault("unit", "")
    checks = []
    for clause in (r.get("target") or "").split(" and "):
        m = re.match(r"\s*(ratio\s*)?(>=|<=)\s*([\d,.]+)", clause)
        if m:
            on_ratio = bool(m.group(1))
            checks.append(check("ratio" if on_ratio else "figure", r.get("ratio") if on_ratio else r.get("figure"),
                                m.group(2), float(m.group(3).replace(",", ""))))
    r["checks"] = checks
    r["passed"] = all(c["passed"] for c in checks) if checks else None
    if r.get("note") and not r.get("notes"):
        r["notes"] = r["note"]


def print_table(rows: list[dict[str, Any]]) -> None:
    table = Table(title="trialaudit benchmarks", show_lines=False)
    for col, kw in (("benchmark", {}), ("figure", {"justify": "right"}), ("unit", {}),
                    ("p50 ms", {"justify": "right"}), ("p99 ms", {"justify": "right"}), ("errors", {"justify": "right"}),
                    ("baseline", {}), ("baseline fig.", {"justify": "right"}), ("ratio", {"justify": "right"}),
                    ("target", {}), ("result", {})):
        table.add_column(col, **kw)
    for r in rows:
        res = {True: "[green]pass[/green]", False: "[red]FAIL[/red]", None: "ref"}[r["passed"]]
        if r["passed"] is False:
            missed = [c["what"] for c in r.get("checks", []) if not c["passed"]]
            res += f" ({', '.join(missed)})"
        table.add_row(
            r["name"], _num(r["figure"]), r["unit"], _num(r.get("p50_ms"), 2), _num(r.get("p99_ms"), 2),
            _num(r.get("errors")), r.get("baseline") or "", _num(r.get("baseline_figure")),
            _num(r.get("ratio"), 2), r.get("target") or "", res,
        )
    console.print(table)
    for r in rows:
        if r.get("notes"):
            console.print(f"[dim]{r['name']}: {r['notes']}[/dim]")


def context() -> dict[str, Any]:
    return {
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    modules = discover()
    args = parse_args(modules, argv)
    if args.list:
        for name, m in modules.items():
            console.print(f"{name}: {getattr(m, 'TITLE', m.__doc__.splitlines()[0] if m.__doc__ else '')}")
        return 0
    selected = {k: v for k, v in modules.items() if not args.only or k in args.only}
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    t0 = time.monotonic()
    for name, module in selected.items():
        console.print(f"[bold]▶ {name}[/bold] ({args.store}, {args.duration:g} s, {args.connections} clients) …")
        start = time.monotonic()
        try:
            got = module.run(args)
        except Exception:  # noqa: BLE001 - report and go on with the other benchmarks
            console.print(f"[red]{name} failed:[/red]\n{traceback.format_exc()}")
            failed.append(name)
            continue
        for r in got:
            r.setdefault("module", name)
            normalise(r)
        rows.extend(got)
        console.print(f"  done in {time.monotonic() - start:.0f} s")
    if rows:
        print_table(rows)
    misses = [r["name"] for r in rows if r["passed"] is False]
    checked = sum(r["passed"] is not None for r in rows)
    verdict = (f"[red]missed targets: {'; '.join(misses)}[/red]" if misses
               else f"[green]all {checked} targets met[/green]" if checked else "no targets (reference figures)")
    console.print(
        f"{len(rows)} figures in {time.monotonic() - t0:.0f} s; " + verdict
        + (f"; [red]failed to run: {', '.join(failed)}[/red]" if failed else "")
    )
    if args.json:
        shown = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        if shown.get("postgres_url"):
            shown["postgres_url"] = re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", shown["postgres_url"])
        payload = {"context": {**context(), "args": shown},
                   "rows": rows, "failed": failed}
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    return 1 if misses or failed else 0


if __name__ == "__main__":
    sys.exit(main())
