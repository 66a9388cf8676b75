"""Every event stored by the application can be decoded by any process that runs it (R10, R17).

Events carry pinned topics (``TOPIC = "trialaudit.…"``), registered when their class is defined. A process
that reads the log (``trialaudit projections run``, ``verify``, a worker that never served an export)
must therefore have imported every aggregate module, or catching up stops at the first unknown topic.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys

import domain


def _pinned_topics() -> set[str]:
    topics = set()
    for info in pkgutil.iter_modules(domain.__path__):
        module = importlib.import_module(f"domain.{info.name}")
        stack = [obj for _, obj in inspect.getmembers(module, inspect.isclass) if obj.__module__ == module.__name__]
        while stack:
            cls = stack.pop()
            topic = getattr(cls, "TOPIC", None)
            if isinstance(topic, str):
                topics.add(topic)
            stack.extend(v for v in vars(cls).values() if inspect.isclass(v) and v.__module__ == module.__name__)
    return topics


def test_the_application_alone_resolves_every_pinned_topic():
    topics = sorted(_pinned_topics())
    assert "trialaudit.ExportRecord.ExportRecorded" in topics and len(topics) > 30
    code = (
        "import sys; import application.trial\n"
        "from eventsourcing.utils import resolve_topic\n"
        "bad = []\n"
        "for t in sys.argv[1:]:\n"
        "    try: resolve_topic(t)\n"
        "    except Exception: bad.append(t)\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, *topics], capture_output=True, text=True)
    assert result.returncode == 0, f"not resolvable by a process running only the application: {result.stdout}{result.stderr}"
