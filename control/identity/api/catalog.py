"""The service catalog: ``/v3/regions``, ``/v3/services`` and ``/v3/endpoints``.

An endpoint names an existing service (400 otherwise) and an interface (public, internal or
admin); a region it names is created when missing, as Keystone does. Deleting a service deletes
its endpoints; a region still used by endpoints or child regions is not deleted (409).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from control.common import db, errors, policy, validation
from control.common.app import no_content
from control.identity import models, render
from control.identity.api import common

bp = Blueprint("identity_catalog", __name__, url_prefix="/v3")

INTERFACES = ["public", "internal", "admin"]
REGION_ID = {"type": "string", "minLength": 1, "maxLength": 255}
NULLABLE_REGION_ID = {"type": ["string", "null"], "minLength": 1, "maxLength": 255}
URL = {"type": "string", "minLength": 1, "maxLength": 2048, "pattern": r"^[a-zA-Z0-9+.-]+:.+"}

# Regions.

_REGION_PROPERTIES: dict[str, Any] = {
    "id": REGION_ID,
    "description": validation.DESCRIPTION,
    "parent_region_id": NULLABLE_REGION_ID,
}
REGION_CREATE_SCHEMA = common.wrapped("region", _REGION_PROPERTIES)
REGION_UPDATE_SCHEMA = common.wrapped("region", _REGION_PROPERTIES, update=True)


def _check_parent_region(sess: Session, region_id: str, parent_id: str | None) -> None:
    """The parent exists, and is neither the region itself nor one of its descendants."""
    seen = {region_id}
    current = parent_id
    while current is not None:
        if current in seen:
            raise errors.BadRequest(
                f"Invalid input for field 'region.parent_region_id': making {parent_id} the "
                f"parent of {region_id} would form a cycle"
            )
        seen.add(current)
        current = common.find(sess, models.Region, "region", current).parent_region_id


def _create_region(region_id: str, body: dict[str, Any]) -> Response:
    sess = db.session()
    _check_parent_region(sess, region_id, body.get("parent_region_id"))
    if sess.get(models.Region, region_id) is not None:
        raise errors.Conflict(f"A region with id {region_id!r} already exists.")
    region = models.Region(
        id=region_id,
        description=body.get("description"),
        parent_region_id=body.get("parent_region_id"),
    )
    sess.add(region)
    db.commit(f"A region with id {region_id!r} already exists.")
    return common.respond("region", render.region(region), 201)


@bp.post("/regions")
def create_region() -> Response:
    policy.enforce("identity:create_region")
    body = common.body_of("region", REGION_CREATE_SCHEMA)
    return _create_region(body.get("id") or models.new_id(), body)


@bp.put("/regions/<region_id>")
def create_region_with_id(region_id: str) -> Response:
    policy.enforce("identity:create_region", {"region_id": region_id})
    body = common.body_of("region", REGION_CREATE_SCHEMA)
    if body.get("id", region_id) != region_id:
        raise errors.BadRequest(
            "Invalid input for field 'region.id': it must match the id in the path"
        )
    return _create_region(region_id, body)


@bp.get("/regions")
def list_regions() -> Response:
    policy.enforce("identity:list_regions")
    stmt = common.filtered(
        select(models.Region).order_by(models.Region.id),
        {"parent_region_id": models.Region.parent_region_id},
    )
    found = db.session().scalars(stmt).all()
    return common.listing("regions", [render.region(r) for r in found], "regions")


@bp.get("/regions/<region_id>")
def get_region(region_id: str) -> Response:
    region = common.find(db.session(), models.Region, "region", region_id)
    policy.enforce("identity:get_region", {"region_id": region.id})
    return common.respond("region", render.region(region))


@bp.patch("/regions/<region_id>")
def update_region(region_id: str) -> Response:
    sess = db.session()
    region = common.find(sess, models.Region, "region", region_id)
    policy.enforce("identity:update_region", {"region_id": region.id})
    changes = common.body_of("region", REGION_UPDATE_SCHEMA)
    common.reject_id_change(changes, "region", region.id)
    if "parent_region_id" in changes:
        _check_parent_region(sess, region.id, changes["parent_region_id"])
        region.parent_region_id = changes["parent_region_id"]
    if "description" in changes:
        region.description = changes["description"]
    db.commit()
    return common.respond("region", render.region(region))


@bp.delete("/regions/<region_id>")
def delete_region(region_id: str) -> Response:
    sess = db.session()
    region = common.find(sess, models.Region, "region", region_id)
    policy.enforce("identity:delete_region", {"region_id": region.id})
    children = sess.scalars(
        select(models.Region.id).where(models.Region.parent_region_id == region.id)
    ).all()
    if children:
        raise errors.Conflict(
            f"Region {region.id} is the parent of {', '.join(children)}: delete or move them first."
        )
    used = sess.scalar(
        select(func.count())
        .select_from(models.Endpoint)
        .where(models.Endpoint.region_id == region.id)
    )
    if used:
        raise errors.Conflict(
            f"Region {region.id} is used by {used} endpoint(s): delete them or move them to "
            "another region first."
        )
    sess.delete(region)
    db.commit()
    return no_content()


# Services.

_SERVICE_PROPERTIES: dict[str, Any] = {
    "type": {"type": "string", "minLength": 1, "maxLength": 255},
    "name": {"type": ["string", "null"], "maxLength": 255},
    "description": validation.DESCRIPTION,
    "enabled": validation.BOOLEAN,
}
SERVICE_CREATE_SCHEMA = common.wrapped("service", _SERVICE_PROPERTIES, required=["type"])
SERVICE_UPDATE_SCHEMA = common.wrapped("service", _SERVICE_PROPERTIES, update=True)
_SERVICE_FIELDS = ("type", "name", "description", "enabled")


@bp.post("/services")
def create_service() -> Response:
    policy.enforce("identity:create_service")
    body = common.body_of("service", SERVICE_CREATE_SCHEMA)
    service = models.Service(
        type=body["type"],
        name=body.get("name"),
        description=body.get("description"),
        enabled=body.get("enabled", True),
    )
    db.session().add(service)
    db.commit()
    return common.respond("service", render.service(service), 201)


@bp.get("/services")
def list_services() -> Response:
    policy.enforce("identity:list_services")
    stmt = common.filtered(
        select(models.Service).order_by(models.Service.type, models.Service.id),
        {"type": models.Service.type, "name": models.Service.name},
    )
    found = db.session().scalars(stmt).all()
    return common.listing("services", [render.service(s) for s in found], "services")


@bp.get("/services/<service_id>")
def get_service(service_id: str) -> Response:
    service = common.find(db.session(), models.Service, "service", service_id)
    policy.enforce("identity:get_service", {"service_id": service.id})
    return common.respond("service", render.service(service))


@bp.patch("/services/<service_id>")
def update_service(service_id: str) -> Response:
    service = common.find(db.session(), models.Service, "service", service_id)
    policy.enforce("identity:update_service", {"service_id": service.id})
    changes = common.body_of("service", SERVICE_UPDATE_SCHEMA)
    common.reject_id_change(changes, "service", service.id)
    for field in _SERVICE_FIELDS:
        if field in changes:
            setattr(service, field, changes[field])
    db.commit()
    return common.respond("service", render.service(service))


@bp.delete("/services/<service_id>")
def delete_service(service_id: str) -> Response:
    sess = db.session()
    service = common.find(sess, models.Service, "service", service_id)
    policy.enforce("identity:delete_service", {"service_id": service.id})
    sess.execute(delete(models.Endpoint).where(models.Endpoint.service_id == service.id))
    sess.delete(service)
    db.commit()
    return no_content()


# Endpoints.

_ENDPOINT_PROPERTIES: dict[str, Any] = {
    "service_id": validation.ID,
    "interface": {"type": "string", "enum": INTERFACES},
    "url": URL,
    "region_id": NULLABLE_REGION_ID,
    "region": NULLABLE_REGION_ID,  # the v2 name clients still send
    "enabled": validation.BOOLEAN,
}
ENDPOINT_CREATE_SCHEMA = common.wrapped(
    "endpoint", _ENDPOINT_PROPERTIES, required=["service_id", "interface", "url"]
)
ENDPOINT_UPDATE_SCHEMA = common.wrapped("endpoint", _ENDPOINT_PROPERTIES, update=True)


def _check_service(sess: Session, service_id: str) -> None:
    if sess.get(models.Service, service_id) is None:
        raise errors.BadRequest(
            f"Invalid input for field 'endpoint.service_id': Could not find service: {service_id}."
        )


def _region_of(sess: Session, body: dict[str, Any]) -> str | None:
    """The endpoint's region from ``region_id`` (or legacy ``region``), created when missing."""
    region_id: str | None = body.get("region_id") or body.get("region")
    if region_id and sess.get(models.Region, region_id) is None:
        sess.add(models.Region(id=region_id, description=""))
    return region_id


@bp.post("/endpoints")
def create_endpoint() -> Response:
    policy.enforce("identity:create_endpoint")
    body = common.body_of("endpoint", ENDPOINT_CREATE_SCHEMA)
    sess = db.session()
    _check_service(sess, body["service_id"])
    endpoint = models.Endpoint(
        service_id=body["service_id"],
        interface=body["interface"],
        url=body["url"],
        region_id=_region_of(sess, body),
        enabled=body.get("enabled", True),
    )
    sess.add(endpoint)
    db.commit()
    return common.respond("endpoint", render.endpoint(endpoint), 201)


@bp.get("/endpoints")
def list_endpoints() -> Response:
    policy.enforce("identity:list_endpoints")
    stmt = common.filtered(
        select(models.Endpoint).order_by(models.Endpoint.service_id, models.Endpoint.interface),
        {
            "service_id": models.Endpoint.service_id,
            "interface": models.Endpoint.interface,
            "region_id": models.Endpoint.region_id,
            "region": models.Endpoint.region_id,
            "enabled": models.Endpoint.enabled,
        },
    )
    found = db.session().scalars(stmt).all()
    return common.listing("endpoints", [render.endpoint(e) for e in found], "endpoints")


@bp.get("/endpoints/<endpoint_id>")
def get_endpoint(endpoint_id: str) -> Response:
    endpoint = common.find(db.session(), models.Endpoint, "endpoint", endpoint_id)
    policy.enforce("identity:get_endpoint", {"endpoint_id": endpoint.id})
    return common.respond("endpoint", render.endpoint(endpoint))


@bp.patch("/endpoints/<endpoint_id>")
def update_endpoint(endpoint_id: str) -> Response:
    sess = db.session()
    endpoint = common.find(sess, models.Endpoint, "endpoint", endpoint_id)
    policy.enforce("identity:update_endpoint", {"endpoint_id": endpoint.id})
    changes = common.body_of("endpoint", ENDPOINT_UPDATE_SCHEMA)
    common.reject_id_change(changes, "endpoint", endpoint.id)
    if "service_id" in changes:
        _check_service(sess, changes["service_id"])
        endpoint.service_id = changes["service_id"]
    if "region_id" in changes or "region" in changes:
        endpoint.region_id = _region_of(sess, changes)
    for field in ("interface", "url", "enabled"):
        if field in changes:
            setattr(endpoint, field, changes[field])
    db.commit()
    return common.respond("endpoint", render.endpoint(endpoint))


@bp.delete("/endpoints/<endpoint_id>")
def delete_endpoint(endpoint_id: str) -> Response:
    sess = db.session()
    endpoint = common.find(sess, models.Endpoint, "endpoint", endpoint_id)
    policy.enforce("identity:delete_endpoint", {"endpoint_id": endpoint.id})
    sess.delete(endpoint)
    db.commit()
    return no_content()
