"""Plain-dict views of aggregates and events, as the API and CLI show them."""

from __future__ import annotations

import datetime as dt
from typing import Any


_UTC = dt.timezone.utc


def iso(ts: dt.datetime | None) -> str | None:
    if ts is None:
        return None
    if ts.tzinfo is _UTC:  # the usual case (every stored timestamp): no conversion, "+00:00" is the end
        return ts.isoformat(timespec="microseconds")[:-6] + "Z"
    if ts.tzinfo is None:  # never expected: every recorded time is zone-aware UTC
        raise ValueError("naive datetime in the audit trail")
    return ts.astimezone(dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def iso_recorded(value: Any) -> str | None:
    """``iso`` of an event's recorded time as a projection reading the stored state finds it: the
    transcoded ``{"_type_": "datetime_iso", "_data_": ...}`` object (only the UTC text the library
    writes takes the fast path, which gives exactly what ``iso`` gives for the decoded datetime), or
    an already decoded datetime."""
    if type(value) is dict:
        text = value.get("_data_")
        if value.get("_type_") != "datetime_iso" or type(text) is not str:
            raise ValueError(f"not a recorded time: {value!r}")
        if text.endswith("+00:00") and text[4] == "-" and text[10] == "T":
            if len(text) == 32 and text[19] == ".":
                return text[:26] + "Z"
            if len(text) == 25:
                return text[:19] + ".000000Z"
        return iso(dt.datetime.fromisoformat(text))
    return iso(value)


def participant_view(p: Any) -> dict[str, Any]:
    return {
        "id": str(p.id),
        "screening_number": p.screening_number,
        "site": p.site,
        "sex": p.sex,
        "birth_year": p.birth_year,
        "status": p.status,
        "eligible": p.eligible,
        "eligibility": None if p.inclusion is None else {"inclusion": dict(p.inclusion), "exclusion": dict(p.exclusion)},
        "consent_version": p.consent_version,
        "consent_signed_on": p.consent_signed_on,
        "arm": p.arm,
        "allocation_slot": p.allocation_slot,
        "randomised_at": iso(p.randomised_on),
        "withdrawal_reason": p.withdrawal_reason,
        "created_at": iso(p.created_on),
        "modified_at": iso(p.modified_on),
        "version": p.version,
    }


def user_view(u: Any) -> dict[str, Any]:
    return {
        "id": str(u.id),
        "username": u.username,
        "full_name": u.full_name,
        "role": u.role,
        "site": u.site,
        "active": u.active,
        "locked": u.locked,
        "password_change_required": getattr(u, "password_change_required", False),
        "created_at": iso(u.created_on),
        "version": u.version,
    }


def event_view(event: Any) -> dict[str, Any]:
    """One entry of a history: who, when, what (old -> new) and why."""
    audit = event.audit
    return {
        "version": event.originator_version,
        "type": type(event).__name__,
        "recorded_at": iso(event.timestamp),
        "actor": {k: audit["actor"][k] for k in ("user_id", "username", "full_name", "role", "site")},
        "reason": audit.get("reason"),
        "reason_code": audit.get("reason_code"),
        "source": audit.get("source"),
        "query_id": audit.get("query_id"),
        "changes": list(event.changes),
    }


def signature_view(s: dict[str, Any]) -> dict[str, Any]:
    """A signature with its manifestation (R27): printed name, role, meaning, legal statement, UTC time;
    and whether it still holds, or which event broke it (R30)."""
    broken = s.get("invalidated_by")
    signed_at = iso(s["signed_at"])
    return {
        "signature_id": s["signature_id"],
        "signer": s["signer"]["full_name"],
        "signer_user_id": s["signer"]["user_id"],
        "signer_username": s["signer"]["username"],
        "signer_role": s["signer"]["role"],
        "meaning": s["meaning"],
        "legal_statement": s["legal_statement"],
        "signed_at": signed_at,
        "record_type": s["record_type"],
        "record_id": s["record_id"],
        "record_version": s["record_version"],
        "content_hash": s["content_hash"],
        "hash_algorithm": s["hash_algorithm"],
        "valid": s["valid"],
        "invalidated_by": dict(broken) if broken else None,
        "invalidated_at": iso(s.get("invalidated_at")),
        "status": "valid" if s["valid"] else
        f"unsigned since {broken['type']} (version {broken['version']}) at {iso(s.get('invalidated_at'))}",
        "manifestation": f"Electronically signed by {s['signer']['full_name']} ({s['signer']['role']}) on "
                         f"{signed_at} (UTC). Meaning: {s['meaning']}. {s['legal_statement']}",
    }


def lock_view(lock: dict[str, Any] | None) -> dict[str, Any] | None:
    if lock is None:
        return None
    by = lock["locked_by"]
    return {"scope": lock["scope"], "locked_at": iso(lock["locked_at"]), "reason": lock.get("reason"),
            "locked_by": {k: by[k] for k in ("user_id", "username", "full_name", "role", "site")}}


def sdv_view(flags: dict[str, Any]) -> dict[str, Any]:
    return {code: {"value": f["value"], "verified_at": iso(f["verified_at"]),
                   "verified_by": {k: f["verified_by"][k] for k in ("user_id", "full_name", "role")}}
            for code, f in sorted(flags.items())}
