"""Per-API policy rules with defaults, overridable by a YAML file, enforced on every endpoint.

The rule language is the oslo.policy subset operators know::

    "role:admin or (role:member and project_id:%(project_id)s)"
    "rule:admin_required"      # another rule
    "@" / "!"                  # always / never
    "not role:reader"

A check ``kind:match`` compares the credential ``kind`` (``role`` tests membership in the roles)
with ``match`` after ``%(name)s`` is filled from the target. ``True:%(flag)s`` style checks test
the target alone.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from flask import current_app, g

from control.common import errors

LOG = logging.getLogger("cirrus.policy")

Check = Callable[[Mapping[str, Any], Mapping[str, Any], "Enforcer"], bool]

# A token is a parenthesis or a check; a check may hold ``%(name)s`` substitutions.
_TOKEN = re.compile(r"\s*(\(|\)|(?:%\([^)]*\)[a-z]|[^\s()])+)")


class PolicyError(Exception):
    """A rule that cannot be parsed, or one that names an unknown rule."""


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            break
        tokens.append(match.group(1))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0

    def parse(self) -> Check:
        if not self.tokens:
            return lambda creds, target, enf: True
        check = self._or()
        if self.pos != len(self.tokens):
            raise PolicyError(f"unexpected {self.tokens[self.pos]!r} in rule {self.text!r}")
        return check

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _or(self) -> Check:
        checks = [self._and()]
        while self._peek() == "or":
            self.pos += 1
            checks.append(self._and())
        if len(checks) == 1:
            return checks[0]
        return lambda c, t, e: any(ch(c, t, e) for ch in checks)

    def _and(self) -> Check:
        checks = [self._not()]
        while self._peek() == "and":
            self.pos += 1
            checks.append(self._not())
        if len(checks) == 1:
            return checks[0]
        return lambda c, t, e: all(ch(c, t, e) for ch in checks)

    def _not(self) -> Check:
        if self._peek() == "not":
            self.pos += 1
            inner = self._not()
            return lambda c, t, e: not inner(c, t, e)
        return self._atom()

    def _atom(self) -> Check:
        item = self._peek()
        if item is None:
            raise PolicyError(f"rule {self.text!r} ends too early")
        self.pos += 1
        if item == "(":
            inner = self._or()
            if self._peek() != ")":
                raise PolicyError(f"missing ')' in rule {self.text!r}")
            self.pos += 1
            return inner
        if item == "@":
            return lambda c, t, e: True
        if item == "!":
            return lambda c, t, e: False
        if ":" not in item:
            raise PolicyError(f"cannot understand {item!r} in rule {self.text!r}")
        kind, match = item.split(":", 1)
        return _make_check(kind, match)


def _fill(match: str, target: Mapping[str, Any]) -> str | None:
    try:
        return match % _Stringify(target)
    except KeyError:
        return None


class _Stringify(dict):
    def __init__(self, target: Mapping[str, Any]) -> None:
        super().__init__(target)

    def __getitem__(self, key: str) -> str:
        value = super().__getitem__(key)
        return "" if value is None else str(value)


def _make_check(kind: str, match: str) -> Check:
    if kind == "rule":

        def rule_check(c: Mapping[str, Any], t: Mapping[str, Any], e: Enforcer) -> bool:
            return e.check_rule(match, c, t)

        return rule_check
    if kind == "role":
        wanted = match.lower()
        return lambda c, t, e: wanted in [r.lower() for r in c.get("roles") or []]

    def generic(c: Mapping[str, Any], t: Mapping[str, Any], e: Enforcer) -> bool:
        expected = _fill(match, t)
        if expected is None:
            return False
        if kind in ("True", "False"):
            return expected == kind
        actual = c.get(kind)
        return actual is not None and expected != "" and str(actual) == expected

    return generic


class Enforcer:
    """Holds the default rules of one service and the operator's overrides."""

    def __init__(self, defaults: Mapping[str, str], policy_file: str | None = None) -> None:
        self.rules: dict[str, str] = dict(defaults)
        self.policy_file = policy_file
        if policy_file and Path(policy_file).exists():
            loaded = yaml.safe_load(Path(policy_file).read_text(encoding="utf-8")) or {}
            if not isinstance(loaded, dict):
                raise PolicyError(f"{policy_file}: expected a mapping of rule name to rule")
            for name, rule in loaded.items():
                self.rules[str(name)] = str(rule)
        self._compiled: dict[str, Check] = {}
        for name, rule in self.rules.items():
            self._compiled[name] = _Parser(rule).parse()

    def check_rule(
        self, name: str, creds: Mapping[str, Any], target: Mapping[str, Any], depth: int = 0
    ) -> bool:
        check = self._compiled.get(name)
        if check is None:
            LOG.error("policy rule %s is not defined: denying", name)
            return False
        return check(creds, target, self)

    def authorize(self, name: str, creds: Mapping[str, Any], target: Mapping[str, Any]) -> bool:
        if name not in self._compiled:
            raise PolicyError(f"policy rule {name!r} is not registered")
        return self.check_rule(name, creds, target)


# Rules every service shares; a service's defaults may refer to them with ``rule:``.
BASE_RULES = {
    "admin_required": "role:admin",
    "service_role": "role:service",
    "service_or_admin": "rule:admin_required or rule:service_role",
    "owner": "user_id:%(user_id)s",
    "admin_or_owner": "rule:admin_required or rule:owner",
    "project_member": "role:member and project_id:%(project_id)s",
    "project_reader": "role:reader and project_id:%(project_id)s",
    "admin_or_project_member": "rule:admin_required or rule:project_member",
    "admin_or_project_reader": "rule:admin_required or rule:project_reader",
}


def init_app(app: Any, enforcer: Enforcer) -> None:
    app.extensions["cirrus.policy"] = enforcer


def enforce(rule: str, target: Mapping[str, Any] | None = None) -> None:
    """Allow the current request under ``rule`` or raise 403.

    ``target`` holds the facts about the object acted on (its ``project_id``, ``user_id``...);
    nothing is filled in from the caller, so a rule about ownership fails closed without it.
    """
    enforcer: Enforcer = current_app.extensions["cirrus.policy"]
    ctxt = g.context
    if not enforcer.authorize(rule, ctxt.policy_credentials(), target or {}):
        raise errors.Forbidden(f"You are not authorized to perform the requested action: {rule}.")


def allowed(rule: str, target: Mapping[str, Any] | None = None) -> bool:
    try:
        enforce(rule, target)
    except errors.Forbidden:
        return False
    return True
