"""Volume types: ``/v3/{project_id}/types`` (list, show; create, update, delete by admins) and
``types/{id}/extra_specs``. The ``__DEFAULT__`` type is made by the first migration and used when a
volume names none (``[volume] default_volume_type``). The extra spec ``volume_backend_name``
selects the agents whose reported ``backend_name`` matches (:mod:`control.volume.scheduler`).
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, Response, request
from sqlalchemy import select

from control.common import db, errors, validation
from control.volume import models, render
from control.volume.api import common
from control.volume.api.common import enforce, respond

bp: Blueprint = common.project_blueprint("volume_types")

_SPECS = {
    "type": "object",
    "additionalProperties": {"type": "string", "maxLength": 255},
    "propertyNames": {"minLength": 1, "maxLength": 255},
}
CREATE = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 255},
        "description": {"type": ["string", "null"], "maxLength": 255},
        "os-volume-type-access:is_public": {"type": ["boolean", "string"]},
        "is_public": {"type": ["boolean", "string"]},
        "extra_specs": _SPECS,
    },
    "required": ["name"],
}
UPDATE = {
    "type": "object",
    "properties": {
        "name": {"type": ["string", "null"], "minLength": 1, "maxLength": 255},
        "description": {"type": ["string", "null"], "maxLength": 255},
        "is_public": {"type": ["boolean", "string"]},
    },
}


def _show_specs() -> bool:
    return common.is_admin()


def _find(type_id: str) -> models.VolumeType:
    found = db.session().get(models.VolumeType, type_id)
    if found is None:
        found = (
            db.session()
            .scalars(select(models.VolumeType).where(models.VolumeType.name == type_id))
            .first()
        )
    if found is None or not (found.is_public or common.is_admin()):
        raise errors.NotFound(f"Volume type {type_id} could not be found.")
    return found


@bp.get("/types")
def index() -> Response:
    enforce("volume_extension:type_get_all")
    query = select(models.VolumeType).order_by(models.VolumeType.created_at, models.VolumeType.id)
    if not common.is_admin():
        query = query.where(models.VolumeType.is_public.is_(True))
    name = request.args.get("name")
    if name:
        query = query.where(models.VolumeType.name == name)
    types = db.session().scalars(query).all()
    return respond({"volume_types": [render.volume_type(t, _show_specs()) for t in types]})


@bp.get("/types/default")
def show_default() -> Response:
    enforce("volume_extension:type_get")
    vtype = common.find_type(common.settings().default_volume_type)
    return respond({"volume_type": render.volume_type(vtype, _show_specs())})


@bp.get("/types/<type_id>")
def show(type_id: str) -> Response:
    enforce("volume_extension:type_get")
    return respond({"volume_type": render.volume_type(_find(type_id), _show_specs())})


@bp.post("/types")
def create() -> Response:
    body = common.body_of("volume_type", CREATE)
    enforce("volume_extension:types_manage")
    public = body.get("os-volume-type-access:is_public", body.get("is_public", True))
    vtype = models.VolumeType(
        id=str(uuid.uuid4()),
        name=body["name"].strip(),
        description=body.get("description"),
        is_public=common.parse_bool(public, "is_public"),
        extra_specs=dict(body.get("extra_specs") or {}),
    )
    db.session().add(vtype)
    db.commit(f"Volume Type {vtype.name} already exists.")
    return respond({"volume_type": render.volume_type(vtype)})


@bp.put("/types/<type_id>")
def update(type_id: str) -> Response:
    body = common.body_of("volume_type", UPDATE)
    enforce("volume_extension:types_manage")
    vtype = _find(type_id)
    if body.get("name"):
        if vtype.name == models.DEFAULT_TYPE_NAME:
            raise errors.BadRequest("The default volume type cannot be renamed.")
        vtype.name = body["name"].strip()
    if "description" in body:
        vtype.description = body["description"]
    if "is_public" in body:
        vtype.is_public = common.parse_bool(body["is_public"], "is_public")
    vtype.touch()
    db.commit(f"Volume Type {vtype.name} already exists.")
    return respond({"volume_type": render.volume_type(vtype)})


@bp.delete("/types/<type_id>")
def delete(type_id: str) -> Response:
    enforce("volume_extension:types_manage")
    vtype = _find(type_id)
    if vtype.name in (models.DEFAULT_TYPE_NAME, common.settings().default_volume_type):
        raise errors.BadRequest(f"Default volume type {vtype.name} can not be deleted.")
    sess = db.session()
    in_use = sess.scalar(
        select(models.Volume.id).where(models.Volume.volume_type_id == vtype.id).limit(1)
    )
    if in_use:
        raise errors.BadRequest(
            f"Target volume type {vtype.name} is still in use by volume {in_use}."
        )
    sess.delete(vtype)
    db.commit()
    return Response(status=202)


# -- extra specs ---------------------------------------------------------------------------------


def _specs_response(vtype: models.VolumeType) -> Response:
    return respond({"extra_specs": dict(vtype.extra_specs or {})})


@bp.get("/types/<type_id>/extra_specs")
def specs_index(type_id: str) -> Response:
    enforce("volume_extension:types_extra_specs:index")
    return _specs_response(_find(type_id))


@bp.post("/types/<type_id>/extra_specs")
def specs_create(type_id: str) -> Response:
    enforce("volume_extension:types_extra_specs:manage")
    values = common.body_of("extra_specs", _SPECS)
    vtype = _find(type_id)
    vtype.extra_specs = {**(vtype.extra_specs or {}), **values}
    vtype.touch()
    db.commit()
    return respond({"extra_specs": values})


@bp.get("/types/<type_id>/extra_specs/<key>")
def specs_show(type_id: str, key: str) -> Response:
    enforce("volume_extension:types_extra_specs:index")
    specs = dict(_find(type_id).extra_specs or {})
    if key not in specs:
        raise errors.NotFound(f"Volume Type {type_id} has no extra specs with key {key}.")
    return respond({key: specs[key]})


@bp.put("/types/<type_id>/extra_specs/<key>")
def specs_set(type_id: str, key: str) -> Response:
    enforce("volume_extension:types_extra_specs:manage")
    body: Any = validation.json_body()
    if not isinstance(body, dict) or list(body) != [key] or not isinstance(body[key], str):
        raise errors.BadRequest(
            f"Request body and URI mismatch: the body must be {{{key!r}: <string>}}."
        )
    vtype = _find(type_id)
    vtype.extra_specs = {**(vtype.extra_specs or {}), key: body[key]}
    vtype.touch()
    db.commit()
    return respond({key: body[key]})


@bp.delete("/types/<type_id>/extra_specs/<key>")
def specs_delete(type_id: str, key: str) -> Response:
    enforce("volume_extension:types_extra_specs:manage")
    vtype = _find(type_id)
    specs = dict(vtype.extra_specs or {})
    if key not in specs:
        raise errors.NotFound(f"Volume Type {type_id} has no extra specs with key {key}.")
    del specs[key]
    vtype.extra_specs = specs
    vtype.touch()
    db.commit()
    return Response(status=202)
