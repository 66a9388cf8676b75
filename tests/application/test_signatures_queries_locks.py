"""Signatures, queries, locks and SDV through the application, on SQLite and PostgreSQL
(R25, R27-R35, R18, R23, R24, R33)."""

from __future__ import annotations

import uuid

import pytest

from domain.errors import AuthenticationFailed, Conflict, InvalidInput, PermissionDenied
from domain.signature import ACCOUNTABILITY_STATEMENT, content_hash
from domain.visit import Visit
from tests.conftest import EXCLUSION_ALL_FALSE, INCLUSION_ALL_TRUE, PASSWORD

ITEM = "mrss.fingers_right"


@pytest.fixture
def world(app, add_user, actor_of):
    admin = actor_of(add_user("admin1", "admin", "*"))
    inv = actor_of(add_user("inv1", "investigator", "MINSK", "Dr Ivan Petrov"))
    mon = actor_of(add_user("mon1", "monitor", "MINSK"))
    dm = actor_of(add_user("dm1", "data_manager", "*"))
    coord = actor_of(add_user("coord1", "coordinator", "MINSK"))
    p = app.screen_participant(inv, screening_number=f"S-{uuid.uuid4().hex[:6]}", site="MINSK", sex="F", birth_year=1970)
    app.assess_eligibility(inv, p["id"], inclusion=INCLUSION_ALL_TRUE, exclusion=EXCLUSION_ALL_FALSE)
    app.record_consent(inv, p["id"], consent_version="ICF v1", signed_on="2026-01-05")
    app.randomise(inv, p["id"])
    bl = str(Visit.id_for(p["id"], "BL"))
    app.record_visit_held(inv, bl, date=app.get_visit(inv, bl)["target_date"]
                          if app.get_visit(inv, bl)["target_date"] <= "2026-01-05" else "2026-01-05")
    app.record_item(inv, bl, ITEM, value=1)
    app.record_item(inv, bl, "acr_eular.puffy_fingers", value=True)
    return {"admin": admin, "inv": inv, "mon": mon, "dm": dm, "coord": coord, "pid": p["id"], "bl": bl}


def enable(app, admin, user):
    app.verify_signer_identity(admin, user.user_id, method="government photo ID checked in person",
                               evidence="passport seen by site administrator on 2026-01-02")
    app.acknowledge_signature_accountability(user, statement=ACCOUNTABILITY_STATEMENT)


def test_signing_needs_identity_verification_and_acknowledgement_first(app, world):
    """R31: identity verification and the accountability acknowledgement are recorded before signing."""
    inv, bl = world["inv"], world["bl"]
    with pytest.raises(Conflict, match="R31"):
        app.sign_visit(inv, bl, meaning="approval", password=PASSWORD)
    with pytest.raises(Conflict, match="identity"):
        app.acknowledge_signature_accountability(inv, statement=ACCOUNTABILITY_STATEMENT)
    with pytest.raises(PermissionDenied):
        app.verify_signer_identity(world["dm"], inv.user_id, method="photo ID", evidence="passport")
    app.verify_signer_identity(world["admin"], inv.user_id, method="photo ID in person", evidence="passport no. 1")
    with pytest.raises(InvalidInput):
        app.acknowledge_signature_accountability(inv, statement="ok")
    app.acknowledge_signature_accountability(inv, statement=ACCOUNTABILITY_STATEMENT)
    status = app.signature_enablement(inv)
    assert status["enabled"] and status["identity_verification"]["method"] == "photo ID in person"
    assert app.sign_visit(inv, bl, meaning="approval", password=PASSWORD)["valid"] is True


def test_sign_correct_invalidates_atomically_and_resign(app, world):
    """R27, R29, R30: the signature keeps the manifestation and the content hash; a correction breaks it
    in the same save, naming the event; the visit is signed again."""
    inv, bl = world["inv"], world["bl"]
    enable(app, world["admin"], inv)
    sig = app.sign_visit(inv, bl, meaning="approval", password=PASSWORD)
    visit = app.repository.get(uuid.UUID(bl))
    assert sig["signer"] == "Dr Ivan Petrov" and sig["signer_role"] == "investigator" and sig["signed_at"].endswith("Z")
    assert sig["legal_statement"] and sig["record_id"] == bl and sig["record_version"] == visit.version - 1
    assert sig["content_hash"] == content_hash("visit", bl, sig["record_version"], visit.signed_content())
    assert "Dr Ivan Petrov" in sig["manifestation"] and "approval" in sig["manifestation"]

    result = app.record_item(inv, bl, ITEM, value=2, reason="re-examined the fingers: thicker than recorded")
    view = app.get_visit(inv, bl)
    (s,) = view["signatures"]
    assert s["valid"] is False
    assert s["invalidated_by"]["type"] == "ItemCorrected" and s["invalidated_by"]["item_code"] == ITEM
    assert s["invalidated_by"]["version"] == result["version"] - 1
    assert s["status"].startswith("unsigned since ItemCorrected")
    history = app.visit_history(inv, bl)
    assert [h["type"] for h in history[-2:]] == ["ItemCorrected", "VisitSignatureInvalidated"]
    # both events were saved in one transaction: consecutive notifications
    checks = app.verify_signatures(inv, "visit", bl)
    assert checks[0]["hash_verified"] is True and checks[0]["content_unchanged"] is False

    app.sign_visit(inv, bl, meaning="approval", password=PASSWORD)
    view = app.get_visit(inv, bl)
    assert [s["valid"] for s in view["signatures"]] == [False, True]
    checks = app.verify_signatures(inv, "visit", bl)
    assert checks[1]["hash_verified"] and checks[1]["content_unchanged"]


def test_wrong_password_is_refused_audited_and_counts_towards_lockout(app, world):
    """R28, R24: a wrong password at signing signs nothing, is recorded, and locks the account at the limit."""
    inv, bl = world["inv"], world["bl"]
    enable(app, world["admin"], inv)
    for _ in range(app.max_failed_logins - 1):
        with pytest.raises(AuthenticationFailed, match="nothing was signed"):
            app.sign_visit(inv, bl, meaning="review", password="not my password at all")
    assert app.get_visit(inv, bl)["signatures"] == []
    types = [h["type"] for h in app.user_history(world["admin"], inv.user_id)]
    assert types.count("SignatureAuthenticationFailed") == app.max_failed_logins - 1
    with pytest.raises(AuthenticationFailed, match="locked"):
        app.sign_visit(inv, bl, meaning="review", password="still not my password")
    with pytest.raises(AuthenticationFailed):
        app.actor_for(inv.user_id)


def test_signature_moved_to_another_record_fails_verification(app, world):
    """R29: the record id is inside the hash; a signature copied to another visit does not verify."""
    from domain.signature import verify

    inv, bl = world["inv"], world["bl"]
    enable(app, world["admin"], inv)
    app.sign_visit(inv, bl, meaning="approval", password=PASSWORD)
    sig = app.repository.get(uuid.UUID(bl)).signatures[0]
    other = app.repository.get(Visit.id_for(world["pid"], "M1"))
    assert verify(sig, "visit", bl, app.repository.get(uuid.UUID(bl)).signed_content())
    assert not verify(sig, "visit", str(other.id), app.repository.get(uuid.UUID(bl)).signed_content())
    assert not verify({**sig, "record_id": str(other.id)}, "visit", str(other.id), other.signed_content())


def test_incomplete_visit_cannot_be_signed_and_only_investigators_sign(app, world):
    """R25: no signing of an incomplete form; R23: only an investigator of the site signs."""
    inv = world["inv"]
    enable(app, world["admin"], inv)
    m1 = str(Visit.id_for(world["pid"], "M1"))
    with pytest.raises(Conflict, match="not recorded"):
        app.sign_visit(inv, m1, meaning="approval", password=PASSWORD)
    for who in ("coord", "mon", "dm"):
        with pytest.raises(PermissionDenied):
            app.sign_visit(world[who], world["bl"], meaning="approval", password=PASSWORD)


def test_query_answered_with_a_correction_then_closed(app, world):
    """R32, R7: the whole lifecycle is audited, and the correction cites the query in the same save."""
    inv, mon, bl = world["inv"], world["mon"], world["bl"]
    q = app.open_query(mon, visit_id=bl, item_code=ITEM, text="Source says 2; please check")
    assert q["state"] == "open" and q["value_at_opening"] == 1
    assert [r["id"] for r in app.list_queries(mon, state="open")] == [q["id"]]
    with pytest.raises(PermissionDenied):
        app.open_query(inv, visit_id=bl, item_code=ITEM, text="self-query")
    with pytest.raises(PermissionDenied):
        app.answer_query(mon, q["id"], text="monitors do not answer")
    with pytest.raises(Conflict):
        app.close_query(mon, q["id"])
    answered = app.answer_query(inv, q["id"], text="Transcription error, corrected",
                                correction={"value": 2, "reason": "source document shows 2"})
    assert answered["state"] == "answered" and answered["messages"][-1]["correction"]["new_value"] == 2
    (entry,) = [h for h in app.item_history(inv, bl, ITEM) if h["new_value"] == 2]
    assert entry["query_id"] == q["id"] and entry["reason_code"] == "query_response"
    reopened = app.reopen_query(mon, q["id"], text="Please also confirm the left hand")
    assert reopened["state"] == "open"
    app.answer_query(inv, q["id"], text="Left hand checked, unchanged")
    assert app.close_query(mon, q["id"], text="Thank you")["state"] == "closed"
    assert app.list_queries(mon, state="open") == [] and app.list_queries(world["dm"], state="closed")[0]["id"] == q["id"]
    types = [h["type"] for h in app.query_history(mon, q["id"])]
    assert types == ["QueryOpened", "QueryAnswered", "QueryReopened", "QueryAnswered", "QueryClosed"]
    q2 = app.open_query(world["dm"], visit_id=bl, item_code="acr_eular.puffy_fingers", text="Duplicate?")
    assert app.cancel_query(world["dm"], q2["id"], reason="raised twice by mistake")["state"] == "cancelled"
    with pytest.raises(Conflict, match="final"):
        app.reopen_query(world["dm"], q2["id"], text="again")


def test_locks_refuse_changes_and_unlock_needs_a_reason(app, world):
    """R25, R34: visit, participant and study locks refuse entry, correction and signature (409 naming
    the lock); only a data manager unlocks, with a reason."""
    inv, dm, bl, pid = world["inv"], world["dm"], world["bl"], world["pid"]
    enable(app, world["admin"], inv)
    with pytest.raises(PermissionDenied):
        app.lock_visit(inv, bl)
    app.lock_visit(dm, bl, reason="visit cleaned")
    with pytest.raises(Conflict, match="visit BL .* is locked"):
        app.record_item(inv, bl, ITEM, value=3, reason="late correction from source")
    with pytest.raises(Conflict, match="locked"):
        app.sign_visit(inv, bl, meaning="approval", password=PASSWORD)
    with pytest.raises(InvalidInput):
        app.unlock_visit(dm, bl, reason="  ")
    app.unlock_visit(dm, bl, reason="query on mRSS re-opened by the monitor")
    app.record_item(inv, bl, ITEM, value=3, reason="late correction from source")

    app.lock_participant(dm, pid, reason="casebook complete")
    with pytest.raises(Conflict, match=f"participant {pid} is locked"):
        app.record_item(inv, bl, ITEM, value=2, reason="another correction from source")
    with pytest.raises(Conflict, match="locked"):
        app.withdraw(inv, pid, reason="moved away from the region")
    app.unlock_participant(dm, pid, reason="late lab result to enter")

    app.lock_study(dm, reason="database lock before final analysis")
    with pytest.raises(Conflict, match="the study is locked"):
        app.record_item(inv, bl, ITEM, value=2, reason="another correction from source")
    with pytest.raises(Conflict, match="the study is locked"):
        app.screen_participant(inv, screening_number="S-LATE", site="MINSK", sex="M", birth_year=1980)
    app.unlock_study(dm, reason="unblinding review finished; amendment approved")
    app.record_item(inv, bl, ITEM, value=2, reason="another correction from source")

    rows = app.changes_after_signature_or_lock(dm)
    assert [r["after"] for r in rows] == [["lock"], ["lock"]]
    assert [lock["scope"] for lock in rows[-1]["after_unlock"]] == ["visit", "participant", "study"]
    assert all(r["record_id"] == bl for r in rows)


def test_sdv_resets_when_the_value_changes(app, world):
    """R35: who and when; the flag resets itself, audited, when the verified value changes."""
    inv, mon, bl = world["inv"], world["mon"], world["bl"]
    with pytest.raises(PermissionDenied):
        app.verify_item(inv, bl, ITEM)
    r = app.verify_item(mon, bl, ITEM)
    assert r["changed"] and r["sdv"]["verified_by"]["role"] == "monitor" and r["sdv"]["value"] == 1
    assert app.verify_item(mon, bl, ITEM)["changed"] is False
    app.record_item(inv, bl, ITEM, value=2, reason="re-measured at the site today")
    assert ITEM not in app.get_visit(mon, bl)["sdv"]
    assert [h["type"] for h in app.visit_history(mon, bl)][-2:] == ["ItemCorrected", "ItemVerificationReset"]


def test_casebook_and_adverse_event_signatures(app, world):
    """R27-R30 for an AE and a whole casebook: a change anywhere in the casebook breaks its signature."""
    inv, bl, pid = world["inv"], world["bl"], world["pid"]
    enable(app, world["admin"], inv)
    book = app.sign_casebook(inv, pid, meaning="approval", password=PASSWORD)
    assert book["valid"] and book["record_type"] == "casebook"
    checks = app.verify_signatures(inv, "casebook", pid)
    assert checks[0]["hash_verified"] and checks[0]["content_unchanged"]
    app.record_item(inv, bl, ITEM, value=3, reason="re-measured at the site today")
    (s,) = app.get_casebook(inv, pid)["signatures"]
    assert s["valid"] is False and s["invalidated_by"]["record_id"] == bl
    assert app.verify_signatures(inv, "casebook", pid)[0]["hash_verified"] is True
    rows = app.changes_after_signature_or_lock(world["dm"])
    assert rows and rows[-1]["after"] == ["signature"] and rows[-1]["signatures_broken"][0]["record_type"] == "casebook"
