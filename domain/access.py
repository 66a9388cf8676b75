"""Who may do what, where (R23, R33). Pure rules; the application enforces them on every call."""

from __future__ import annotations

from domain.audit import Actor
from domain.errors import PermissionDenied
from domain.trial import ALL_SITES, SITE_BOUND_ROLES

# action -> roles allowed
POLICY: dict[str, frozenset[str]] = {
    # clinical data at a site: only site roles write it (R33)
    "participant.read": frozenset({"investigator", "coordinator", "monitor", "data_manager", "inspector"}),
    "participant.write": frozenset({"investigator", "coordinator"}),
    "participant.randomise": frozenset({"investigator", "coordinator"}),
    # adverse events (docs/domain.md §3): site roles report and correct; sponsor-side roles read
    "ae.read": frozenset({"investigator", "coordinator", "monitor", "data_manager", "inspector"}),
    "ae.write": frozenset({"investigator", "coordinator"}),
    "ae.report_to_sponsor": frozenset({"investigator", "coordinator"}),
    "ae.report_to_authority": frozenset({"investigator", "coordinator", "data_manager"}),
    # the sponsor's causality opinion, kept beside the investigator's (EU CTR Annex III)
    "ae.sponsor_assess": frozenset({"data_manager"}),
    "safety.read": frozenset({"investigator", "coordinator", "monitor", "data_manager", "inspector"}),
    # visits, item-level CRF data and scores (primary outcome a)
    "visit.read": frozenset({"investigator", "coordinator", "monitor", "data_manager", "inspector"}),
    "visit.write": frozenset({"investigator", "coordinator"}),
    "outcome.read": frozenset({"investigator", "coordinator", "monitor", "data_manager", "inspector"}),
    # casebooks replayed for inspection and ODM exports (R14, R16, R17); site-bound roles: own site only
    "casebook.read": frozenset({"investigator", "coordinator", "monitor", "data_manager", "inspector"}),
    "export.odm": frozenset({"investigator", "coordinator", "monitor", "data_manager", "inspector"}),
    # electronic signatures (R27-R31): investigators sign; an admin records identity verification
    "signature.sign": frozenset({"investigator"}),
    "signature.enable": frozenset({"admin"}),
    # data queries (R32): monitors and data managers raise and settle them; the site answers
    "query.read": frozenset({"investigator", "coordinator", "monitor", "data_manager", "inspector"}),
    "query.open": frozenset({"monitor", "data_manager"}),
    "query.answer": frozenset({"investigator", "coordinator"}),
    "query.manage": frozenset({"monitor", "data_manager"}),
    # locks (R25, R34) and source-data verification (R35)
    "lock.read": frozenset({"investigator", "coordinator", "monitor", "data_manager", "inspector"}),
    "lock.manage": frozenset({"data_manager"}),
    "sdv.write": frozenset({"monitor"}),
    # audit-trail review reports (R18)
    "review.read": frozenset({"monitor", "data_manager", "inspector"}),
    # the user register
    "user.manage": frozenset({"admin"}),
    "user.read": frozenset({"admin", "inspector"}),
    # the audit trail (R15, R18, R19): site-bound roles see their site's rows, an admin only the
    # user-administration events; review reports are read by reviewers and signed off by a
    # data manager or monitor
    "audit.read": frozenset({"admin", "investigator", "coordinator", "monitor", "data_manager", "inspector"}),
    "audit.report.read": frozenset({"monitor", "data_manager", "inspector"}),
    "audit.report.sign": frozenset({"monitor", "data_manager"}),
    # the integrity log's leaves (format 1: digests and subject commitments only) are read by the
    # oversight roles (not investigators or coordinators); an old-format leaf carries its event, so its data goes to inspectors only
    "integrity.leaves": frozenset({"admin", "monitor", "data_manager", "inspector"}),
    "integrity.leaf_events": frozenset({"inspector"}),
    # a participant's inspector bundle carries its events whole (allocation slots included): sponsor-side
    # oversight roles only, never a site role (issue 13 A.2, E.19) nor the administrator (no clinical data)
    "integrity.bundle": frozenset({"data_manager", "inspector"}),
}


def is_site_bound(actor: Actor) -> bool:
    return actor.role in SITE_BOUND_ROLES


def can(actor: Actor, action: str, site: str | None = None) -> bool:
    if actor.role not in POLICY.get(action, frozenset()):
        return False
    if site is not None and is_site_bound(actor) and actor.site not in (site, ALL_SITES):
        return False
    return True


def require(actor: Actor, action: str, site: str | None = None) -> None:
    if actor.role not in POLICY.get(action, frozenset()):
        raise PermissionDenied(f"the role '{actor.role}' may not perform {action}")
    if site is not None and is_site_bound(actor) and actor.site not in (site, ALL_SITES):
        raise PermissionDenied(
            f"a {actor.role} at site {actor.site} has no access to site {site}'s participants"
        )


def scope_site(actor: Actor, action: str, site: str | None = None) -> str | None:
    """The one site-scoping rule of every listing: the action must be allowed; a site-bound user sees
    only their own site (asking for another is refused), anyone else the site asked for, or all (None)."""
    require(actor, action)
    if is_site_bound(actor):
        if site not in (None, actor.site):
            require(actor, action, site)
        return actor.site
    return site
