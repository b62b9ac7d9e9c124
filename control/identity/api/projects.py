"""``/v3/projects``: create, list, show, update and delete projects.

A project belongs to a domain (``default`` unless told) and may have a parent project of the same
domain; its name is unique within its domain. Disabling or deleting a project revokes the tokens
scoped to it; deleting it removes its role assignments. A project with children cannot be deleted
(403, as Keystone without ``cascade``).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request
from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from control.common import db, errors, policy, validation
from control.common.app import no_content
from control.identity import models, render, tokens
from control.identity.api import common

bp = Blueprint("identity_projects", __name__, url_prefix="/v3")

_PROPERTIES: dict[str, Any] = {
    "name": common.NAME,
    "description": validation.DESCRIPTION,
    "enabled": validation.BOOLEAN,
    "domain_id": validation.ID,
    "parent_id": validation.NULLABLE_ID,
    "is_domain": validation.BOOLEAN,
    "tags": common.TAGS,
    "options": common.OPTIONS,
}
CREATE_SCHEMA = common.wrapped("project", _PROPERTIES, required=["name"])
UPDATE_SCHEMA = common.wrapped("project", _PROPERTIES, update=True)


def _conflict(name: str, domain_id: str) -> str:
    return f"A project named {name!r} already exists in domain {domain_id}."


def _reject_is_domain(body: dict[str, Any]) -> None:
    if body.get("is_domain"):
        raise errors.BadRequest(
            "Invalid input for field 'project.is_domain': projects acting as domains are not "
            "supported; create a domain instead"
        )


def _target(project: models.Project) -> dict[str, Any]:
    return {"project_id": project.id, "domain_id": project.domain_id}


def _parent(sess: Session, parent_id: str | None, domain_id: str | None) -> models.Project | None:
    """The parent project named by ``parent_id`` (``None`` for a domain or no parent)."""
    if not parent_id or parent_id == domain_id:
        return None
    parent = sess.get(models.Project, parent_id)
    if parent is None:
        if domain_id is None and sess.get(models.Domain, parent_id) is not None:
            return None
        raise common.not_found("project", parent_id)
    return parent


@bp.post("/projects")
def create_project() -> Response:
    body = common.body_of("project", CREATE_SCHEMA)
    _reject_is_domain(body)
    sess = db.session()
    parent = _parent(sess, body.get("parent_id"), body.get("domain_id"))
    domain_id = body.get("domain_id") or (
        parent.domain_id if parent else body.get("parent_id") or models.DEFAULT_DOMAIN_ID
    )
    policy.enforce("identity:create_project", {"domain_id": domain_id})
    common.find(sess, models.Domain, "domain", domain_id)
    if parent is not None and parent.domain_id != domain_id:
        raise errors.BadRequest(
            f"Invalid input for field 'project.parent_id': the parent project {parent.id} is in "
            f"domain {parent.domain_id}, not {domain_id}"
        )
    project = models.Project(
        name=body["name"],
        domain_id=domain_id,
        parent_id=parent.id if parent else None,
        description=body.get("description"),
        enabled=body.get("enabled", True),
        tags=list(body.get("tags", [])),
    )
    sess.add(project)
    db.commit(_conflict(project.name, domain_id))
    return common.respond("project", render.project(project), 201)


def _tag_filter(projects: list[models.Project]) -> list[models.Project]:
    """Keystone's ``tags``, ``tags-any``, ``not-tags``, ``not-tags-any`` (comma separated)."""

    def wanted(name: str) -> set[str] | None:
        value = request.args.get(name)
        return {t for t in value.split(",") if t} if value is not None else None

    all_of, any_of = wanted("tags"), wanted("tags-any")
    not_all, not_any = wanted("not-tags"), wanted("not-tags-any")
    result = []
    for project in projects:
        tags = set(project.tags or [])
        if all_of is not None and not all_of <= tags:
            continue
        if any_of is not None and not any_of & tags:
            continue
        if not_all is not None and not_all <= tags:
            continue
        if not_any is not None and not_any & tags:
            continue
        result.append(project)
    return result


@bp.get("/projects")
def list_projects() -> Response:
    policy.enforce("identity:list_projects", {"domain_id": request.args.get("domain_id")})
    if common.query_bool("is_domain"):
        return common.listing("projects", [], "projects")
    stmt = common.filtered(
        select(models.Project).order_by(models.Project.name),
        {
            "name": models.Project.name,
            "domain_id": models.Project.domain_id,
            "enabled": models.Project.enabled,
        },
    )
    parent_id = request.args.get("parent_id")
    if parent_id is not None:
        # A top-level project's parent is its domain.
        stmt = stmt.where(
            or_(
                models.Project.parent_id == parent_id,
                models.Project.parent_id.is_(None) & (models.Project.domain_id == parent_id),
            )
        )
    found = _tag_filter(list(db.session().scalars(stmt)))
    return common.listing("projects", [render.project(p) for p in found], "projects")


@bp.get("/projects/<project_id>")
def get_project(project_id: str) -> Response:
    project = common.find(db.session(), models.Project, "project", project_id)
    policy.enforce("identity:get_project", _target(project))
    return common.respond("project", render.project(project))


@bp.patch("/projects/<project_id>")
def update_project(project_id: str) -> Response:
    sess = db.session()
    project = common.find(sess, models.Project, "project", project_id)
    policy.enforce("identity:update_project", _target(project))
    changes = common.body_of("project", UPDATE_SCHEMA)
    common.reject_id_change(changes, "project", project.id)
    common.reject_change(changes, "project", "domain_id", project.domain_id)
    common.reject_change(changes, "project", "parent_id", project.parent_id or project.domain_id)
    _reject_is_domain(changes)
    for field in ("name", "description", "enabled"):
        if field in changes:
            setattr(project, field, changes[field])
    if "tags" in changes:
        project.tags = list(changes["tags"])
    if changes.get("enabled") is False:
        tokens.revoke_project(sess, project.id)
    db.commit(_conflict(project.name, project.domain_id))
    return common.respond("project", render.project(project))


@bp.delete("/projects/<project_id>")
def delete_project(project_id: str) -> Response:
    sess = db.session()
    project = common.find(sess, models.Project, "project", project_id)
    policy.enforce("identity:delete_project", _target(project))
    child = sess.scalar(
        select(models.Project.id).where(models.Project.parent_id == project.id).limit(1)
    )
    if child is not None:
        raise errors.Forbidden(
            f"Cannot delete the project {project.id} since it is not a leaf in the hierarchy: "
            "delete its child projects first."
        )
    sess.execute(
        delete(models.RoleAssignment).where(
            models.RoleAssignment.target_type == "project",
            models.RoleAssignment.target_id == project.id,
        )
    )
    tokens.revoke_project(sess, project.id)
    sess.delete(project)
    db.commit()
    return no_content()
