"""``/v3/users``: create, list, show, update and delete users; change one's own password; list a
user's projects.

Passwords are hashed with bcrypt (``[identity] password_hash_rounds``, never below 12) and are never
returned, logged or echoed in an error. Disabling or deleting a user, or changing their password,
revokes every token they hold; deleting a user removes their role assignments.

A user may read their own record and change its ``description`` and ``email``
(``identity:update_own_user``); anything else is ``identity:update_user``. Their password they
change through ``POST /v3/users/{id}/password`` with the original one.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, request
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from control.common import db, errors, policy, validation
from control.common.app import no_content
from control.common.config import Config
from control.identity import models, passwords, render, tokens
from control.identity.api import common

bp = Blueprint("identity_users", __name__, url_prefix="/v3")

# Keystone's user options; ``null`` removes one.
_BOOLEAN_OPTION = {"type": ["boolean", "null"]}
OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "ignore_change_password_upon_first_use": _BOOLEAN_OPTION,
        "ignore_password_expiry": _BOOLEAN_OPTION,
        "ignore_lockout_failure_attempts": _BOOLEAN_OPTION,
        "ignore_user_inactivity": _BOOLEAN_OPTION,
        "lock_password": _BOOLEAN_OPTION,
        "multi_factor_auth_enabled": _BOOLEAN_OPTION,
        "multi_factor_auth_rules": {
            "type": ["array", "null"],
            "items": {"type": "array", "items": {"type": "string"}},
        },
    },
    "additionalProperties": False,
}

_PROPERTIES: dict[str, Any] = {
    "name": common.NAME,
    "domain_id": validation.ID,
    # Checked by _check_passwords first, so that no error message ever repeats a password.
    "password": {},
    "default_project_id": validation.NULLABLE_ID,
    "description": validation.DESCRIPTION,
    "email": {"type": ["string", "null"], "maxLength": 255},
    "enabled": validation.BOOLEAN,
    "options": OPTIONS_SCHEMA,
}
CREATE_SCHEMA = common.wrapped("user", _PROPERTIES, required=["name"])
UPDATE_SCHEMA = common.wrapped("user", _PROPERTIES, update=True)
PASSWORD_SCHEMA = common.wrapped(
    "user", {"password": {}, "original_password": {}}, required=["password", "original_password"]
)

# What a user may change on their own record without identity:update_user.
SELF_SERVICE_FIELDS = frozenset({"description", "email"})


def _conflict(name: str, domain_id: str) -> str:
    return f"A user named {name!r} already exists in domain {domain_id}."


def _body(schema: dict[str, Any], password_fields: tuple[str, ...]) -> dict[str, Any]:
    raw = validation.json_body()
    user = raw.get("user") if isinstance(raw, dict) else None
    if isinstance(user, dict):
        for field in password_fields:
            value = user.get(field)
            if field in user and value is not None and not _valid_password(value):
                raise errors.BadRequest(
                    f"Invalid input for field 'user.{field}': a password is a string of 1 to "
                    f"{passwords.MAX_PASSWORD_LENGTH} characters"
                )
    return common.body_of("user", schema, raw)


def _valid_password(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= passwords.MAX_PASSWORD_LENGTH


def _hash(password: str) -> str:
    conf: Config = current_app.extensions["cirrus.config"]
    rounds = conf.get_int("identity", "password_hash_rounds", passwords.MIN_ROUNDS)
    return passwords.hash_password(password, rounds)


def _set_password(user: models.User, password: str | None) -> None:
    user.password_hash = _hash(password) if password is not None else None
    user.password_created_at = db.utcnow() if password is not None else None


def _check_default_project(sess: Session, project_id: str | None) -> None:
    if project_id:
        common.find(sess, models.Project, "project", project_id)


def _merge_options(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(current)
    for name, value in changes.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


def _target(user: models.User) -> dict[str, Any]:
    return {"user_id": user.id, "domain_id": user.domain_id}


@bp.post("/users")
def create_user() -> Response:
    body = _body(CREATE_SCHEMA, ("password",))
    domain_id = body.get("domain_id") or models.DEFAULT_DOMAIN_ID
    policy.enforce("identity:create_user", {"domain_id": domain_id})
    sess = db.session()
    common.find(sess, models.Domain, "domain", domain_id)
    _check_default_project(sess, body.get("default_project_id"))
    user = models.User(
        name=body["name"],
        domain_id=domain_id,
        default_project_id=body.get("default_project_id"),
        description=body.get("description"),
        email=body.get("email"),
        enabled=body.get("enabled", True),
        options=_merge_options({}, body.get("options", {})),
    )
    _set_password(user, body.get("password"))
    sess.add(user)
    db.commit(_conflict(user.name, domain_id))
    return common.respond("user", render.user(user), 201)


@bp.get("/users")
def list_users() -> Response:
    policy.enforce("identity:list_users", {"domain_id": request.args.get("domain_id")})
    stmt = common.filtered(
        select(models.User).order_by(models.User.name),
        {
            "name": models.User.name,
            "domain_id": models.User.domain_id,
            "enabled": models.User.enabled,
        },
    )
    found = db.session().scalars(stmt).all()
    return common.listing("users", [render.user(u) for u in found], "users")


@bp.get("/users/<user_id>")
def get_user(user_id: str) -> Response:
    user = common.find(db.session(), models.User, "user", user_id)
    policy.enforce("identity:get_user", _target(user))
    return common.respond("user", render.user(user))


@bp.patch("/users/<user_id>")
def update_user(user_id: str) -> Response:
    sess = db.session()
    user = common.find(sess, models.User, "user", user_id)
    target = _target(user)
    changes = _body(UPDATE_SCHEMA, ("password",))
    if not (
        set(changes) - {"id"} <= SELF_SERVICE_FIELDS
        and policy.allowed("identity:update_own_user", target)
    ):
        policy.enforce("identity:update_user", target)
    common.reject_id_change(changes, "user", user.id)
    common.reject_change(changes, "user", "domain_id", user.domain_id)
    if "default_project_id" in changes:
        _check_default_project(sess, changes["default_project_id"])
    for field in ("name", "default_project_id", "description", "email", "enabled"):
        if field in changes:
            setattr(user, field, changes[field])
    if "options" in changes:
        user.options = _merge_options(user.options or {}, changes["options"])
    if "password" in changes:
        _set_password(user, changes["password"])
    if "password" in changes or changes.get("enabled") is False:
        tokens.revoke_user(sess, user.id)
    db.commit(_conflict(user.name, user.domain_id))
    return common.respond("user", render.user(user))


@bp.delete("/users/<user_id>")
def delete_user(user_id: str) -> Response:
    sess = db.session()
    user = common.find(sess, models.User, "user", user_id)
    policy.enforce("identity:delete_user", _target(user))
    sess.execute(delete(models.RoleAssignment).where(models.RoleAssignment.user_id == user.id))
    tokens.revoke_user(sess, user.id)
    sess.delete(user)
    db.commit()
    return no_content()


@bp.post("/users/<user_id>/password")
def change_password(user_id: str) -> Response:
    sess = db.session()
    user = common.find(sess, models.User, "user", user_id)
    policy.enforce("identity:change_password", _target(user))
    body = _body(PASSWORD_SCHEMA, ("password", "original_password"))
    if body["password"] is None or body["original_password"] is None:
        field = "password" if body["password"] is None else "original_password"
        raise errors.BadRequest(f"Invalid input for field 'user.{field}': a password is required")
    if (user.options or {}).get("lock_password"):
        raise errors.Forbidden(
            "You cannot change your password: the lock_password option of this user is set."
        )
    if not passwords.check_password(body["original_password"], user.password_hash):
        raise errors.Unauthorized("The original password is not correct.")
    _set_password(user, body["password"])
    tokens.revoke_user(sess, user.id)
    db.commit()
    return no_content()


@bp.get("/users/<user_id>/projects")
def list_user_projects(user_id: str) -> Response:
    sess = db.session()
    user = common.find(sess, models.User, "user", user_id)
    policy.enforce("identity:list_user_projects", _target(user))
    ids = set(
        sess.scalars(
            select(models.RoleAssignment.target_id).where(
                models.RoleAssignment.user_id == user.id,
                models.RoleAssignment.target_type == "project",
            )
        )
    )
    stmt = common.filtered(
        select(models.Project).where(models.Project.id.in_(ids)).order_by(models.Project.name),
        {
            "name": models.Project.name,
            "domain_id": models.Project.domain_id,
            "enabled": models.Project.enabled,
        },
    )
    found = sess.scalars(stmt).all()
    return common.listing(
        "projects", [render.project(p) for p in found], f"users/{user.id}/projects"
    )
