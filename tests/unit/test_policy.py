from __future__ import annotations

from pathlib import Path

import pytest

from control.common.policy import BASE_RULES, Enforcer, PolicyError

RULES = {
    **BASE_RULES,
    "thing:get": "rule:admin_or_project_reader",
    "thing:delete": "rule:admin_required",
    "thing:own": "user_id:%(user_id)s",
    "thing:not_reader": "not role:reader",
    "thing:nested": "(role:member or role:admin) and project_id:%(project_id)s",
    "thing:never": "!",
}


def creds(roles: list[str], project: str = "p1", user: str = "u1") -> dict[str, object]:
    return {"roles": roles, "project_id": project, "user_id": user}


def test_admin_passes_admin_rules_and_member_does_not() -> None:
    enforcer = Enforcer(RULES)
    assert enforcer.authorize("thing:delete", creds(["admin"]), {})
    assert not enforcer.authorize("thing:delete", creds(["member", "reader"]), {})


def test_project_rules_compare_with_the_target() -> None:
    enforcer = Enforcer(RULES)
    assert enforcer.authorize("thing:get", creds(["reader"]), {"project_id": "p1"})
    assert not enforcer.authorize("thing:get", creds(["reader"]), {"project_id": "p2"})
    assert not enforcer.authorize("thing:get", creds(["reader"]), {})


def test_substitution_parentheses_and_not() -> None:
    enforcer = Enforcer(RULES)
    assert enforcer.authorize("thing:own", creds([]), {"user_id": "u1"})
    assert not enforcer.authorize("thing:own", creds([]), {"user_id": "u2"})
    assert enforcer.authorize("thing:nested", creds(["member"]), {"project_id": "p1"})
    assert not enforcer.authorize("thing:nested", creds(["reader"]), {"project_id": "p1"})
    assert enforcer.authorize("thing:not_reader", creds(["member"]), {})
    assert not enforcer.authorize("thing:never", creds(["admin"]), {})


def test_roles_match_case_insensitively() -> None:
    assert Enforcer(RULES).authorize("thing:delete", creds(["Admin"]), {})


def test_an_unregistered_rule_is_an_error_not_a_pass() -> None:
    with pytest.raises(PolicyError):
        Enforcer(RULES).authorize("thing:unknown", creds(["admin"]), {})


def test_yaml_file_overrides_a_default(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text('"thing:delete": "role:member"\n')
    enforcer = Enforcer(RULES, str(path))
    assert enforcer.authorize("thing:delete", creds(["member"]), {})
    assert not enforcer.authorize("thing:delete", creds(["reader"]), {})


def test_a_broken_rule_is_refused_at_load(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text('"thing:delete": "(role:admin"\n')
    with pytest.raises(PolicyError, match="missing"):
        Enforcer(RULES, str(path))
