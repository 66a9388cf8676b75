"""A synthetic, reproducible trial: participants through a year of visits, with corrections.

Everything goes through the application's real commands, with real audit stamps of a few demo users,
so the demo exercises the same rules as live use (reasons for change, deviations, access).

Recorded time: the generator runs the trial on a simulated clock that starts about 15 months ago
and never passes the present, so histories, ``as_of`` and the visit windows read like a real year.
The clock only moves forward, so recorded times follow the order of the log. Every event says
source "import", and every demo account's name says it is synthetic.

Reproducible: the same ``seed`` gives the same participants, findings, dates and corrections
(relative to the day it runs); the arms come from the store's allocation seed, so set
TRIALAUDIT_ALLOCATION_SEED too for identical arms.

Adverse events: ``adverse_event_actions`` is the hook for issue 4; it receives each randomised
participant and returns the actions (time, callable) that report their AEs.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import random
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import eventsourcing.domain as es_domain

from domain.audit import Actor
from domain.schedule import RULE_BY_CODE, planned_day0, plan_visit
from domain.scoring import ACR_EULAR_EXCLUSIONS, MRSS_SITES
from domain.trial import ARM_TREG, EXCLUSION_CODES, INCLUSION_CODES
from domain.visit import ACR_PREFIX, MRSS_PREFIX, Visit

DEMO_PASSWORD = "demo-password-not-secret"
DEMO_ADMIN = Actor(user_id="system:demo", username="demo", full_name="synthetic trial generator (demo)",
                   role="admin", site="*")
SOURCE = "import"
TRIAL_DAYS = 470  # the simulated trial starts this many days ago: every M12 and its corrections fit before today
ENROLMENT_DAYS = 30

Action = tuple[dt.datetime, Callable[[], None]]


# --------------------------------------------------------------------------- the simulated clock
class SimulatedClock:
    """Hands out strictly increasing instants, never before the current action's time."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.timezone.utc)
        self._last = dt.datetime.min.replace(tzinfo=dt.timezone.utc)

    def set(self, instant: dt.datetime) -> None:
        self.now = instant

    def __call__(self) -> dt.datetime:
        t = max(self.now, self._last + dt.timedelta(microseconds=1))
        self._last = t
        return t


@contextmanager
def simulated_time(clock: SimulatedClock) -> Iterator[None]:
    """Events created inside take their recorded time from ``clock`` (eventsourcing's timestamp hook)."""
    original = es_domain.datetime_now_with_tzinfo
    es_domain.datetime_now_with_tzinfo = clock
    try:
        yield
    finally:
        es_domain.datetime_now_with_tzinfo = original


# --------------------------------------------------------------------------- participants
SITE_WEIGHTS_DIFFUSE = {
    "face": 0.5, "anterior_chest": 0.4, "abdomen": 0.3, "fingers_right": 1.0, "fingers_left": 1.0,
    "hands_right": 0.9, "hands_left": 0.9, "forearms_right": 0.75, "forearms_left": 0.75,
    "upper_arms_right": 0.45, "upper_arms_left": 0.45, "thighs_right": 0.35, "thighs_left": 0.35,
    "lower_legs_right": 0.5, "lower_legs_left": 0.5, "feet_right": 0.45, "feet_left": 0.45,
}
SITE_WEIGHTS_LIMITED = {**{s: 0.08 for s in MRSS_SITES}, "face": 0.35, "fingers_right": 0.9, "fingers_left": 0.9,
                        "hands_right": 0.5, "hands_left": 0.5, "forearms_right": 0.2, "forearms_left": 0.2,
                        "lower_legs_right": 0.15, "lower_legs_left": 0.15, "feet_right": 0.2, "feet_left": 0.2}
FINDING_PROBABILITY = {  # (diffuse, limited) cutaneous SSc
    "skin_thickening_proximal_to_mcp": (0.75, 0.15), "puffy_fingers": (0.6, 0.55), "sclerodactyly": (0.8, 0.6),
    "digital_tip_ulcers": (0.35, 0.2), "fingertip_pitting_scars": (0.4, 0.3), "telangiectasia": (0.4, 0.55),
    "abnormal_nailfold_capillaries": (0.85, 0.75), "pulmonary_arterial_hypertension": (0.06, 0.1),
    "interstitial_lung_disease": (0.45, 0.2), "raynaud_phenomenon": (0.97, 0.95),
    "anti_centromere": (0.05, 0.55), "anti_topoisomerase_i": (0.45, 0.1), "anti_rna_polymerase_iii": (0.2, 0.02),
}
NEW_FINDING_PER_VISIT = {"digital_tip_ulcers": 0.06, "telangiectasia": 0.05, "fingertip_pitting_scars": 0.04,
                         "interstitial_lung_disease": 0.02}
ACR_VISITS = ("SCR", "BL", "M6", "M12")
MRSS_VISITS = ("SCR", "BL", "M1", "M3", "M6", "M12")


@dataclass
class DemoParticipant:
    number: int
    site: str
    rng: random.Random
    diffuse: bool
    severity: float
    id: str | None = None
    arm: str | None = None
    randomised_on: dt.date | None = None
    day0: dt.date | None = None
    trend: float = 0.0
    findings: dict[str, bool] = field(default_factory=dict)
    pending_labs: set[str] = field(default_factory=set)

    def mrss(self, months: float) -> dict[str, int]:
        weights = SITE_WEIGHTS_DIFFUSE if self.diffuse else SITE_WEIGHTS_LIMITED
        s = max(0.0, self.severity * (1 + self.trend * months / 12))
        return {site: min(3, max(0, round(3 * w * s + self.rng.gauss(0, 0.35)))) for site, w in weights.items()}

    def acr(self, visit_code: str) -> dict[str, bool | None]:
        """Findings ever present up to this visit (docs/domain.md §1 [P] timing); some labs still pending."""
        if visit_code not in ("SCR", "BL"):
            for code, p in NEW_FINDING_PER_VISIT.items():
                if self.rng.random() < p:
                    self.findings[code] = True
        values: dict[str, bool | None] = {**self.findings, **{e: False for e in ACR_EULAR_EXCLUSIONS}}
        if visit_code == "SCR":
            if self.rng.random() < 0.7:
                values["pulmonary_arterial_hypertension"] = None  # no right heart catheterisation yet
            if self.rng.random() < 0.25:  # the antibody panel is still at the laboratory
                self.pending_labs = {"anti_centromere", "anti_topoisomerase_i", "anti_rna_polymerase_iii"}
                for code in self.pending_labs:
                    values[code] = None
        return values


@dataclass
class DemoSummary:
    participants: int = 0
    visits_held: int = 0
    items: int = 0
    corrections: int = 0
    deviations: int = 0
    events: int = 0
    seconds: float = 0.0
    users: dict[str, str] = field(default_factory=dict)


class DemoContext:
    """What an action needs: the application, the demo users, the summary and the action queue."""

    def __init__(self, app: Any, seed: int, today: dt.date):
        self.app = app
        self.seed = seed
        self.today = today
        self.start = today - dt.timedelta(days=TRIAL_DAYS)
        self.now_limit = dt.datetime.combine(today, dt.time(0, 0), dt.timezone.utc)
        self.summary = DemoSummary()
        self.actors: dict[tuple[str, str], Actor] = {}
        self._queue: list[tuple[dt.datetime, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def at(self, day: dt.date, rng: random.Random, hour_from: int = 7, hour_to: int = 14) -> dt.datetime:
        """A working-hours instant (UTC) on ``day``."""
        return dt.datetime.combine(day, dt.time(rng.randint(hour_from, hour_to), rng.randint(0, 59), rng.randint(0, 59)),
                                   dt.timezone.utc)

    def schedule(self, when: dt.datetime, fn: Callable[[], None]) -> None:
        if when < self.now_limit:  # never record in the future
            heapq.heappush(self._queue, (when, next(self._seq), fn))

    def actor(self, role: str, site: str) -> Actor:
        return self.actors[(role, site)]


def adverse_event_actions(ctx: DemoContext, p: DemoParticipant) -> Iterable[Action]:
    """The participant's adverse events, reported through the application's commands
    (application.adverse_events.demo_adverse_events): infusion reactions in the Treg arm, infections,
    procedure complications, now and then an SAE with its sponsor report and a corrected grade.

    They are reported at the end of the simulated year (their onset and awareness dates lie in it), so
    that awareness is never later than the recorded time of the report."""
    from application.adverse_events import demo_adverse_events

    def report() -> None:
        demo_adverse_events(ctx.app, ctx.actor("investigator", p.site), p.id, p.arm, p.rng, p.randomised_on)

    when = ctx.now_limit - dt.timedelta(hours=2) + dt.timedelta(seconds=p.number)
    return [(when, report)]


# --------------------------------------------------------------------------- the generator
def store_is_empty(app: Any) -> bool:
    return not (app.recorder.max_notification_id() or 0)


#: Stored topics of account events (registrations, logins, role changes...): not clinical data.
ACCOUNT_TOPIC_PREFIX = "trialaudit.User."
DEMO_USERNAME_PREFIX = "demo."


def demo_usernames(sites: Iterable[str]) -> list[str]:
    """The accounts the demo registers (their password, DEMO_PASSWORD, is published)."""
    names = ["demo.datamanager", "demo.inspector"]
    for site in sorted(sites):
        s = site.lower()
        names += [f"demo.inv.{s}", f"demo.coord.{s}", f"demo.monitor.{s}"]
    return names


@dataclass(frozen=True)
class StoreContents:
    """What a store holds, as far as loading the demo is concerned."""

    events: int  #: events in the log
    accounts_only: bool  #: every event is an account's (users added before the first start, their logins)
    demo_accounts: tuple[str, ...]  #: demo accounts already registered

    @property
    def demo_loadable(self) -> bool:
        """The demo may be written: no clinical data (nothing but accounts) and no demo yet."""
        return self.accounts_only and not self.demo_accounts


def store_contents(app: Any) -> StoreContents:
    """Classify the store by reading the log from its start up to its first event that is not an
    account's (a handful of rows on any store with clinical data)."""
    from domain.user import User

    recorder = app.recorder
    events = recorder.max_notification_id() or 0
    accounts_only, start = True, 0
    while accounts_only:
        page = recorder.select_notifications(start=start, limit=500, inclusive_of_start=False)
        accounts_only = all(n.topic.startswith(ACCOUNT_TOPIC_PREFIX) for n in page)
        if len(page) < 500:
            break
        start = page[-1].id
    names = demo_usernames(app.sites)
    present = recorder.originators_with_events([User.id_for(n) for n in names]) if events else set()
    demo = tuple(n for n in names if User.id_for(n) in present)
    return StoreContents(events=events, accounts_only=accounts_only, demo_accounts=demo)


def generate(app: Any, *, participants: int = 30, seed: int = 2022, today: dt.date | None = None,
             progress: Callable[[int, int], None] | None = None) -> DemoSummary:
    """Write the synthetic trial into ``app`` (an empty store is expected). ``progress(done, total)``
    is called as participants complete their randomisation and as actions run."""
    started = time.perf_counter()
    today = today or dt.datetime.now(dt.timezone.utc).date()
    ctx = DemoContext(app, seed, today)
    clock = SimulatedClock()
    sites = sorted(app.sites)
    with simulated_time(clock):
        clock.set(dt.datetime.combine(ctx.start - dt.timedelta(days=7), dt.time(8), dt.timezone.utc))
        _create_users(ctx, sites)
        for i in range(participants):
            rng = random.Random(f"{seed}:{i}")
            diffuse = rng.random() < 0.55
            p = DemoParticipant(number=i + 1, site=sites[i % len(sites)], rng=rng, diffuse=diffuse,
                                severity=rng.uniform(0.35, 1.3) if diffuse else rng.uniform(0.2, 0.7))
            p.findings = {c: rng.random() < (pd if diffuse else pl) for c, (pd, pl) in FINDING_PROBABILITY.items()}
            screen_day = ctx.start + dt.timedelta(days=int(i * ENROLMENT_DAYS / max(1, participants)))
            ctx.schedule(ctx.at(screen_day, rng), lambda p=p, d=screen_day: _enrol(ctx, p, d))
        total, done = len(ctx._queue), 0
        while ctx._queue:
            when, _, fn = heapq.heappop(ctx._queue)
            clock.set(when)
            fn()
            done += 1
            total = max(total, done + len(ctx._queue))
            if progress and (done % 200 == 0 or not ctx._queue):
                progress(done, total)
    ctx.summary.events = app.recorder.max_notification_id() or 0
    ctx.summary.seconds = time.perf_counter() - started
    return ctx.summary


def _create_users(ctx: DemoContext, sites: list[str]) -> None:
    app = ctx.app
    accounts = [("data_manager", "*", "demo.datamanager", "Dana Data-Manager (demo)"),
                ("inspector", "*", "demo.inspector", "Ivo Inspector (demo)")]
    for site in sites:
        s = site.lower()
        accounts += [("investigator", site, f"demo.inv.{s}", f"Dr Irina Investigator, {site} (demo)"),
                     ("coordinator", site, f"demo.coord.{s}", f"Cora Coordinator, {site} (demo)"),
                     ("monitor", site, f"demo.monitor.{s}", f"Max Monitor, {site} (demo)")]
    for role, site, username, full_name in accounts:
        user = app.register_user(DEMO_ADMIN, username=username, full_name=full_name, role=role, site=site,
                                 password=DEMO_PASSWORD, source=SOURCE)
        ctx.actors[(role, site)] = app.actor_for(user["id"])
        ctx.summary.users[username] = role


def _enrol(ctx: DemoContext, p: DemoParticipant, day: dt.date) -> None:
    app, coord, inv = ctx.app, ctx.actor("coordinator", p.site), ctx.actor("investigator", p.site)
    r = app.screen_participant(coord, screening_number=f"{p.site[:3]}-{p.number:05d}", site=p.site,
                               sex=p.rng.choice("FFFFM"), birth_year=p.rng.randint(1955, 1995), source=SOURCE)
    p.id = r["id"]
    app.assess_eligibility(inv, p.id, inclusion={c: True for c in INCLUSION_CODES},
                           exclusion={c: False for c in EXCLUSION_CODES}, source=SOURCE)
    app.record_consent(coord, p.id, consent_version="ICF v1.2", signed_on=day.isoformat(), source=SOURCE)
    randomisation_day = day + dt.timedelta(days=p.rng.randint(7, 20))
    ctx.schedule(ctx.at(randomisation_day, p.rng), lambda: _randomise(ctx, p))


def _randomise(ctx: DemoContext, p: DemoParticipant) -> None:
    app, inv = ctx.app, ctx.actor("investigator", p.site)
    result = app.randomise(inv, p.id, source=SOURCE)
    ctx.summary.participants += 1
    p.arm = result["arm"]
    p.randomised_on = dt.date.fromisoformat(app.repository.get(Visit.id_for(p.id, "BL")).target_date)
    # synthetic effect: skin improves more with Treg; noise so that the arms overlap
    p.trend = p.rng.gauss(-0.3, 0.2) if p.arm == ARM_TREG else p.rng.gauss(-0.08, 0.2)
    p.day0 = planned_day0(p.randomised_on)
    for code in ("SCR", "BL", "BC", "INF"):
        if code in ("BC", "INF") and p.arm != ARM_TREG:
            continue
        _plan(ctx, p, code)
    if p.arm != ARM_TREG:  # Group 2: the Day-0-based visits are planned now; Group 1's after the infusion
        _plan_followup(ctx, p)
    for when, fn in adverse_event_actions(ctx, p):
        ctx.schedule(when, fn)


def _plan_followup(ctx: DemoContext, p: DemoParticipant) -> None:
    for code, rule in RULE_BY_CODE.items():
        if rule.base == "D" and p.arm in rule.arms:
            _plan(ctx, p, code)


def _plan(ctx: DemoContext, p: DemoParticipant, code: str) -> None:
    rule = RULE_BY_CODE[code]
    planned = plan_visit(rule, p.randomised_on, p.day0)
    rng = p.rng
    if code == "SCR":
        held = p.randomised_on - dt.timedelta(days=rng.randint(1, 10))
        entry = ctx.at(p.randomised_on, rng)  # entered at randomisation, when the visits exist
    elif code == "BL":
        held = p.randomised_on
        entry = ctx.at(p.randomised_on, rng, 15, 17)
    else:
        if rng.random() < 0.05 and code not in ("D1",):  # out of window: recorded with a deviation
            slip = rule.after + rng.randint(2, 9)
        else:
            slip = rng.randint(-rule.before, rule.after)
        held = planned.target_date + dt.timedelta(days=slip)
        entry = ctx.at(held + dt.timedelta(days=rng.choice((0, 0, 0, 1, 2))), rng)
    ctx.schedule(entry, lambda: _hold(ctx, p, code, held))


def _hold(ctx: DemoContext, p: DemoParticipant, code: str, held: dt.date) -> None:
    app, rng = ctx.app, p.rng
    vid = Visit.id_for(p.id, code)
    inv = ctx.actor("investigator", p.site)
    items: dict[str, Any] = {}
    months = 0.0 if p.day0 is None else max(0.0, (held - p.day0).days / 30.4)
    if code in ACR_VISITS:
        items.update({ACR_PREFIX + k: v for k, v in p.acr(code).items()})
    if code in MRSS_VISITS:
        items.update({MRSS_PREFIX + k: v for k, v in p.mrss(months if code not in ("SCR", "BL") else 0.0).items()})
    result = app.record_items(inv if items else ctx.actor("coordinator", p.site), vid, items, held_on=held, source=SOURCE)
    ctx.summary.visits_held += 1
    ctx.summary.items += len(items)
    ctx.summary.deviations += len(result["deviations"])
    if code == "INF":  # Day 0 is now the infusion date: plan the follow-up from it
        p.day0 = held
        _plan_followup(ctx, p)
    entered = ctx.app.repository.get(vid).modified_on
    if code == "SCR" and p.pending_labs:
        later = entered + dt.timedelta(days=rng.randint(5, 12), hours=rng.randint(0, 5))
        ctx.schedule(later, lambda: _lab_result(ctx, p, vid))
    if items and rng.random() < 0.12:
        ctx.schedule(entered + dt.timedelta(days=rng.randint(3, 40), hours=rng.randint(0, 6)),
                     lambda: _correct(ctx, p, vid, items))
    elif not items and rng.random() < 0.04:
        ctx.schedule(entered + dt.timedelta(days=rng.randint(1, 10)), lambda: _correct_date(ctx, p, vid, held))


def _lab_result(ctx: DemoContext, p: DemoParticipant, vid: Any) -> None:
    inv = ctx.actor("investigator", p.site)
    for code in sorted(p.pending_labs):
        ctx.app.record_item(inv, vid, ACR_PREFIX + code, value=p.findings[code], source=SOURCE,
                            reason="Antibody panel result received from the laboratory after the screening visit",
                            reason_code="late_information")
        ctx.summary.corrections += 1
    p.pending_labs = set()


def _correct(ctx: DemoContext, p: DemoParticipant, vid: Any, entered: dict[str, Any]) -> None:
    """A realistic correction: a monitor's source-data query, a transcription slip or a side swap."""
    rng, app, inv = p.rng, ctx.app, ctx.actor("investigator", p.site)
    current = app.repository.get(vid).items
    mrss = [c for c in entered if c.startswith(MRSS_PREFIX) and c in current]
    kind = rng.random()
    if mrss and kind < 0.45:
        code = rng.choice(mrss)
        old = current[code]
        new = old + 1 if old < 3 and (old == 0 or rng.random() < 0.5) else old - 1
        site_name = code[len(MRSS_PREFIX):].replace("_", " ")
        # a real query: the monitor opens it, the investigator answers with the correction citing it
        # (R7), the monitor closes it
        monitor = ctx.actor("monitor", p.site)
        query = app.open_query(monitor, visit_id=vid, item_code=code, source=SOURCE,
                               text=f"Source data verification: the source worksheet scores {site_name} {new}, "
                                    f"the CRF says {old}. Please check.")
        app.answer_query(inv, query["id"], source=SOURCE, text="Checked against the source worksheet; corrected",
                         correction={"value": new, "reason_code": "query_response",
                                     "reason": f"Monitor's query: the source worksheet scores {site_name} {new}, "
                                               f"not {old}; corrected to source"})
        app.close_query(monitor, query["id"], text="Correction matches the source", source=SOURCE)
        ctx.summary.corrections += 1
    elif mrss and kind < 0.7:
        pairs = [(c, c.replace("_right", "_left")) for c in mrss if c.endswith("_right")]
        pairs = [(r, l) for r, l in pairs if l in current and current[r] != current[l]]
        if not pairs:
            return
        right, left = rng.choice(pairs)
        a, b = current[right], current[left]
        reason = "Right and left were swapped when the worksheet was entered; corrected against the source worksheet"
        app.record_item(inv, vid, right, value=b, reason=reason, reason_code="data_entry_error", source=SOURCE)
        app.record_item(inv, vid, left, value=a, reason=reason, reason_code="data_entry_error", source=SOURCE)
        ctx.summary.corrections += 2
    else:
        acr = [c for c in entered if c.startswith(ACR_PREFIX) and c[len(ACR_PREFIX):] not in ACR_EULAR_EXCLUSIONS
               and current.get(c) is not None]
        if not acr:
            return
        code = rng.choice(acr)
        finding = code[len(ACR_PREFIX):].replace("_", " ")
        new = not current[code]
        reason = (f"Clinic letter reviewed: {finding} {'documented' if new else 'not documented'}; "
                  f"value entered from the wrong row of the checklist")
        app.record_item(inv, vid, code, value=new, reason=reason, reason_code="transcription_error", source=SOURCE)
        ctx.summary.corrections += 1


def _correct_date(ctx: DemoContext, p: DemoParticipant, vid: Any, held: dt.date) -> None:
    coord = ctx.actor("coordinator", p.site)
    ctx.app.record_visit_held(coord, vid, date=held - dt.timedelta(days=1), reason_code="transcription_error",
                              reason="The date of data entry was entered instead of the clinic date; corrected to the appointment log",
                              source=SOURCE)
    ctx.summary.corrections += 1
