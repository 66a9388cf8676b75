"""The ``trialaudit`` command line."""

from __future__ import annotations

import getpass
import os
import socket
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from api.container import build, setup_store
from domain.audit import Actor
from domain.errors import DomainError, InvalidInput
from infrastructure.settings import Settings
from infrastructure.store import StoreConfigError

cli = typer.Typer(help="trialaudit: the audited record of NCT05214014", no_args_is_help=True, add_completion=False)
users_cli = typer.Typer(help="User accounts (never deleted or reused)", no_args_is_help=True)
cli.add_typer(users_cli, name="users")
projections_cli = typer.Typer(help="Read models rebuilt from the events", no_args_is_help=True)
cli.add_typer(projections_cli, name="projections")
export_cli = typer.Typer(help="Exports of the clinical record (each is recorded on the audit trail)", no_args_is_help=True)
cli.add_typer(export_cli, name="export")
err = Console(stderr=True, soft_wrap=True)
out = Console()


def cli_actor() -> Actor:
    """Who is at the console: the operating-system user on this host, acting as an administrator."""
    user = getpass.getuser()
    host = socket.gethostname()
    return Actor(user_id=f"os:{user}@{host}", username=user, full_name=f"{user} (command line on {host})", role="admin", site="*")


def fail(message: str, code: int = 2) -> None:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def settings() -> Settings:
    try:
        return Settings()
    except Exception as e:  # pydantic ValidationError: say which variable is wrong
        fail(f"invalid TRIALAUDIT_* setting: {e}")


@cli.command()
def setup() -> None:
    """Create the store's tables, append-only triggers and keys (run once before several workers)."""
    s = settings()
    try:
        _setup_store(s)
    except StoreConfigError as e:
        fail(str(e))
    out.print(f"store ready: {s.database_url}")


@cli.command()
def serve(
    host: str = typer.Option(os.environ.get("HOST", "127.0.0.1"), help="Address to listen on"),
    port: int = typer.Option(int(os.environ.get("PORT", "8000")), help="Port"),
    workers: int = typer.Option(
        int(os.environ.get("TRIALAUDIT_WORKERS", "2")), help="API worker processes (env TRIALAUDIT_WORKERS)"
    ),
    access_log: bool = typer.Option(
        False, help="Log every HTTP request to stdout (the audit trail itself is the event store)"
    ),
    demo_option: bool = typer.Option(
        None, "--demo/--no-demo", show_default=False,
        help="Load the synthetic demo trial (published passwords) into a store with no clinical data and no demo "
             "yet (`make run` does; env TRIALAUDIT_DEMO=1). Default: no demo, an empty store serves an empty trial",
    ),
) -> None:
    """Serve the HTTP API (set-up runs first, so one command is enough)."""
    from api import serving

    s = settings()
    try:
        _setup_store(s)
    except StoreConfigError as e:
        fail(str(e))
    if s.demo if demo_option is None else demo_option:
        load_demo_if_empty(s)
    else:
        _say_when_empty(s)
    os.environ["TRIALAUDIT_DATABASE_URL"] = s.database_url
    serving.serve("api.app:create_app", host=host, port=port, workers=workers, log_level="info", access_log=access_log)


@users_cli.command("add")
def users_add(
    username: str,
    full_name: str = typer.Option(..., "--full-name", help="Printed name, as shown on signatures"),
    role: str = typer.Option(..., help="admin, investigator, coordinator, monitor, data_manager or inspector"),
    site: str = typer.Option(..., help="The user's site, or * for roles that see all sites"),
    temporary: bool = typer.Option(
        False, "--temporary",
        help="One-time password: the user must choose their own (POST /auth/password) before logging in",
    ),
) -> None:
    """Add a user; the password is read from standard input (prompted twice on a terminal).

    The operator running this has access to the store and is trusted like a database administrator,
    so the password is a normal, usable one unless --temporary is given."""
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            fail("the passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    s = settings()
    try:
        _setup_store(s)
        svc = build(s)
    except StoreConfigError as e:
        fail(str(e))
    try:
        user = svc.app.register_user(
            cli_actor(), username=username, full_name=full_name, role=role, site=site, password=password, source="cli",
            temporary=temporary,
        )
    except InvalidInput as e:
        fail("; ".join(f"{'.'.join(map(str, p))}: {m}" for p, m in e.errors))
    except DomainError as e:
        fail(e.detail, 1)
    finally:
        svc.close()
    out.print(f"added {user['username']} ({user['role']}, site {user['site']}), id {user['id']}")


USER_COLUMNS = (("username", "username"), ("full_name", "full name"), ("role", "role"), ("site", "site"),
                ("active", "active"), ("locked", "locked"), ("created_at", "created (UTC)"), ("id", "id"))


def _shown(value) -> str:
    """A cell as a person reads it: yes / no for a flag, not Python's True / False."""
    return ("yes" if value else "no") if isinstance(value, bool) else str(value)


@users_cli.command("list")
def users_list(
    as_json: bool = typer.Option(False, "--json", help="A JSON array of the accounts (every field, nothing cut)"),
) -> None:
    """The register of accounts with their current role, site and state: a table on a terminal, tab-separated
    lines (a header line first) when piped or redirected, JSON with --json."""
    import json

    s = settings()
    try:
        svc = build(s)
    except StoreConfigError as e:
        fail(str(e))
    try:
        users = svc.app.list_users(cli_actor())
    finally:
        svc.close()
    if as_json:
        sys.stdout.write(json.dumps(users, ensure_ascii=False, indent=2) + "\n")
    elif not sys.stdout.isatty():  # a pipe or a file: whole values, one account a line, nothing wrapped or cut
        def cell(value) -> str:
            return " ".join(_shown(value).split())  # a tab or newline in a name must not split the row

        sys.stdout.write("\t".join(title for _, title in USER_COLUMNS) + "\n")
        for u in users:
            sys.stdout.write("\t".join(cell(u[key]) for key, _ in USER_COLUMNS) + "\n")
    else:
        table = Table(*(title for _, title in USER_COLUMNS[:-1]))
        for u in users:
            table.add_row(*(_shown(u[key]) for key, _ in USER_COLUMNS[:-1]))
        out.print(table)


def _progress_bar(description: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err)


def _setup_store(s: Settings) -> None:
    """``setup_store`` with a progress bar that appears only if read models are rebuilt in a new table
    layout (once, after an upgrade: about 40 s per million events on SQLite)."""
    bar, task = None, None

    def progress(done: int, total: int) -> None:
        nonlocal bar, task
        if bar is None:
            bar = _progress_bar("rebuilding read models in their new table layout (once, after an upgrade)")
            bar.start()
            task = bar.add_task("setup", total=total)
        bar.update(task, completed=done, total=total)

    try:
        setup_store(s, progress)
    finally:
        if bar is not None:
            bar.stop()


@projections_cli.command("rebuild")
def projections_rebuild(name: list[str] = typer.Argument(None, help="Projections to rebuild (default: all)")) -> None:
    """Drop the read models and rebuild them from event 1, with a progress bar."""
    s = settings()
    _setup_store(s)
    svc = build(s, follow=False)
    try:
        unknown = set(name or ()) - set(svc.projections.projections)
        if unknown:
            fail(f"unknown projection(s) {', '.join(sorted(unknown))}; known: {', '.join(svc.projections.projections)}")
        with _progress_bar("rebuilding read models") as bar:
            task = bar.add_task("rebuild", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            processed = svc.projections.rebuild(name or None, progress)
    finally:
        svc.close()
    out.print(f"rebuilt {', '.join(name or svc.projections.projections)}: {processed} events of the log processed")


@projections_cli.command("run")
def projections_run(interval: float = typer.Option(0.2, help="Seconds between polls of the event log")) -> None:
    """Follow the event log and keep the read models current (a process of its own, for PostgreSQL)."""
    s = settings()
    _setup_store(s)
    svc = build(s, follow=False)
    out.print(f"following {s.database_url}; Ctrl-C to stop")
    try:
        for applied in svc.projections.run_forever(interval):
            if applied:
                out.print(f"applied {applied} events; positions {svc.projections.positions()}")
    except KeyboardInterrupt:
        pass
    finally:
        svc.close()


# --------------------------------------------------------------------------- integrity (issue 6)
def _sha256_rate(size: int = 300, seconds: float = 0.2) -> float:
    """SHA-256 digests per second of ``size``-byte messages on this machine, now (for comparison)."""
    import hashlib
    import time

    message, n, started = bytes(size), 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for _ in range(2000):
            hashlib.sha256(message).digest()
        n += 2000
    return n / elapsed


def _integrity_services():
    s = settings()
    try:
        _setup_store(s)
        return build(s, follow=False)
    except (StoreConfigError, ValueError) as e:
        fail(str(e))


def _read_only_integrity_services():
    """The services over the configured store without set-up (no table, trigger or key is written), for
    `verify`: it works on a read-only copy. Missing keys are an environment error (exit 2), never
    made up: a new key would make every head and leaf look forged."""
    from infrastructure.merkle_store import SUBJECT_KEY_FILE
    from infrastructure.signing import KEY_FILE

    s = settings()
    needed = [] if s.signing_key else [s.data_dir / KEY_FILE]
    needed += [s.data_dir / SUBJECT_KEY_FILE, s.data_dir / "snapshot.key"]
    for path in needed:
        if not path.exists():
            fail(f"{path} is missing: point TRIALAUDIT_DATA_DIR at the data directory that holds this log's keys")
    if s.database_url.startswith("sqlite:///"):
        db = Path(s.database_url[len("sqlite:///"):])
        if not db.exists():
            fail(f"no store at {db}")
    try:
        return build(s, follow=False, create_keys=False)
    except (StoreConfigError, ValueError) as e:
        fail(str(e))
    except Exception as e:  # e.g. a store that cannot be opened: an environment error, not tampering
        hint = ""
        if s.database_url.startswith("sqlite:///"):
            hint = (" (SQLite writes its -wal and -shm files beside the store even to read it: to check a read-only "
                    "copy, copy it to a writable directory first)")
        fail(f"cannot open the store {s.database_url}: {type(e).__name__}: {e}{hint}")


def _read_head(path: Path):
    import json

    from application.integrity import SignedHead

    try:
        return SignedHead.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as e:
        fail(f"cannot read a signed head from {path}: {e}")
    except InvalidInput as e:
        fail(f"{path}: {e.detail}")


def _check_snapshots(svc, extra) -> bool:
    """Every stored snapshot against its seal and the replay of its events (issue 13 C.6); prints each
    finding; True when every snapshot holds."""
    from infrastructure.store import stored_snapshots

    if svc.app.snapshots is None:
        return True
    problems = svc.app.check_snapshots(stored_snapshots(svc.app.snapshots.recorder))
    for problem in problems:
        print(f"FAIL: {problem}")
    if not problems:
        out.print("[green]OK[/green]: every snapshot is sealed and equals the replay of its events")
    return not problems


def _report_integrity(report) -> bool:
    """Print the integrity log's findings (the first bad leaf on stdout); True when intact."""
    out.print(
        f"checked {report.events} events, {report.leaves} leaves and {report.heads_checked} signed heads "
        f"in {report.seconds:.2f} s ({report.rate:,.0f} events/s; SHA-256 of 300-byte messages here: "
        f"{_sha256_rate():,.0f}/s)"
    )
    out.print(f"root over {report.leaves} leaves: {report.root_hash.hex()}", soft_wrap=True)
    if report.uncovered_old is not None:
        first, end = report.uncovered_old
        err.print(f"note: leaves {first}..{end - 1} (old format, written before every transaction signed a head) "
                  f"are covered by no signed head yet")
    first = report.first_bad
    if first is None:
        out.print("[green]OK[/green]: every event is sealed, unchanged and in order; every signed head matches")
        return True
    last = first.last - 1 if first.first >= report.leaves else min(first.last, report.leaves) - 1  # valid indices
    where = "" if first.exact or last <= first.first else f" (the first bad leaf lies in {first.first}..{last})"
    print(f"FAIL: first bad leaf index {first.first}{where}: {first.message}")
    for other in [f for f in report.findings if f is not first][:10]:
        err.print(f"  also: leaves {other.first}..{max(other.first, other.last - 1)}: {other.message}")
    if report.bad_leaves > 1:
        err.print(f"  {report.bad_leaves} leaves in all disagree with the stored events")
    return False


#: What `trialaudit verify` checks, in order: (name, check(services, extra heads) -> passed). Each check
#: prints its own findings; exit 1 when any fails (tampering), 2 for usage or environment errors.
def _report_alarms(svc) -> None:
    for alarm in svc.integrity.log.alarms()[-10:]:
        err.print(f"alarm recorded by the sealer (at {alarm['at_ms']} ms): {alarm['message']}")


VERIFY_CHECKS: list[tuple[str, object]] = [
    ("integrity log", lambda svc, extra: _report_integrity(_run_verify(svc, extra))),
    ("sealer alarms", lambda svc, extra: _report_alarms(svc) or True),
    ("snapshots", _check_snapshots),
]


def _run_verify(svc, extra):
    with _progress_bar("verifying the integrity log") as bar:
        task = bar.add_task("verify", total=None)
        return svc.integrity.verify(lambda done, total: bar.update(task, completed=done, total=total), extra)


@cli.command()
def verify(
    head: list[Path] = typer.Option(None, "--head", help="A signed head kept outside the database (JSON) to check too"),
) -> None:
    """Recompute every leaf from the stored events, the tree and every signed head; exit 1 naming the first
    bad leaf (tampering), exit 2 when the store or its keys cannot be read. Writes nothing."""
    extra = [_read_head(p) for p in head or ()]
    svc = _read_only_integrity_services()
    results = []
    try:
        for name, check in VERIFY_CHECKS:
            try:
                results.append(check(svc, extra))
            except typer.Exit:
                raise
            except Exception as e:  # cannot read: not a verdict of tampering
                hint = ""
                if "leaf_data" in str(e) or "seal_" in str(e) or "merkle_alarms" in str(e):
                    hint = " (a store written by older code: run `trialaudit setup` once with this version)"
                fail(f"{name}: the check could not run: {type(e).__name__}: {e}{hint}")
    finally:
        svc.close()
    if not all(results):
        raise typer.Exit(1)


@cli.command("head")
def head_command(
    sign: bool = typer.Option(False, "--sign", help="Sign a new head even if the log has not grown"),
    out_file: Path = typer.Option(None, "--out", help="Also write the head to this file (keep it outside the database)"),
    accept_uncovered: bool = typer.Option(
        False, "--accept-uncovered",
        help="With --sign: sign over leaves no head covers yet (only after `trialaudit verify` and a look at them)"),
) -> None:
    """Print the signed tree head over the whole log (signing one if the log has grown since the last)."""
    import json

    from application.integrity import UncoveredLeaves

    svc = _integrity_services()
    try:
        head = (svc.integrity.sign_head(accept_uncovered) if sign else svc.integrity.head()).to_json()
    except UncoveredLeaves as e:
        fail(e.detail, 1)
    finally:
        svc.close()
    text = json.dumps(head, indent=2)
    if out_file:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(text + "\n", encoding="utf-8")
    print(text)


@cli.command()
def bundle(
    out_dir: Path = typer.Option(..., "--out", help="Directory to write the bundle into (new, or empty)"),
    participant: str = typer.Option(None, "--participant", help="The participant id whose events to prove"),
    all_events: bool = typer.Option(False, "--all", help="Every event in the log"),
    since_head: Path = typer.Option(None, "--since-head", help="An earlier signed head (JSON) to prove consistency from"),
) -> None:
    """Write an inspector bundle: every leaf, the events in scope, the signed head, the key and an offline
    verifier. Refused (exit 1) when the log does not verify, naming the first bad leaf."""
    from application.integrity import BrokenLog, UncoveredLeaves
    from infrastructure.bundle import BundleExists, write_bundle
    from infrastructure.files import private_umask

    if bool(participant) == all_events:
        fail("give exactly one of --participant ID or --all")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        fail(f"{out_dir} already exists and is not an empty directory; give a new --out")
    since = _read_head(since_head) if since_head else None
    svc = _integrity_services()
    try:
        data = svc.integrity.bundle(None if all_events else participant, since)
        # every file of the bundle 0600 and every directory made for it 0700 (E.17)
        with _progress_bar("writing the bundle") as bar, private_umask():
            task = bar.add_task("bundle", total=data.head.tree_size)
            manifest = write_bundle(data, out_dir, svc.integrity.signer.public_key_pem(),
                                    lambda n: bar.update(task, completed=n))
    except (BrokenLog, UncoveredLeaves) as e:
        fail(e.detail, 1)
    except BundleExists as e:
        fail(str(e))
    except DomainError as e:
        fail(e.detail)
    finally:
        svc.close()
    out.print(
        f"wrote {manifest['events']} events and all {manifest['leaves']} leaves of the log, against a signed head "
        f"over {manifest['tree_size']} leaves, to {out_dir}\n"
        f"check it anywhere with: python3 {out_dir / 'verify_bundle.py'} {out_dir}",
        soft_wrap=True,  # the command stays on one line, whatever the terminal's width, to copy and paste
    )


# --------------------------------------------------------------------------- exports (issue 5)
def _read_password() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("Password: ")
    return sys.stdin.readline().rstrip("\r\n")


@export_cli.command("odm")
def export_odm(
    out_file: Path = typer.Option(..., "--out", help="The ODM XML file to write"),
    participant: str = typer.Option(None, "--participant", help="Only this participant (default: the whole study)"),
    user: str = typer.Option(..., "--user", help="Who exports (an inspector, data manager, ...); password on stdin"),
) -> None:
    """Write the CDISC ODM 1.3.2 Transactional Archival export (R16), streamed from the event log with a
    progress bar; the export is attributed to --user and recorded on the audit trail (R11)."""
    from application.exports import OdmExports
    from infrastructure.files import atomic_private_file

    password = _read_password()
    s = settings()
    try:
        _setup_store(s)
        svc = build(s, follow=participant is not None)
    except (StoreConfigError, ValueError) as e:
        fail(str(e))
    try:
        actor = svc.app.authenticate(user, password, client="cli", source="cli").as_actor()
        exports = OdmExports(svc.app, svc.integrity.log)
        written = 0
        # written to a temporary name and renamed when complete: a refused or failed export leaves an
        # existing file as it was (F.23), and the file is 0600 (E.17)
        with _progress_bar("exporting ODM") as bar, atomic_private_file(out_file) as f:
            task = bar.add_task("odm", total=None)
            if participant:
                chunks = exports.participant(actor, participant, source="cli")
            else:
                chunks = exports.study(actor, source="cli", progress=lambda done, total: bar.update(task, completed=done, total=total))
            for chunk in chunks:
                f.write(chunk)
                written += len(chunk)
    except DomainError as e:
        fail(e.detail, 1)
    finally:
        svc.close()
    out.print(f"wrote {written} bytes of CDISC ODM 1.3.2 (Transactional, Archival) to {out_file}")


def load_demo_if_empty(s: Settings, participants: int = 30, seed: int = 2022) -> bool:
    """`make run` (`serve --demo`): load the synthetic trial into a store that holds no clinical data and no
    demo yet (accounts added before the first start are kept), and say on the terminal what was done and why."""
    from application.demo import DEMO_PASSWORD, store_contents

    svc = build(s, follow=False)
    try:
        contents = store_contents(svc.app)
        if contents.demo_accounts:
            err.print(f"[cyan]demo: this store already holds the demo trial; its accounts "
                      f"({', '.join(contents.demo_accounts)}) have the published password '{DEMO_PASSWORD}'[/cyan]")
            return False
        if not contents.accounts_only:
            err.print(f"[yellow]demo not loaded: this store ({s.database_url}) already holds trial data "
                      f"({contents.events} events); the demo is written only into a store with no clinical data. "
                      f"For the demo, point TRIALAUDIT_DATABASE_URL at a new store[/yellow]")
            return False
        kept = f"; the {contents.events} account events already stored are kept" if contents.events else ""
        err.print(f"[cyan]demo: loading the synthetic demo trial into {s.database_url}{kept} "
                  f"(TRIALAUDIT_DEMO=0 to skip; `trialaudit serve` never loads it)[/cyan]")
        _run_demo(svc, participants, seed)
        return True
    finally:
        svc.close()


def _say_when_empty(s: Settings) -> None:
    """`trialaudit serve` without --demo: an empty store stays empty; say how to get accounts or the demo."""
    from application.demo import store_is_empty

    svc = build(s, follow=False)
    try:
        empty = store_is_empty(svc.app)
    finally:
        svc.close()
    if empty:
        err.print("[cyan]empty store: serving an empty trial (no accounts yet: add one with `trialaudit users add`; "
                  "`make run` or `trialaudit demo` loads the synthetic demo trial)[/cyan]")


def _run_demo(svc, participants: int, seed: int) -> None:
    from application.demo import DEMO_PASSWORD, generate

    with _progress_bar("writing the synthetic trial") as bar:
        task = bar.add_task("demo", total=None)
        summary = generate(svc.app, participants=participants, seed=seed,
                           progress=lambda done, total: bar.update(task, completed=done, total=total))
    with _progress_bar("building the read models") as bar:
        task = bar.add_task("catch-up", total=None)
        svc.projections.catch_up(progress=lambda done, total: bar.update(task, completed=done, total=total))
    out.print(
        f"demo trial: {summary.participants} participants, {summary.visits_held} visits held, {summary.items} items, "
        f"{summary.corrections} corrections, {summary.deviations} protocol deviations; {summary.events} events "
        f"in {summary.seconds:.1f} s"
    )
    out.print(f"demo users (password '{DEMO_PASSWORD}'): {', '.join(sorted(summary.users))}")


@cli.command()
def demo(
    participants: int = typer.Option(30, min=1, help="Participants to randomise (e.g. 10000 for benchmarks)"),
    seed: int = typer.Option(2022, help="Seed of the synthetic findings, dates and corrections"),
) -> None:
    """Write a reproducible synthetic trial (demo accounts with a published password) into a store with no
    clinical data and no demo yet: a year of visits, scores and corrections."""
    from application.demo import store_contents

    s = settings()
    try:
        _setup_store(s)
    except StoreConfigError as e:
        fail(str(e))
    svc = build(s, follow=False)
    try:
        contents = store_contents(svc.app)
        if contents.demo_accounts:
            fail(f"this store already holds the demo trial ({', '.join(contents.demo_accounts)})", 1)
        if not contents.accounts_only:
            fail(f"this store already holds trial data ({contents.events} events); the demo writes only into a "
                 "store with no clinical data (point TRIALAUDIT_DATABASE_URL at a new one)", 1)
        err.print(f"[cyan]demo: loading the synthetic demo trial into {s.database_url}[/cyan]")
        _run_demo(svc, participants, seed)
    finally:
        svc.close()


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
