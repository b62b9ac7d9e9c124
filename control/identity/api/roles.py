"""``/v3/roles``: create, list, show, update and delete roles; role implications.

Roles are global (domain-specific roles are not supported). A token carries its roles' implied
roles too, computed when it is validated, so deleting a role or an implication takes effect on
the next request of every token. Deleting a role removes its assignments and implications.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import delete, or_, select

from control.common import db, errors, policy, validation
from control.common.app import no_content
from control.identity import models, render, tokens
from control.identity.api import common

bp = Blueprint("identity_roles", __name__, url_prefix="/v3")

_PROPERTIES: dict[str, Any] = {
    "name": common.NAME,
    "description": validation.DESCRIPTION,
    "domain_id": validation.NULLABLE_ID,
    "options": common.OPTIONS,
}
CREATE_SCHEMA = common.wrapped("role", _PROPERTIES, required=["name"])
UPDATE_SCHEMA = common.wrapped("role", _PROPERTIES, update=True)

# Keystone's ``[assignment] prohibited_implied_role``: nothing may imply admin.
PROHIBITED_IMPLIED_ROLES = ("admin",)


def _conflict(name: str) -> str:
    return f"A role named {name!r} already exists."


def _reject_domain(body: dict[str, Any]) -> None:
    if body.get("domain_id") is not None:
        raise errors.BadRequest(
            "Invalid input for field 'role.domain_id': domain-specific roles are not supported"
        )


@bp.post("/roles")
def create_role() -> Response:
    policy.enforce("identity:create_role")
    body = common.body_of("role", CREATE_SCHEMA)
    _reject_domain(body)
    role = models.Role(name=body["name"], description=body.get("description"))
    db.session().add(role)
    db.commit(_conflict(role.name))
    return common.respond("role", render.role(role), 201)


@bp.get("/roles")
def list_roles() -> Response:
    policy.enforce("identity:list_roles")
    if request.args.get("domain_id"):
        # Only domain-specific roles have a domain; there are none.
        return common.listing("roles", [], "roles")
    stmt = common.filtered(
        select(models.Role).order_by(models.Role.name), {"name": models.Role.name}
    )
    found = db.session().scalars(stmt).all()
    return common.listing("roles", [render.role(r) for r in found], "roles")


@bp.get("/roles/<role_id>")
def get_role(role_id: str) -> Response:
    role = common.find(db.session(), models.Role, "role", role_id)
    policy.enforce("identity:get_role", {"role_id": role.id})
    return common.respond("role", render.role(role))


@bp.patch("/roles/<role_id>")
def update_role(role_id: str) -> Response:
    role = common.find(db.session(), models.Role, "role", role_id)
    policy.enforce("identity:update_role", {"role_id": role.id})
    changes = common.body_of("role", UPDATE_SCHEMA)
    common.reject_id_change(changes, "role", role.id)
    _reject_domain(changes)
    for field in ("name", "description"):
        if field in changes:
            setattr(role, field, changes[field])
    db.commit(_conflict(role.name))
    return common.respond("role", render.role(role))


@bp.delete("/roles/<role_id>")
def delete_role(role_id: str) -> Response:
    sess = db.session()
    role = common.find(sess, models.Role, "role", role_id)
    policy.enforce("identity:delete_role", {"role_id": role.id})
    sess.execute(delete(models.RoleAssignment).where(models.RoleAssignment.role_id == role.id))
    sess.execute(
        delete(models.ImpliedRole).where(
            or_(
                models.ImpliedRole.prior_role_id == role.id,
                models.ImpliedRole.implied_role_id == role.id,
            )
        )
    )
    sess.delete(role)
    db.commit()
    return no_content()


# Implied roles.


def _role_ref(role: models.Role) -> dict[str, Any]:
    return {"id": role.id, "name": role.name, "links": render.link(f"roles/{role.id}")}


def _inference(prior: models.Role, implied: list[models.Role]) -> dict[str, Any]:
    return {"prior_role": _role_ref(prior), "implies": [_role_ref(r) for r in implied]}


def _implied_of(prior: models.Role) -> list[models.Role]:
    return list(
        db.session().scalars(
            select(models.Role)
            .join(models.ImpliedRole, models.ImpliedRole.implied_role_id == models.Role.id)
            .where(models.ImpliedRole.prior_role_id == prior.id)
            .order_by(models.Role.name)
        )
    )


@bp.get("/roles/<prior_role_id>/implies")
def list_implied_roles(prior_role_id: str) -> Response:
    prior = common.find(db.session(), models.Role, "role", prior_role_id)
    policy.enforce("identity:list_implied_roles", {"role_id": prior.id})
    return jsonify(
        {
            "role_inference": _inference(prior, _implied_of(prior)),
            "links": render.link(f"roles/{prior.id}/implies"),
        }
    )


def _pair(prior_role_id: str, implied_role_id: str) -> tuple[models.Role, models.Role]:
    sess = db.session()
    prior = common.find(sess, models.Role, "role", prior_role_id)
    implied = common.find(sess, models.Role, "role", implied_role_id)
    return prior, implied


def _pair_body(prior: models.Role, implied: models.Role, status: int) -> Response:
    response = jsonify(
        {
            "role_inference": {"prior_role": _role_ref(prior), "implies": _role_ref(implied)},
            "links": render.link(f"roles/{prior.id}/implies/{implied.id}"),
        }
    )
    response.status_code = status
    return response


@bp.get("/roles/<prior_role_id>/implies/<implied_role_id>")
def get_implied_role(prior_role_id: str, implied_role_id: str) -> Response:
    """GET answers the implication (200); HEAD only checks it (204), as Keystone."""
    prior, implied = _pair(prior_role_id, implied_role_id)
    head = request.method == "HEAD"
    rule = "identity:check_implied_role" if head else "identity:get_implied_role"
    policy.enforce(rule, {"role_id": prior.id})
    if db.session().get(models.ImpliedRole, (prior.id, implied.id)) is None:
        raise errors.NotFound(f"Role {prior.id} does not imply role {implied.id}.")
    return no_content() if head else _pair_body(prior, implied, 200)


@bp.put("/roles/<prior_role_id>/implies/<implied_role_id>")
def create_implied_role(prior_role_id: str, implied_role_id: str) -> Response:
    prior, implied = _pair(prior_role_id, implied_role_id)
    policy.enforce("identity:create_implied_role", {"role_id": prior.id})
    sess = db.session()
    if implied.name in PROHIBITED_IMPLIED_ROLES:
        raise errors.BadRequest(f"The role {implied.name} may not be implied by another role.")
    if prior.id in tokens.implied_closure(sess, {implied.id}):
        raise errors.BadRequest(
            f"Role {prior.name} cannot imply {implied.name}: {implied.name} already implies "
            f"{prior.name}, and implications may not form a cycle."
        )
    if sess.get(models.ImpliedRole, (prior.id, implied.id)) is None:
        sess.add(models.ImpliedRole(prior_role_id=prior.id, implied_role_id=implied.id))
        db.commit()
    return _pair_body(prior, implied, 201)


@bp.delete("/roles/<prior_role_id>/implies/<implied_role_id>")
def delete_implied_role(prior_role_id: str, implied_role_id: str) -> Response:
    prior, implied = _pair(prior_role_id, implied_role_id)
    policy.enforce("identity:delete_implied_role", {"role_id": prior.id})
    sess = db.session()
    row = sess.get(models.ImpliedRole, (prior.id, implied.id))
    if row is None:
        raise errors.NotFound(f"Role {prior.id} does not imply role {implied.id}.")
    sess.delete(row)
    db.commit()
    return no_content()


@bp.get("/role_inferences")
def list_role_inference_rules() -> Response:
    policy.enforce("identity:list_role_inference_rules")
    sess = db.session()
    roles = {r.id: r for r in sess.scalars(select(models.Role))}
    implies: dict[str, list[models.Role]] = {}
    for row in sess.scalars(select(models.ImpliedRole)):
        implies.setdefault(row.prior_role_id, []).append(roles[row.implied_role_id])
    inferences = [
        _inference(roles[prior_id], sorted(implied, key=lambda r: r.name))
        for prior_id, implied in sorted(implies.items(), key=lambda item: roles[item[0]].name)
    ]
    return jsonify(
        {"role_inferences": inferences, "links": render.collection_links("role_inferences")}
    )
