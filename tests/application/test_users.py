"""Users: never deleted or reused (R22); logins, failures and lockout audited (R11, R24)."""

import pytest

from domain.errors import AuthenticationFailed, Conflict, InvalidInput, PermissionDenied
from tests.conftest import PASSWORD


def test_login_and_failed_login_are_audited_and_five_failures_lock_R11_R24(app, add_user, actor_of):
    admin = actor_of(add_user("admin1", "admin", "*"))
    user = add_user("inv1", "investigator")
    app.authenticate("inv1", PASSWORD)
    for _ in range(4):
        with pytest.raises(AuthenticationFailed, match="incorrect"):
            app.authenticate("inv1", "wrong password!!")
    with pytest.raises(AuthenticationFailed, match="incorrect username or password"):  # now locked (13.D10)
        app.authenticate("inv1", "wrong password!!")
    with pytest.raises(AuthenticationFailed, match="incorrect username or password"):
        app.authenticate("inv1", PASSWORD)  # even the right password
    with pytest.raises(AuthenticationFailed):
        app.actor_for(user["id"])  # existing tokens stop working too
    types = [h["type"] for h in app.user_history(admin, user["id"])]
    assert types == ["UserRegistered", "LoginSucceeded"] + ["LoginFailed"] * 5 + ["UserLockedOut", "LoginFailed"]
    app.unlock_user(admin, user["id"], reason="identity confirmed by phone call")
    assert app.authenticate("inv1", PASSWORD).failed_logins == 0


def test_unknown_usernames_are_recorded_too_R11(app, services):
    with pytest.raises(AuthenticationFailed, match="incorrect username or password"):
        app.authenticate("nobody", "whatever password")
    topics = [n.topic for n in app.recorder.select_notifications(start=1, limit=10)]
    assert topics == ["trialaudit.LoginAttempt.UnknownUserLoginFailed"]


def test_accounts_are_never_reused_and_deactivation_keeps_them_R22(app, add_user, actor_of):
    admin = actor_of(add_user("admin1", "admin", "*"))
    user = add_user("inv1", "investigator")
    app.deactivate_user(admin, user["id"], reason="left the study team")
    with pytest.raises(AuthenticationFailed, match="incorrect username or password"):
        app.authenticate("inv1", PASSWORD)
    with pytest.raises(Conflict, match="never deleted or reused"):
        add_user("inv1", "investigator")
    register = {u["username"]: u for u in app.list_users(admin)}
    assert register["inv1"]["active"] is False
    history = app.user_history(admin, user["id"])
    assert history[-2]["type"] == "UserDeactivated" and history[-2]["reason"] == "left the study team"
    assert history[-1]["type"] == "LoginFailed" and history[-1]["reason"] == "login refused: account deactivated"


def test_only_admins_manage_users_and_role_site_rules_hold(app, add_user, actor_of):
    inv = actor_of(add_user("inv1", "investigator"))
    admin = actor_of(add_user("admin1", "admin", "*"))
    with pytest.raises(PermissionDenied):
        app.register_user(inv, username="x1", full_name="X", role="admin", site="*", password=PASSWORD)
    with pytest.raises(InvalidInput) as e:
        app.register_user(admin, username="x1", full_name="X", role="investigator", site="*", password="short")
    assert {p for p, _ in e.value.errors} == {("site",), ("password",)}
    inspector = actor_of(add_user("insp", "inspector", "*"))
    assert {u["username"] for u in app.list_users(inspector)} == {"inv1", "admin1", "insp"}
    with pytest.raises(PermissionDenied):
        app.list_users(inv)


def test_password_hashes_are_argon2_and_never_shown(app, add_user, actor_of):
    admin = actor_of(add_user("admin1", "admin", "*"))
    user = add_user("inv1", "investigator")
    assert app.accounts.password_hash(user["id"]).startswith("$argon2id$")
    assert "argon2" not in repr(app.get_user(admin, user["id"]))
    changes = app.user_history(admin, user["id"])[0]["changes"]
    assert {"field": "password", "old_value": None, "new_value": "[set]"} in changes
