"""Benchmarks of trialaudit: ``make bench`` (or ``python -m bench``) runs them all and prints one table.

Performance targets live here and only here (never in timed tests). Machines are shared and noisy,
so every benchmark prints its figure beside a baseline measured in the same run (raw eventsourcing
on the same store, raw SQL inserts), with the durable settings users get (SQLite synchronous=FULL,
PostgreSQL synchronous_commit=on).

Adding a benchmark
------------------
Drop a module ``bench/<name>.py`` (no leading underscore) that defines::

    TITLE = "one line shown in --list"          # optional
    ORDER = 50                                  # optional: lower runs first (default 100)

    def add_arguments(parser) -> None: ...      # optional: options of its own (prefix them, e.g. --audit-...)

    def run(args) -> list[dict]:                # required
        return [bench.result.row(...), ...]

It is discovered automatically: no list to edit, no merge conflict. ``args`` carries the common
options (``duration``, ``connections``, ``store``, ``postgres_url``, ``keep``) and the module's own.
Rows are plain dicts made with :func:`bench.result.row`; reusable pieces are in ``bench._stores``
(a fresh SQLite file or PostgreSQL schema), ``bench._server`` (``trialaudit serve`` in a subprocess),
``bench._wrk`` (the wrk load generator) and ``bench._stats`` (percentiles, timed loops).
"""
