"""``/v2/images/{id}/members``: share an image with other projects.

Only ``shared`` images have members (403 otherwise). The image's owner adds and removes members
(``pending`` when added); only the member project itself accepts or rejects (``PUT`` with
``{"status": ...}``: the owner gets 403). The owner lists every member; a member sees only its own
membership. An accepted image appears in the member's image list; a pending or rejected one only
with ``?member_status=pending|rejected|all``, but can be fetched by id either way (Glance).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response
from sqlalchemy import func, select

from control.common import db, errors, policy, validation
from control.common.app import no_content
from control.image import models, render
from control.image.api import common

bp = Blueprint("image_members", __name__, url_prefix="/v2")

CREATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["member"],
    "properties": {"member": {"type": "string", "minLength": 1, "maxLength": 255}},
}
UPDATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"type": "string", "enum": list(models.MEMBER_STATUSES)}},
}


def _member_target(image: models.Image, member_id: str) -> dict[str, Any]:
    return {
        "project_id": image.owner,
        "owner": image.owner,
        "member_id": member_id,
        "visibility": image.visibility,
        "image_id": image.id,
    }


def _not_member(image_id: str, member_id: str) -> errors.NotFound:
    return errors.NotFound(f"{member_id} is not a member of image {image_id}.")


def _find_member(image: models.Image, member_id: str) -> models.ImageMember:
    """The membership ``member_id`` of ``image``, if the caller may see it (404 otherwise)."""
    found = db.session().get(models.ImageMember, (image.id, member_id))
    project = common.project_id()
    if found is None or not (
        common.is_admin() or image.owner == project or found.member == project
    ):
        raise _not_member(image.id, member_id)
    return found


@bp.post("/images/<image_id>/members")
def create_member(image_id: str) -> Response:
    image, member = common.find_image(image_id)
    body = validation.validated_body(CREATE_SCHEMA)
    member_id = body["member"].strip()
    policy.enforce("add_member", _member_target(image, member_id))
    if image.visibility != "shared":
        raise errors.Forbidden(
            f"Only shared images have members: image {image_id} is {image.visibility}."
        )
    sess = db.session()
    if sess.get(models.ImageMember, (image.id, member_id)) is not None:
        raise errors.Conflict(f"Member {member_id} is duplicated for image {image_id}.")
    limit = common.settings().max_members
    count = sess.scalar(
        select(func.count())
        .select_from(models.ImageMember)
        .where(models.ImageMember.image_id == image.id)
    )
    if (count or 0) >= limit:
        raise errors.PayloadTooLarge(f"An image may have at most {limit} members.")
    created = models.ImageMember(image_id=image.id, member=member_id, status="pending")
    sess.add(created)
    db.commit(f"Member {member_id} is duplicated for image {image_id}.")
    return common.respond(render.member(created))


@bp.get("/images/<image_id>/members")
def list_members(image_id: str) -> Response:
    image, member = common.find_image(image_id)
    policy.enforce(
        "get_members", _member_target(image, member.member if member is not None else "")
    )
    stmt = select(models.ImageMember).where(models.ImageMember.image_id == image.id)
    if not (common.is_admin() or image.owner == common.project_id()):
        stmt = stmt.where(models.ImageMember.member == (common.project_id() or ""))
    members = db.session().scalars(stmt.order_by(models.ImageMember.created_at))
    return common.respond(
        {"members": [render.member(m) for m in members], "schema": render.MEMBERS_SCHEMA}
    )


@bp.get("/images/<image_id>/members/<member_id>")
def show_member(image_id: str, member_id: str) -> Response:
    image, _ = common.find_image(image_id)
    found = _find_member(image, member_id)
    policy.enforce("get_member", _member_target(image, found.member))
    return common.respond(render.member(found))


@bp.put("/images/<image_id>/members/<member_id>")
def update_member(image_id: str, member_id: str) -> Response:
    image, _ = common.find_image(image_id)
    found = _find_member(image, member_id)
    body = validation.validated_body(UPDATE_SCHEMA)
    policy.enforce("modify_member", _member_target(image, found.member))
    if found.status != body["status"]:
        found.status = body["status"]
        found.updated_at = db.utcnow()
        db.commit()
    return common.respond(render.member(found))


@bp.delete("/images/<image_id>/members/<member_id>")
def delete_member(image_id: str, member_id: str) -> Response:
    image, _ = common.find_image(image_id)
    found = _find_member(image, member_id)
    policy.enforce("delete_member", _member_target(image, found.member))
    db.session().delete(found)
    db.commit()
    return no_content()
