"""``/v3/domains``: create, list, show, update and delete domains.

A domain is deleted only once disabled (403 otherwise, as Keystone); deleting it deletes its
projects and users with their role assignments, and revokes their tokens. The ``default`` domain
can be neither disabled nor deleted: the bootstrap admin lives in it.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response
from sqlalchemy import delete, or_, select

from control.common import db, errors, policy, validation
from control.common.app import no_content
from control.identity import models, render, tokens
from control.identity.api import common

bp = Blueprint("identity_domains", __name__, url_prefix="/v3")

_PROPERTIES: dict[str, Any] = {
    "name": common.NAME,
    "description": validation.DESCRIPTION,
    "enabled": validation.BOOLEAN,
    "tags": common.TAGS,
    "options": common.OPTIONS,
}
CREATE_SCHEMA = common.wrapped("domain", _PROPERTIES, required=["name"])
UPDATE_SCHEMA = common.wrapped("domain", _PROPERTIES, update=True)


def _conflict(name: str) -> str:
    return f"A domain named {name!r} already exists."


def _reject_tags(body: dict[str, Any]) -> None:
    if body.get("tags"):
        raise errors.BadRequest(
            "Invalid input for field 'domain.tags': domains carry no tags in Cirrus (projects do)"
        )


@bp.post("/domains")
def create_domain() -> Response:
    policy.enforce("identity:create_domain")
    body = common.body_of("domain", CREATE_SCHEMA)
    _reject_tags(body)
    domain = models.Domain(
        name=body["name"],
        description=body.get("description"),
        enabled=body.get("enabled", True),
    )
    sess = db.session()
    sess.add(domain)
    db.commit(_conflict(body["name"]))
    return common.respond("domain", render.domain(domain), 201)


@bp.get("/domains")
def list_domains() -> Response:
    policy.enforce("identity:list_domains")
    stmt = common.filtered(
        select(models.Domain).order_by(models.Domain.name),
        {"name": models.Domain.name, "enabled": models.Domain.enabled},
    )
    found = db.session().scalars(stmt).all()
    return common.listing("domains", [render.domain(d) for d in found], "domains")


@bp.get("/domains/<domain_id>")
def get_domain(domain_id: str) -> Response:
    domain = common.find(db.session(), models.Domain, "domain", domain_id)
    policy.enforce("identity:get_domain", {"domain_id": domain.id})
    return common.respond("domain", render.domain(domain))


@bp.patch("/domains/<domain_id>")
def update_domain(domain_id: str) -> Response:
    sess = db.session()
    domain = common.find(sess, models.Domain, "domain", domain_id)
    policy.enforce("identity:update_domain", {"domain_id": domain.id})
    changes = common.body_of("domain", UPDATE_SCHEMA)
    common.reject_id_change(changes, "domain", domain.id)
    _reject_tags(changes)
    if changes.get("enabled") is False and domain.id == models.DEFAULT_DOMAIN_ID:
        raise errors.Forbidden(
            "The default domain cannot be disabled: its users, the admin included, "
            "could no longer authenticate."
        )
    for field in ("name", "description", "enabled"):
        if field in changes:
            setattr(domain, field, changes[field])
    db.commit(_conflict(domain.name))
    return common.respond("domain", render.domain(domain))


@bp.delete("/domains/<domain_id>")
def delete_domain(domain_id: str) -> Response:
    sess = db.session()
    domain = common.find(sess, models.Domain, "domain", domain_id)
    policy.enforce("identity:delete_domain", {"domain_id": domain.id})
    if domain.id == models.DEFAULT_DOMAIN_ID:
        raise errors.Forbidden(
            "The default domain cannot be deleted: it holds the bootstrap admin and every "
            "user created without a domain."
        )
    if domain.enabled:
        raise errors.Forbidden("Cannot delete a domain that is enabled, please disable it first.")
    project_ids = list(
        sess.scalars(select(models.Project.id).where(models.Project.domain_id == domain.id))
    )
    user_ids = list(sess.scalars(select(models.User.id).where(models.User.domain_id == domain.id)))
    sess.execute(
        delete(models.RoleAssignment).where(
            or_(
                models.RoleAssignment.user_id.in_(user_ids),
                (models.RoleAssignment.target_type == "project")
                & models.RoleAssignment.target_id.in_(project_ids),
                (models.RoleAssignment.target_type == "domain")
                & (models.RoleAssignment.target_id == domain.id),
            )
        )
    )
    for project_id in project_ids:
        tokens.revoke_project(sess, project_id)
    for user_id in user_ids:
        tokens.revoke_user(sess, user_id)
    sess.execute(delete(models.Project).where(models.Project.domain_id == domain.id))
    sess.execute(delete(models.User).where(models.User.domain_id == domain.id))
    sess.delete(domain)
    db.commit()
    return no_content()
