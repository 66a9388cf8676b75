"""Issue 14 items 1, 2, 3 and 9 over HTTP, on both stores: an item's history with its SDV marks, corrections
that cite a data query, the visit-date rule for item entry, and the study's data dictionary."""

from __future__ import annotations

import datetime as dt
import uuid

from domain.visit import Visit

ITEM = "mrss.fingers_right"


def _held(client, vid: str, headers: dict, date: str = "2026-01-05") -> None:
    r = client.post(f"/visits/{vid}/held", json={"date": date}, headers=headers)
    assert r.status_code == 200, r.text


# --------------------------------------------------------------------------- 14.1 item history and SDV (R13, R35)
def test_item_history_lists_values_and_verification_marks_as_what_they_are(client, randomised_participant, login):
    pid, inv = randomised_participant()
    mon = login("mon1", "monitor", "MINSK")
    bl = str(Visit.id_for(pid, "BL"))
    _held(client, bl, inv)
    assert client.put(f"/visits/{bl}/items/{ITEM}", json={"value": 2}, headers=inv).status_code == 200
    assert client.post(f"/visits/{bl}/items/{ITEM}/sdv", headers=mon).status_code == 200
    r = client.put(f"/visits/{bl}/items/{ITEM}", json={"value": 3, "reason": "late source update"}, headers=inv)
    assert r.status_code == 200, r.text
    correction_version = r.json()["version"] - 1  # the reset is saved right after the correction

    r = client.get(f"/visits/{bl}/items/{ITEM}/history", headers=mon)
    assert r.status_code == 200, r.text  # was 500 on main
    history = r.json()
    assert [h["kind"] for h in history] == ["value", "verification", "value", "verification_reset"]
    first, mark, change, reset = history
    # only value entries are value changes: the SDV mark is not "null -> 2"
    assert [(h["old_value"], h["new_value"]) for h in history if h["kind"] == "value"] == [(None, 2), (2, 3)]
    assert "new_value" not in mark and mark["verified_value"] == 2 and mark["actor"]["role"] == "monitor"
    assert mark["type"] == "ItemVerified"
    # who verified which value, when, and which change reset it
    assert first["verification"]["verified_by"]["username"] == "mon1"
    assert first["verification"]["verified_at"] == mark["recorded_at"]
    assert first["verification"]["reset_by_version"] == change["version"] == correction_version
    assert change["verification"] is None and change["reason"] == "late source update"
    assert reset["type"] == "ItemVerificationReset" and reset["verified_value"] == 2
    assert reset["reset_by_version"] == change["version"] and "new_value" not in reset


# --------------------------------------------------------------------------- 14.2 a correction cites a real query (R7)
def _names_query_id(r) -> bool:
    return r.status_code == 422 and "query_id" in r.text and r.headers["content-type"].startswith("application/problem+json")


def test_a_correction_may_cite_only_an_open_or_answered_query_about_the_same_item(client, randomised_participant, login):
    pid, inv = randomised_participant()
    mon = login("mon1", "monitor", "MINSK")
    bl, scr = str(Visit.id_for(pid, "BL")), str(Visit.id_for(pid, "SCR"))
    for vid in (bl, scr):
        _held(client, vid, inv)
        for code, value in ((ITEM, 1), ("mrss.face", 0)):
            assert client.put(f"/visits/{vid}/items/{code}", json={"value": value}, headers=inv).status_code == 200
    q = client.post("/queries", json={"visit_id": bl, "item_code": ITEM, "text": "Source shows 2"}, headers=mon).json()
    other = client.post("/queries", json={"visit_id": bl, "item_code": "mrss.face", "text": "Face?"}, headers=mon).json()

    def put(vid, code, query_id, value=2):
        return client.put(f"/visits/{vid}/items/{code}", headers=inv,
                          json={"value": value, "reason": "source document shows 2", "query_id": query_id})

    before = client.get(f"/visits/{bl}/history", headers=inv).json()
    assert _names_query_id(put(bl, ITEM, str(uuid.uuid4())))          # made up
    assert _names_query_id(put(bl, ITEM, "Q-MINSK-00001"))            # not even an id
    assert _names_query_id(put(bl, ITEM, other["id"]))                # about another item
    assert _names_query_id(put(scr, ITEM, q["id"]))                   # same item, another visit
    assert _names_query_id(put(bl, ITEM, pid))                        # an id, but not of a query
    r = client.post(f"/participants/{pid}/corrections", headers=inv,
                    json={"field": "birth_year", "new_value": 1971, "reason": "typo", "query_id": q["id"]})
    assert _names_query_id(r)                                         # participant field: not what the query is about
    r = client.post(f"/visits/{bl}/held", headers=inv, json={"date": "2026-01-06", "reason": "typo", "query_id": q["id"]})
    assert _names_query_id(r)
    # a closed (or cancelled) query cannot be cited any more
    assert client.post(f"/queries/{other['id']}/cancel", json={"reason": "raised in error"}, headers=mon).status_code == 200
    assert _names_query_id(put(bl, "mrss.face", other["id"], value=1))
    assert client.get(f"/visits/{bl}/history", headers=inv).json() == before  # nothing changed on error

    # the open query about this item of this visit: accepted, and its id is in the history
    r = put(bl, ITEM, q["id"])
    assert r.status_code == 200, r.text
    assert client.get(f"/visits/{bl}/items/{ITEM}/history", headers=inv).json()[-1]["query_id"] == q["id"]
    # an answered one too
    r = client.post(f"/queries/{q['id']}/answer", json={"text": "Corrected"}, headers=inv)
    assert r.status_code == 200 and r.json()["state"] == "answered"
    assert put(bl, ITEM, q["id"], value=3).status_code == 200
    assert client.post(f"/queries/{q['id']}/close", json={"text": "ok"}, headers=mon).status_code == 200
    assert _names_query_id(put(bl, ITEM, q["id"], value=2))


def test_an_adverse_event_correction_citing_a_visit_query_is_refused(client, randomised_participant, login):
    from tests.api.test_adverse_events import sae_body

    pid, inv = randomised_participant()
    mon = login("mon1", "monitor", "MINSK")
    bl = str(Visit.id_for(pid, "BL"))
    _held(client, bl, inv)
    assert client.put(f"/visits/{bl}/items/{ITEM}", json={"value": 1}, headers=inv).status_code == 200
    q = client.post("/queries", json={"visit_id": bl, "item_code": ITEM, "text": "Source shows 2"}, headers=mon).json()
    arm = client.get(f"/participants/{pid}", headers=inv).json()["arm"]
    r = client.post(f"/participants/{pid}/adverse-events", json=sae_body(arm), headers=inv)
    assert r.status_code == 201, r.text
    ae = r.json()["id"]
    before = client.get(f"/adverse-events/{ae}/history", headers=inv).json()
    r = client.post(f"/adverse-events/{ae}/corrections", headers=inv,
                    json={"field": "aeterm", "new_value": "Lobar pneumonia", "reason": "verbatim term mistyped", "query_id": q["id"]})
    assert _names_query_id(r)
    assert client.get(f"/adverse-events/{ae}/history", headers=inv).json() == before


def test_the_demo_cites_only_real_queries_about_the_item_it_corrects(services):
    from application.demo import generate
    from domain.query import DataQuery

    app = services.app
    generate(app, participants=6, seed=7, today=dt.date(2026, 3, 1))
    cited = 0
    for n in app.recorder.select_notifications(start=0, limit=100000):
        event = app.mapper.to_domain_event(n)
        query_id = event.audit.get("query_id")
        if not query_id or not n.topic.startswith("trialaudit.Visit."):
            continue
        query = app.repository.get(uuid.UUID(query_id))
        assert isinstance(query, DataQuery) and query.visit_id == str(event.originator_id)
        assert query.item_code == event.item_code
        cited += 1
    assert cited > 0


# --------------------------------------------------------------------------- 14.3 items once the visit date is recorded
def test_an_item_for_a_visit_without_its_date_answers_409_and_changes_nothing(client, randomised_participant, login):
    pid, inv = randomised_participant()
    mon = login("mon1", "monitor", "MINSK")
    visits = {v["code"]: v for v in client.get(f"/participants/{pid}/visits", headers=inv).json()}
    m12 = visits["M12"]["id"]
    before = client.get(f"/visits/{m12}", headers=inv).json()
    for code, value in (("mrss.face", 1), ("acr_eular.puffy_fingers", True)):
        r = client.put(f"/visits/{m12}/items/{code}", json={"value": value}, headers=inv)
        assert r.status_code == 409 and r.headers["content-type"].startswith("application/problem+json"), r.text
        assert "record the visit date first" in r.json()["detail"]
    assert client.get(f"/visits/{m12}", headers=inv).json() == before
    assert client.get(f"/visits/{m12}/history", headers=inv).json()[-1]["type"] == "VisitScheduled"
    # a query answered with a correction is refused the same way
    q = client.post("/queries", json={"visit_id": m12, "item_code": "mrss.face", "text": "Not done yet?"}, headers=mon)
    assert q.status_code == 201, q.text
    r = client.post(f"/queries/{q.json()['id']}/answer", headers=inv,
                    json={"text": "Entered", "correction": {"value": 1, "reason": "examined at the visit"}})
    assert r.status_code == 409 and "record the visit date first" in r.json()["detail"]
    assert client.get(f"/queries/{q.json()['id']}", headers=mon).json()["state"] == "open"
    # the date may not be in the future, as before
    future = (dt.date.today() + dt.timedelta(days=400)).isoformat()
    assert client.post(f"/visits/{m12}/held", json={"date": future}, headers=inv).status_code == 422
    # once the date is recorded, the item is
    today = visits["BL"]["target_date"]
    assert client.post(f"/visits/{m12}/held", json={"date": today}, headers=inv).status_code == 200
    r = client.put(f"/visits/{m12}/items/mrss.face", json={"value": 1}, headers=inv)
    assert r.status_code == 200 and r.json()["value"] == 1


# --------------------------------------------------------------------------- 14.9 the data dictionary
def test_every_item_code_in_the_metadata_is_accepted_and_an_unknown_one_points_to_it(client, randomised_participant, login):
    pid, inv = randomised_participant()
    metadata = client.get("/study/metadata", headers=inv)
    assert metadata.status_code == 200, metadata.text
    md = metadata.json()
    items = [i for form in md["forms"] for i in form["items"]]
    assert {f["code"] for f in md["forms"]} == {"acr_eular", "mrss"}
    assert len(items) == 15 + 17 and [i["code"] for i in items] == md["item_codes"]
    for i in items:
        assert {"code", "label", "data_type", "allowed_values", "range", "unit", "required"} <= set(i)
        assert i["label"] and i["unit"] and i["code"].startswith(i["form"] + ".")
    face = next(i for i in items if i["code"] == "mrss.face")
    assert face["data_type"] == "integer" and face["range"] == {"min": 0, "max": 3} and face["required"] is True
    puffy = next(i for i in items if i["code"] == "acr_eular.puffy_fingers")
    assert puffy["data_type"] == "boolean" and puffy["allowed_values"] == [True, False, None] and puffy["weight"] == 2

    # one list, not two: each code and each allowed value is accepted by the API, nothing outside the range is
    bl = str(Visit.id_for(pid, "BL"))
    _held(client, bl, inv)
    for i in items:
        first, *others = i["allowed_values"]
        r = client.put(f"/visits/{bl}/items/{i['code']}", json={"value": first}, headers=inv)
        assert r.status_code == 200 and r.json()["value"] == first, (i["code"], r.text)
        for value in others:
            r = client.put(f"/visits/{bl}/items/{i['code']}", json={"value": value, "reason": "checking the range"},
                           headers=inv)
            assert r.status_code == 200, (i["code"], value, r.text)
        if i["range"]:
            r = client.put(f"/visits/{bl}/items/{i['code']}", json={"value": i["range"]["max"] + 1, "reason": "out"},
                           headers=inv)
            assert r.status_code == 422
    r = client.put(f"/visits/{bl}/items/mrss.back", json={"value": 1}, headers=inv)
    assert r.status_code == 422 and "/study/metadata" in r.text
    r = client.post("/queries", json={"visit_id": bl, "item_code": "acr_eular.nope", "text": "?"},
                    headers=login("mon1", "monitor", "MINSK"))
    assert r.status_code == 422 and "/study/metadata" in r.text

    # the visit schedule per arm, the one randomisation planned from
    arm = client.get(f"/participants/{pid}", headers=inv).json()["arm"]
    planned = {v["code"]: v for v in client.get(f"/participants/{pid}/visits", headers=inv).json() if v["code"] != "UNS"}
    schedule = {v["code"]: v for v in md["schedule"]["arms"][arm]["visits"]}
    assert set(schedule) == set(planned)
    randomised_on = dt.date.fromisoformat(planned["BL"]["target_date"])
    day0 = randomised_on + dt.timedelta(days=md["schedule"]["manufacturing_days"])
    for code, s in schedule.items():
        base = randomised_on if s["base"] == "R" else day0
        target = base + dt.timedelta(days=s["target_day"])
        assert planned[code]["target_date"] == target.isoformat()
        assert planned[code]["window_start"] == (target - dt.timedelta(days=s["window_days_before"])).isoformat()
        assert planned[code]["window_end"] == (target + dt.timedelta(days=s["window_days_after"])).isoformat()
    assert schedule["M12"]["target"] == "D+365" and schedule["M12"]["window"] == "D+351 .. D+379"


def test_the_metadata_as_odm_is_valid_and_readable_by_every_role(client, login, tmp_path):
    from lxml import etree

    from tests.export.odm_rules import NS, validate_xsd

    assert client.get("/study/metadata").status_code == 401
    assert client.get("/study/metadata.xml").status_code == 401
    json_md = None
    for role, site in (("investigator", "MINSK"), ("coordinator", "GOMEL"), ("monitor", "MINSK"),
                       ("data_manager", "*"), ("inspector", "*"), ("admin", "*")):
        headers = login(f"u_{role}", role, site)
        r = client.get("/study/metadata", headers=headers)
        assert r.status_code == 200, (role, r.text)
        json_md = r.json()
        r = client.get("/study/metadata.xml", headers=headers)
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml"), role
    path = tmp_path / "metadata.xml"
    path.write_bytes(r.content)
    validate_xsd(path)
    root = etree.parse(str(path)).getroot()
    assert root.get("ODMVersion") == "1.3.2" and root.get("FileType") == "Snapshot"
    (mdv,) = root.findall("o:Study/o:MetaDataVersion", NS)
    # the same item codes as the JSON, each an ItemDef with its range or allowed values
    aliases = {a.get("Name"): a.getparent() for a in mdv.iter(f"{{{NS['o']}}}Alias")
               if a.get("Context") == "trialaudit:item_code"}
    assert sorted(aliases) == sorted(json_md["item_codes"])
    face = aliases["mrss.face"]
    assert face.get("DataType") == "integer"
    assert [(c.get("Comparator"), c.findtext("o:CheckValue", namespaces=NS)) for c in face.findall("o:RangeCheck", NS)] \
        == [("GE", "0"), ("LE", "3")]
    assert aliases["acr_eular.puffy_fingers"].get("DataType") == "boolean"
    mandatory = {ref.get("ItemOID"): ref.get("Mandatory") for ref in mdv.iter(f"{{{NS['o']}}}ItemRef")}
    assert mandatory[face.get("OID")] == "Yes" and mandatory[aliases["acr_eular.puffy_fingers"].get("OID")] == "No"
    # each visit's target and window per arm
    m12 = mdv.find("o:StudyEventDef[@OID='SE.M12']", NS)
    windows = {a.get("Context"): a.get("Name") for a in m12.findall("o:Alias", NS)}
    assert windows["trialaudit:schedule:standard"] == "target D+365, window D+351 .. D+379"
