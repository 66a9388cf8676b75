"""What a newcomer trying the pages met (the try-it run of the merged branches): a saved form's banner that
never showed, a concealed allocation slot printed as None, and a record value printed as a Python dict."""

from __future__ import annotations

from tests.web.test_site_forms import client_for, enrol, form_post, users, visit_id  # noqa: F401 (fixture)


def test_a_saved_form_redirects_with_done_before_the_fragment_and_the_page_says_saved(services, users):  # noqa: F811
    """A query written after '#' is part of the fragment, never sent: the "Saved: ..." banner never showed."""
    c = client_for(services, "coord")
    pid = enrol(c)
    vid = visit_id(services, pid, "BL")
    page = f"/ui/site/visits/{vid}"
    target = services.app.get_visit(services.app.actor_for(users["dm"]["id"]), vid)["target_date"]
    r = form_post(c, page, f"{page}/date", {"date": target})
    assert r.status_code == 303
    location = r.headers["location"]
    assert "?done=" in location and location.index("?done=") < location.index("#"), location
    shown = c.get(location.split("#")[0]).text  # what the browser requests: the fragment stays behind
    assert 'role="status">Saved: visit date recorded.</p>' in shown


def test_a_site_user_sees_no_concealed_slot_placeholder(services, users):  # noqa: F811
    """Concealment hides the allocation slot from site users (None in their view): the page said "(slot None)"."""
    c = client_for(services, "coord")
    pid = enrol(c)
    shown = c.get(f"/ui/site/participants/{pid}").text
    assert "Allocated to" in shown and "slot None" not in shown and "(slot" not in shown
    dm = client_for(services, "dm")
    assert "(slot 1)" in dm.get(f"/ui/site/participants/{pid}").text  # a data manager still sees it


def test_a_record_value_reads_as_fields_not_as_a_python_dict(services, users):  # noqa: F811
    """SignerIdentityVerified's new value is a record: the study-wide trail showed {'evidence': '...', ...}."""
    app = services.app
    app.verify_signer_identity(app.actor_for(users["adm"]["id"]), users["inv"]["id"], method="photo ID in person",
                               evidence="passport seen")
    shown = client_for(services, "insp").get("/ui/audit?type=SignerIdentityVerified").text
    assert "SignerIdentityVerified" in shown
    assert "{&#39;" not in shown and "{'" not in shown
    assert "evidence: passport seen; method: photo ID in person" in shown
