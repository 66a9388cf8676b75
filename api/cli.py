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
) -> None:
    """Serve the HTTP API (set-up runs first, so one command is enough)."""
    from api import serving

    s = settings()
    try:
        _setup_store(s)
    except StoreConfigError as e:
        fail(str(e))
    if s.demo:
        load_demo_if_empty(s)
    os.environ["TRIALAUDIT_DATABASE_URL"] = s.database_url
    serving.serve("api.app:create_app", host=host, port=port, workers=workers, log_level="info", access_log=access_log)


@users_cli.command("add")
def users_add(
    username: str,
    full_name: str = typer.Option(..., "--full-name", help="Printed name, as shown on signatures"),
    role: str = typer.Option(..., help="admin, investigator, coordinator, monitor, data_manager or inspector"),
    site: str = typer.Option(..., help="The user's site, or * for roles that see all sites"),
) -> None:
    """Add a user; the password is read from standard input (prompted twice on a terminal)."""
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
            cli_actor(), username=username, full_name=full_name, role=role, site=site, password=password, source="cli"
        )
    except InvalidInput as e:
        fail("; ".join(f"{'.'.join(map(str, p))}: {m}" for p, m in e.errors))
    except DomainError as e:
        fail(e.detail, 1)
    finally:
        svc.close()
    out.print(f"added {user['username']} ({user['role']}, site {user['site']}), id {user['id']}")


@users_cli.command("list")
def users_list() -> None:
    """The register of accounts with their current role, site and state."""
    svc = build(settings())
    try:
        users = svc.app.list_users(cli_actor())
    finally:
        svc.close()
    table = Table("username", "full name", "role", "site", "active", "locked", "created (UTC)")
    for u in users:
        table.add_row(u["username"], u["full_name"], u["role"], u["site"], str(u["active"]), str(u["locked"]), u["created_at"])
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


def _read_head(path: Path):
    import json

    from application.integrity import SignedHead

    try:
        return SignedHead.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as e:
        fail(f"cannot read a signed head from {path}: {e}")
    except InvalidInput as e:
        fail(f"{path}: {e.detail}")


def _check_snapshots(svc) -> list[str]:
    """Every stored snapshot against its seal and the replay of its events (issue 13 C.6)."""
    from infrastructure.store import stored_snapshots

    if svc.app.snapshots is None:
        return []
    return svc.app.check_snapshots(stored_snapshots(svc.app.snapshots.recorder))


@cli.command()
def verify(
    head: list[Path] = typer.Option(None, "--head", help="A signed head kept outside the database (JSON) to check too"),
) -> None:
    """Recompute every leaf from the stored events, the tree and every signed head; exit 1 naming the first bad leaf."""
    extra = [_read_head(p) for p in head or ()]
    svc = _integrity_services()
    try:
        with _progress_bar("verifying the integrity log") as bar:
            task = bar.add_task("verify", total=None)
            report = svc.integrity.verify(lambda done, total: bar.update(task, completed=done, total=total), extra)
        snapshot_problems = _check_snapshots(svc)
    finally:
        svc.close()
    for problem in snapshot_problems:
        print(f"FAIL: {problem}")
    out.print(
        f"checked {report.events} events, {report.leaves} leaves and {report.heads_checked} signed heads "
        f"in {report.seconds:.2f} s ({report.rate:,.0f} events/s; SHA-256 of 300-byte messages here: "
        f"{_sha256_rate():,.0f}/s)"
    )
    out.print(f"root over {report.leaves} leaves: {report.root_hash.hex()}", soft_wrap=True)
    first = report.first_bad
    if first is None:
        if snapshot_problems:
            raise typer.Exit(1)
        out.print("[green]OK[/green]: every event is sealed, unchanged and in order; every signed head matches")
        return
    where = "" if first.exact else f" (the first bad leaf lies in {first.first}..{first.last - 1})"
    print(f"FAIL: first bad leaf index {first.first}{where}: {first.message}")
    for other in [f for f in report.findings if f is not first][:10]:
        err.print(f"  also: leaves {other.first}..{other.last - 1}: {other.message}")
    if report.bad_leaves > 1:
        err.print(f"  {report.bad_leaves} leaves in all disagree with the stored events")
    raise typer.Exit(1)


@cli.command("head")
def head_command(
    sign: bool = typer.Option(False, "--sign", help="Sign a new head even if the log has not grown"),
    out_file: Path = typer.Option(None, "--out", help="Also write the head to this file (keep it outside the database)"),
) -> None:
    """Print the signed tree head over the whole log (signing one if the log has grown since the last)."""
    import json

    svc = _integrity_services()
    try:
        head = (svc.integrity.sign_head() if sign else svc.integrity.head()).to_json()
    finally:
        svc.close()
    text = json.dumps(head, indent=2)
    if out_file:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(text + "\n", encoding="utf-8")
    print(text)


@cli.command()
def bundle(
    out_dir: Path = typer.Option(..., "--out", help="Directory to write the bundle into"),
    participant: str = typer.Option(None, "--participant", help="The participant id whose events to prove"),
    all_events: bool = typer.Option(False, "--all", help="Every event in the log"),
    since_head: Path = typer.Option(None, "--since-head", help="An earlier signed head (JSON) to prove consistency from"),
) -> None:
    """Write an inspector bundle: events, inclusion proofs, signed head, public key and an offline verifier."""
    from infrastructure.bundle import write_bundle

    if bool(participant) == all_events:
        fail("give exactly one of --participant ID or --all")
    since = _read_head(since_head) if since_head else None
    svc = _integrity_services()
    try:
        data = svc.integrity.bundle(None if all_events else participant, since)
        with _progress_bar("writing the bundle") as bar:
            task = bar.add_task("bundle", total=data.head.tree_size if all_events else None)
            manifest = write_bundle(data, out_dir, svc.integrity.signer.public_key_pem(),
                                    lambda n: bar.update(task, completed=n))
    except DomainError as e:
        fail(e.detail, 1)
    finally:
        svc.close()
    out.print(
        f"wrote {manifest['events']} events proven against a signed head over {manifest['tree_size']} leaves to {out_dir}\n"
        f"check it anywhere with: python3 {out_dir / 'verify_bundle.py'} {out_dir}"
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
        with _progress_bar("exporting ODM") as bar, out_file.open("wb") as f:
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
    """`make run`: an empty store gets the synthetic trial (TRIALAUDIT_DEMO=0 turns this off)."""
    from application.demo import store_is_empty

    svc = build(s, follow=False)
    try:
        if not store_is_empty(svc.app):
            return False
        err.print("[cyan]empty store: loading the synthetic demo trial (TRIALAUDIT_DEMO=0 to skip)[/cyan]")
        _run_demo(svc, participants, seed)
        return True
    finally:
        svc.close()


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
    """Write a reproducible synthetic trial into an empty store: a year of visits, scores and corrections."""
    from application.demo import store_is_empty

    s = settings()
    try:
        _setup_store(s)
    except StoreConfigError as e:
        fail(str(e))
    svc = build(s, follow=False)
    try:
        if not store_is_empty(svc.app):
            fail("the store is not empty; the demo writes only into an empty store", 1)
        _run_demo(svc, participants, seed)
    finally:
        svc.close()


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
