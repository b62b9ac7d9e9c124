"""Role grants of users on projects and domains, and ``GET /v3/role_assignments``.

Grants live at ``/v3/{projects|domains}/{id}/users/{user_id}/roles[/{role_id}]``. Tokens compute
their roles when validated, so a grant or a revocation takes effect on the next request. Groups
are not supported: their paths answer 404 saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from control.common import db, errors, policy
from control.common.app import no_content
from control.identity import models, render
from control.identity.api import common

bp = Blueprint("identity_assignments", __name__, url_prefix="/v3")

_TARGETS = "<any(projects, domains):targets>/<target_id>"
_KINDS = {"projects": "project", "domains": "domain"}


def _target_model(kind: str) -> type[models.Project] | type[models.Domain]:
    return models.Project if kind == "project" else models.Domain


def _target_and_user(targets: str, target_id: str, user_id: str) -> tuple[str, models.User]:
    """The kind of target (``project`` or ``domain``) and the user; 404 naming what is missing."""
    sess = db.session()
    kind = _KINDS[targets]
    common.find(sess, _target_model(kind), kind, target_id)
    return kind, common.find(sess, models.User, "user", user_id)


def _grant(
    targets: str, target_id: str, user_id: str, role_id: str
) -> tuple[str, models.User, models.Role, dict[str, Any]]:
    """The target kind, user and role of a grant path (404 naming what is missing), and the
    policy target."""
    kind, user = _target_and_user(targets, target_id, user_id)
    role = common.find(db.session(), models.Role, "role", role_id)
    return kind, user, role, {f"{kind}_id": target_id, "user_id": user.id, "role_id": role.id}


def _assignment(kind: str, target_id: str, user_id: str, role_id: str) -> models.RoleAssignment:
    return models.RoleAssignment(
        user_id=user_id, target_type=kind, target_id=target_id, role_id=role_id
    )


def _key(kind: str, target_id: str, user_id: str, role_id: str) -> tuple[str, str, str, str]:
    return (user_id, kind, target_id, role_id)


@bp.put(f"/{_TARGETS}/users/<user_id>/roles/<role_id>")
def create_grant(targets: str, target_id: str, user_id: str, role_id: str) -> Response:
    kind, user, role, target = _grant(targets, target_id, user_id, role_id)
    policy.enforce("identity:create_grant", target)
    sess = db.session()
    if sess.get(models.RoleAssignment, _key(kind, target_id, user.id, role.id)) is None:
        sess.add(_assignment(kind, target_id, user.id, role.id))
        db.commit()
    return no_content()


@bp.get(f"/{_TARGETS}/users/<user_id>/roles/<role_id>")
def check_grant(targets: str, target_id: str, user_id: str, role_id: str) -> Response:
    """GET and HEAD: 204 when the user holds the role directly on the target, else 404."""
    kind, user, role, target = _grant(targets, target_id, user_id, role_id)
    policy.enforce("identity:check_grant", target)
    if db.session().get(models.RoleAssignment, _key(kind, target_id, user.id, role.id)) is None:
        raise _no_grant(kind, target_id, user.id, role.id)
    return no_content()


@bp.delete(f"/{_TARGETS}/users/<user_id>/roles/<role_id>")
def revoke_grant(targets: str, target_id: str, user_id: str, role_id: str) -> Response:
    kind, user, role, target = _grant(targets, target_id, user_id, role_id)
    policy.enforce("identity:revoke_grant", target)
    sess = db.session()
    row = sess.get(models.RoleAssignment, _key(kind, target_id, user.id, role.id))
    if row is None:
        raise _no_grant(kind, target_id, user.id, role.id)
    sess.delete(row)
    db.commit()
    return no_content()


def _no_grant(kind: str, target_id: str, user_id: str, role_id: str) -> errors.NotFound:
    return errors.NotFound(
        f"Could not find role assignment with role: {role_id}, user: {user_id}, "
        f"{kind}: {target_id}."
    )


@bp.get(f"/{_TARGETS}/users/<user_id>/roles")
def list_grants(targets: str, target_id: str, user_id: str) -> Response:
    kind, user = _target_and_user(targets, target_id, user_id)
    target = {f"{kind}_id": target_id, "user_id": user.id}
    policy.enforce("identity:list_grants", target)
    roles = db.session().scalars(
        select(models.Role)
        .join(models.RoleAssignment, models.RoleAssignment.role_id == models.Role.id)
        .where(
            models.RoleAssignment.user_id == user.id,
            models.RoleAssignment.target_type == kind,
            models.RoleAssignment.target_id == target_id,
        )
        .order_by(models.Role.name)
    )
    return common.listing(
        "roles", [render.role(r) for r in roles], f"{targets}/{target_id}/users/{user.id}/roles"
    )


# GET /v3/role_assignments


@dataclass(frozen=True)
class _Entry:
    user_id: str
    target_type: str
    target_id: str
    role_id: str
    # For a role implied by an assigned one: the role granted, and the role implying this one.
    granted_role_id: str | None = None
    prior_role_id: str | None = None


def _expand_implied(sess: Session, entries: list[_Entry]) -> list[_Entry]:
    """The entries followed by the roles they imply, directly or not, each once per target."""
    implies: dict[str, list[str]] = {}
    for row in sess.scalars(select(models.ImpliedRole)):
        implies.setdefault(row.prior_role_id, []).append(row.implied_role_id)
    seen = {(e.user_id, e.target_type, e.target_id, e.role_id) for e in entries}
    expanded = list(entries)
    for entry in entries:
        pending = [(implied, entry.role_id) for implied in sorted(implies.get(entry.role_id, []))]
        while pending:
            role_id, prior_id = pending.pop(0)
            key = (entry.user_id, entry.target_type, entry.target_id, role_id)
            if key in seen:
                continue
            seen.add(key)
            expanded.append(
                _Entry(
                    entry.user_id,
                    entry.target_type,
                    entry.target_id,
                    role_id,
                    granted_role_id=entry.role_id,
                    prior_role_id=prior_id,
                )
            )
            pending.extend((implied, role_id) for implied in sorted(implies.get(role_id, [])))
    return expanded


def _subtree(sess: Session, project_id: str) -> list[str]:
    """The project and every project below it."""
    children: dict[str, list[str]] = {}
    for child_id, parent_id in sess.execute(
        select(models.Project.id, models.Project.parent_id).where(
            models.Project.parent_id.is_not(None)
        )
    ):
        children.setdefault(str(parent_id), []).append(child_id)
    result, pending = [], [project_id]
    while pending:
        current = pending.pop()
        if current in result:
            continue
        result.append(current)
        pending.extend(children.get(current, []))
    return result


def _names(sess: Session, entries: list[_Entry]) -> dict[tuple[str, str], dict[str, Any]]:
    """``(kind, id) -> {"id", "name", ["domain"]}`` for every user, role and target named."""
    domains = {d.id: {"id": d.id, "name": d.name} for d in sess.scalars(select(models.Domain))}
    refs: dict[tuple[str, str], dict[str, Any]] = {
        ("domain", i): dict(ref) for i, ref in domains.items()
    }
    role_ids = {e.role_id for e in entries}
    for role in sess.scalars(select(models.Role).where(models.Role.id.in_(role_ids))):
        refs[("role", role.id)] = {"id": role.id, "name": role.name}
    user_ids = {e.user_id for e in entries}
    for user in sess.scalars(select(models.User).where(models.User.id.in_(user_ids))):
        refs[("user", user.id)] = {
            "id": user.id,
            "name": user.name,
            "domain": domains.get(user.domain_id, {"id": user.domain_id}),
        }
    project_ids = {e.target_id for e in entries if e.target_type == "project"}
    for project in sess.scalars(select(models.Project).where(models.Project.id.in_(project_ids))):
        refs[("project", project.id)] = {
            "id": project.id,
            "name": project.name,
            "domain": domains.get(project.domain_id, {"id": project.domain_id}),
        }
    return refs


def _render_assignment(
    entry: _Entry, names: dict[tuple[str, str], dict[str, Any]] | None
) -> dict[str, Any]:
    def ref(kind: str, ident: str) -> dict[str, Any]:
        if names is None:
            return {"id": ident}
        return names.get((kind, ident), {"id": ident})

    granted_role = entry.granted_role_id or entry.role_id
    links = {
        "assignment": f"{render.base_url()}/v3/{entry.target_type}s/{entry.target_id}"
        f"/users/{entry.user_id}/roles/{granted_role}"
    }
    if entry.prior_role_id is not None:
        links["prior_role"] = f"{render.base_url()}/v3/roles/{entry.prior_role_id}"
    return {
        "role": ref("role", entry.role_id),
        "user": ref("user", entry.user_id),
        "scope": {entry.target_type: ref(entry.target_type, entry.target_id)},
        "links": links,
    }


@bp.get("/role_assignments")
def list_role_assignments() -> Response:
    args = request.args
    project_id = args.get("scope.project.id")
    domain_id = args.get("scope.domain.id")
    user_id = args.get("user.id")
    role_id = args.get("role.id")
    policy.enforce(
        "identity:list_role_assignments",
        {
            "scope.project.id": project_id,
            "scope.domain.id": domain_id,
            "user.id": user_id,
            "role.id": role_id,
        },
    )
    if project_id is not None and domain_id is not None:
        raise errors.BadRequest("Specify scope.project.id or scope.domain.id, not both.")
    effective = common.query_bool("effective") or False
    include_names = common.query_bool("include_names") or False
    include_subtree = common.query_bool("include_subtree") or False
    if include_subtree and project_id is None:
        raise errors.BadRequest("include_subtree needs scope.project.id.")
    path = "role_assignments"
    if "group.id" in args or "scope.system" in args or "scope.OS-INHERIT:inherited_to" in args:
        # No groups, no system scope, no inherited assignments: nothing matches.
        return common.listing("role_assignments", [], path)

    sess = db.session()
    ra = models.RoleAssignment
    stmt = select(ra).order_by(ra.target_type, ra.target_id, ra.user_id, ra.role_id)
    if user_id is not None:
        stmt = stmt.where(ra.user_id == user_id)
    if project_id is not None:
        ids = _subtree(sess, project_id) if include_subtree else [project_id]
        stmt = stmt.where(ra.target_type == "project", ra.target_id.in_(ids))
    if domain_id is not None:
        stmt = stmt.where(ra.target_type == "domain", ra.target_id == domain_id)
    if role_id is not None and not effective:
        stmt = stmt.where(ra.role_id == role_id)

    entries = [_Entry(a.user_id, a.target_type, a.target_id, a.role_id) for a in sess.scalars(stmt)]
    if effective:
        expanded = _expand_implied(sess, entries)
        entries = [e for e in expanded if role_id is None or e.role_id == role_id]

    names = _names(sess, entries) if include_names else None
    return common.listing("role_assignments", [_render_assignment(e, names) for e in entries], path)


# Groups are out of scope; say so rather than answer a bare 404.

_NO_GROUPS = "Groups are not supported by Cirrus identity: assign roles to users directly."
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


@bp.route("/groups", methods=_ALL_METHODS)
@bp.route("/groups/<path:rest>", methods=_ALL_METHODS)
@bp.route("/users/<user_id>/groups", methods=_ALL_METHODS)
@bp.route(f"/{_TARGETS}/groups/<path:rest>", methods=_ALL_METHODS)
def groups(**_ignored: str) -> Response:
    raise errors.NotFound(_NO_GROUPS)
