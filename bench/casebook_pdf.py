"""Benchmark: the casebook PDF of the demo's largest participant (issue 14.5 target <= 2 s).

The seeded synthetic trial of ``make run`` (30 participants, application.demo, seed 2022) is written to
a fresh SQLite store; the participant whose casebook has the most events is rendered as
``GET /participants/{id}/casebook.pdf`` renders it: the casebook replayed from its events, laid out as
the document model (application.casebook_html.casebook_blocks) and drawn with reportlab
(infrastructure.pdf.document_to_pdf). Timed end to end (replay + layout + PDF), the median and the
slowest of a few runs. Baseline, in the same run: the previous way, the same casebook's HTML through
xhtml2pdf (``html_to_pdf``), once. Both PDFs carry every change of every item with its reason.

    .venv/bin/python -m bench --only casebook_pdf
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from application.casebook_html import casebook_blocks, render_casebook_html
from bench.projections import demo_store
from infrastructure.pdf import document_to_pdf, html_to_pdf

ORDER = 80


def add_arguments(parser) -> None:
    parser.add_argument("--casebook-participants", type=int, default=30,
                        help="participants of the synthetic trial for casebook_pdf (default 30, the demo's)")
    parser.add_argument("--casebook-runs", type=int, default=5, help="timed PDF renderings (default 5)")


def run(args: Any = None) -> list[dict[str, Any]]:
    participants = getattr(args, "casebook_participants", None) or 30
    runs = getattr(args, "casebook_runs", None) or 5
    with demo_store(participants, "trialaudit-bench-pdf-") as svc:
        app = svc.app
        insp = app.actor_for(str(app.user_by_name("demo.inspector").id))
        sizes = sorted((app.casebook(insp, r["id"])["event_count"], r["id"]) for r in app.list_participants(insp))
        events, pid = sizes[-1]

        def new_way() -> tuple[float, int]:
            t = time.perf_counter()
            cb = app.casebook(insp, pid)
            pdf = document_to_pdf(casebook_blocks(cb), title=f"Casebook {cb['participant']['screening_number']}")
            return time.perf_counter() - t, len(pdf)

        new_way()  # warm: fonts registered, modules imported
        timed = [new_way() for _ in range(runs)]
        seconds = [s for s, _ in timed]
        t = time.perf_counter()
        html = render_casebook_html(app.casebook(insp, pid))
        old_size = len(html_to_pdf(html))
        baseline = time.perf_counter() - t
        median, slowest = statistics.median(seconds), max(seconds)
        return [{
            "name": f"casebook PDF of the demo's largest participant ({events} events, {timed[-1][1] / 1e3:.0f} kB; "
                    f"slowest of {runs}; median {median * 1000:.0f} ms)",
            "figure": round(slowest * 1000), "unit": "ms",
            "baseline": f"same casebook as HTML through xhtml2pdf ({old_size / 1e3:.0f} kB)",
            "baseline_figure": round(baseline * 1000), "ratio": round(slowest / baseline, 3) if baseline else None,
            "target": "<= 2000 ms",
        }]


if __name__ == "__main__":
    for row in run():
        print(row)
