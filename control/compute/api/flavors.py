"""``/flavors``: create, list (``detail``), show, update the description, delete; extra specs;
flavor access for private flavors. Public ids are strings (``flavorid``), given or a new UUID."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, Response, request
from sqlalchemy import or_, select

from control.common import db, errors, policy, validation
from control.compute import models
from control.compute.api import common

bp = Blueprint("compute_flavors", __name__, url_prefix="/v2.1")

CREATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "flavor": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 255},
                "id": {"type": ["string", "integer", "null"], "maxLength": 255},
                "ram": {"type": ["integer", "string"], "pattern": "^[0-9]+$", "minimum": 1},
                "vcpus": {"type": ["integer", "string"], "pattern": "^[0-9]+$", "minimum": 1},
                "disk": {"type": ["integer", "string"], "pattern": "^[0-9]+$", "minimum": 0},
                "swap": {"type": ["integer", "string"], "pattern": "^[0-9]*$", "minimum": 0},
                "OS-FLV-EXT-DATA:ephemeral": {
                    "type": ["integer", "string"],
                    "pattern": "^[0-9]*$",
                    "minimum": 0,
                },
                "rxtx_factor": {"type": ["number", "string"], "minimum": 0},
                "os-flavor-access:is_public": {"type": "boolean"},
                "description": {"type": ["string", "null"], "maxLength": 65535},
            },
            "required": ["name", "ram", "vcpus", "disk"],
            "additionalProperties": False,
        }
    },
    "required": ["flavor"],
    "additionalProperties": False,
}

UPDATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "flavor": {
            "type": "object",
            "properties": {"description": {"type": ["string", "null"], "maxLength": 65535}},
            "required": ["description"],
            "additionalProperties": False,
        }
    },
    "required": ["flavor"],
}

EXTRA_SPECS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "extra_specs": {
            "type": "object",
            "patternProperties": {
                "^[a-zA-Z0-9-_:. ]{1,255}$": {"type": ["string", "number", "boolean"]}
            },
            "additionalProperties": False,
        }
    },
    "required": ["extra_specs"],
}

ACTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "addTenantAccess": {
            "type": "object",
            "properties": {"tenant": {"type": "string", "minLength": 1, "maxLength": 255}},
            "required": ["tenant"],
        },
        "removeTenantAccess": {
            "type": "object",
            "properties": {"tenant": {"type": "string", "minLength": 1, "maxLength": 255}},
            "required": ["tenant"],
        },
    },
    "minProperties": 1,
    "maxProperties": 1,
}


def render(flavor: models.Flavor, detail: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": flavor.flavorid,
        "name": flavor.name,
        "links": common.links("flavors", flavor.flavorid),
    }
    if detail:
        body.update(
            {
                "ram": flavor.memory_mb,
                "vcpus": flavor.vcpus,
                "disk": flavor.root_gb,
                "swap": flavor.swap or "",
                "OS-FLV-EXT-DATA:ephemeral": flavor.ephemeral_gb,
                "OS-FLV-DISABLED:disabled": flavor.disabled,
                "os-flavor-access:is_public": flavor.is_public,
                "rxtx_factor": flavor.rxtx_factor,
                "description": flavor.description,
                "extra_specs": {spec.key: spec.value for spec in flavor.extra_specs},
            }
        )
    return body


def can_use(flavor: models.Flavor) -> bool:
    if flavor.is_public or common.is_admin():
        return True
    project = common.project_id()
    return any(access.project_id == project for access in flavor.projects)


def find(flavor_id: str) -> models.Flavor:
    """The flavor with public id ``flavor_id`` the caller may see, else 404."""
    flavor = (
        db.session()
        .scalars(select(models.Flavor).where(models.Flavor.flavorid == str(flavor_id)))
        .first()
    )
    if flavor is None or not can_use(flavor):
        raise errors.NotFound(f"Flavor {flavor_id} could not be found.")
    return flavor


def _list(detail: bool) -> Response:
    query = select(models.Flavor)
    admin = common.is_admin()
    raw_public = request.args.get("is_public")
    if raw_public is None or not admin:
        # Nova: without is_public, public flavors (and, for a project, the private flavors it
        # has access to); only admins may ask for is_public=None/false.
        if admin and raw_public is None:
            query = query.where(models.Flavor.is_public.is_(True))
        else:
            accessible = select(models.FlavorProject.flavor_id).where(
                models.FlavorProject.project_id == common.project_id()
            )
            query = query.where(
                or_(models.Flavor.is_public.is_(True), models.Flavor.id.in_(accessible))
            )
    elif raw_public.strip().lower() != "none":
        wanted = raw_public.strip().lower() in ("1", "true", "yes", "t", "y", "on")
        query = query.where(models.Flavor.is_public.is_(wanted))
    min_ram = common.query_int("minRam")
    if min_ram is not None:
        query = query.where(models.Flavor.memory_mb >= min_ram)
    min_disk = common.query_int("minDisk")
    if min_disk is not None:
        query = query.where(models.Flavor.root_gb >= min_disk)
    sort_key = request.args.get("sort_key", "flavorid")
    sort_columns = {
        "flavorid": models.Flavor.flavorid,
        "id": models.Flavor.flavorid,
        "name": models.Flavor.name,
        "memory_mb": models.Flavor.memory_mb,
        "ram": models.Flavor.memory_mb,
        "vcpus": models.Flavor.vcpus,
        "root_gb": models.Flavor.root_gb,
        "disk": models.Flavor.root_gb,
        "created_at": models.Flavor.created_at,
    }
    if sort_key not in sort_columns:
        raise errors.BadRequest(f"Invalid sort_key {sort_key!r}.")
    column = sort_columns[sort_key]
    descending = request.args.get("sort_dir", "asc") == "desc"
    flavors = list(
        db.session().scalars(query.order_by(column.desc() if descending else column.asc()))
    )
    marker = request.args.get("marker")
    if marker:
        ids = [f.flavorid for f in flavors]
        if marker not in ids:
            raise errors.BadRequest(f"Marker {marker} could not be found.")
        flavors = flavors[ids.index(marker) + 1 :]
    limit = common.query_int("limit")
    if limit is not None:
        flavors = flavors[:limit]
    return common.respond({"flavors": [render(f, detail) for f in flavors]})


@bp.get("/flavors")
def index() -> Response:
    return _list(detail=False)


@bp.get("/flavors/detail")
def detail() -> Response:
    return _list(detail=True)


@bp.get("/flavors/<flavor_id>")
def show(flavor_id: str) -> Response:
    return common.respond({"flavor": render(find(flavor_id))})


def _int(value: Any, name: str) -> int:
    if value in (None, ""):
        return 0
    try:
        return int(value)
    except (TypeError, ValueError):
        raise errors.BadRequest(f"Invalid input for field '{name}': {value!r}") from None


@bp.post("/flavors")
def create() -> Response:
    policy.enforce("os_compute_api:os-flavor-manage:create")
    body = validation.validated_body(CREATE_SCHEMA)["flavor"]
    flavorid = body.get("id")
    flavorid = str(uuid.uuid4()) if flavorid in (None, "", "auto") else str(flavorid)
    ram = _int(body["ram"], "ram")
    vcpus = _int(body["vcpus"], "vcpus")
    if ram < 1 or vcpus < 1:
        raise errors.BadRequest("Invalid input: ram and vcpus must be at least 1.")
    try:
        rxtx = float(body.get("rxtx_factor", 1.0))
    except ValueError:
        raise errors.BadRequest("Invalid input for field 'rxtx_factor'.") from None
    flavor = models.Flavor(
        flavorid=flavorid,
        name=body["name"].strip(),
        memory_mb=ram,
        vcpus=vcpus,
        root_gb=_int(body["disk"], "disk"),
        swap=_int(body.get("swap"), "swap"),
        ephemeral_gb=_int(body.get("OS-FLV-EXT-DATA:ephemeral"), "OS-FLV-EXT-DATA:ephemeral"),
        rxtx_factor=rxtx,
        is_public=body.get("os-flavor-access:is_public", True),
        description=body.get("description"),
    )
    sess = db.session()
    sess.add(flavor)
    db.commit(f"Flavor with name {flavor.name} or ID {flavorid} already exists.")
    return common.respond({"flavor": render(flavor)})


@bp.put("/flavors/<flavor_id>")
def update(flavor_id: str) -> Response:
    policy.enforce("os_compute_api:os-flavor-manage:update")
    body = validation.validated_body(UPDATE_SCHEMA)["flavor"]
    flavor = find(flavor_id)
    flavor.description = body["description"]
    db.commit()
    return common.respond({"flavor": render(flavor)})


@bp.delete("/flavors/<flavor_id>")
def delete(flavor_id: str) -> Response:
    policy.enforce("os_compute_api:os-flavor-manage:delete")
    flavor = find(flavor_id)
    db.session().delete(flavor)
    db.commit()
    return Response(status=202)


# -- extra specs ---------------------------------------------------------------------------------


@bp.get("/flavors/<flavor_id>/os-extra_specs")
def extra_specs_index(flavor_id: str) -> Response:
    policy.enforce("os_compute_api:os-flavor-extra-specs:index")
    flavor = find(flavor_id)
    return common.respond({"extra_specs": {s.key: s.value for s in flavor.extra_specs}})


@bp.post("/flavors/<flavor_id>/os-extra_specs")
def extra_specs_create(flavor_id: str) -> Response:
    policy.enforce("os_compute_api:os-flavor-extra-specs:create")
    specs = validation.validated_body(EXTRA_SPECS_SCHEMA)["extra_specs"]
    flavor = find(flavor_id)
    existing = {s.key: s for s in flavor.extra_specs}
    for key, value in specs.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if key in existing:
            existing[key].value = text
        else:
            flavor.extra_specs.append(models.FlavorExtraSpec(key=key, value=text))
    db.commit()
    return common.respond({"extra_specs": {k: str(v) for k, v in specs.items()}})


@bp.get("/flavors/<flavor_id>/os-extra_specs/<key>")
def extra_spec_show(flavor_id: str, key: str) -> Response:
    policy.enforce("os_compute_api:os-flavor-extra-specs:index")
    flavor = find(flavor_id)
    for spec in flavor.extra_specs:
        if spec.key == key:
            return common.respond({key: spec.value})
    raise errors.NotFound(f"Flavor {flavor_id} has no extra specs with key {key}.")


@bp.put("/flavors/<flavor_id>/os-extra_specs/<key>")
def extra_spec_update(flavor_id: str, key: str) -> Response:
    policy.enforce("os_compute_api:os-flavor-extra-specs:update")
    body = validation.json_body()
    if not isinstance(body, dict) or list(body) != [key]:
        raise errors.BadRequest("The request body must hold exactly the key of the URL.")
    flavor = find(flavor_id)
    value = str(body[key])
    for spec in flavor.extra_specs:
        if spec.key == key:
            spec.value = value
            break
    else:
        flavor.extra_specs.append(models.FlavorExtraSpec(key=key, value=value))
    db.commit()
    return common.respond({key: value})


@bp.delete("/flavors/<flavor_id>/os-extra_specs/<key>")
def extra_spec_delete(flavor_id: str, key: str) -> Response:
    policy.enforce("os_compute_api:os-flavor-extra-specs:delete")
    flavor = find(flavor_id)
    for spec in list(flavor.extra_specs):
        if spec.key == key:
            flavor.extra_specs.remove(spec)
            db.commit()
            return Response(status=200)
    raise errors.NotFound(f"Flavor {flavor_id} has no extra specs with key {key}.")


# -- access --------------------------------------------------------------------------------------


def _access(flavor: models.Flavor) -> list[dict[str, str]]:
    return [{"flavor_id": flavor.flavorid, "tenant_id": a.project_id} for a in flavor.projects]


@bp.get("/flavors/<flavor_id>/os-flavor-access")
def access_index(flavor_id: str) -> Response:
    policy.enforce("os_compute_api:os-flavor-access")
    flavor = find(flavor_id)
    if flavor.is_public:
        raise errors.NotFound("Access list not available for public flavors.")
    return common.respond({"flavor_access": _access(flavor)})


@bp.post("/flavors/<flavor_id>/action")
def action(flavor_id: str) -> Response:
    body = validation.validated_body(ACTION_SCHEMA)
    flavor = find(flavor_id)
    if "addTenantAccess" in body:
        policy.enforce("os_compute_api:os-flavor-access:add_tenant_access")
        if flavor.is_public:
            raise errors.Conflict("Can not add access to a public flavor.")
        tenant = body["addTenantAccess"]["tenant"]
        if any(a.project_id == tenant for a in flavor.projects):
            raise errors.Conflict(
                f"Flavor access already exists for flavor {flavor_id} and project {tenant}."
            )
        flavor.projects.append(models.FlavorProject(project_id=tenant))
    else:
        policy.enforce("os_compute_api:os-flavor-access:remove_tenant_access")
        tenant = body["removeTenantAccess"]["tenant"]
        found = [a for a in flavor.projects if a.project_id == tenant]
        if not found:
            raise errors.NotFound(
                f"Flavor access not found for flavor {flavor_id} and project {tenant}."
            )
        flavor.projects.remove(found[0])
    db.commit()
    return common.respond({"flavor_access": _access(flavor)})
