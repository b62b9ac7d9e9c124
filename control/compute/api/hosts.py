"""Operators' views: ``os-services`` (list, disable with a reason, enable, up/down from
heartbeats), ``os-hypervisors`` (list, detail, show, statistics) and ``os-availability-zone``."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, request
from sqlalchemy import select

from control.common import db, errors, policy, validation
from control.compute import models, services
from control.compute.api import common

bp = Blueprint("compute_hosts", __name__, url_prefix="/v2.1")


def _time(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _service(row: models.Service) -> dict[str, Any]:
    up = services.is_up(row, common.settings().service_down_time)
    return {
        "id": row.id,
        "binary": row.binary,
        "host": row.host,
        "zone": row.availability_zone if row.binary == services.COMPUTE_BINARY else "internal",
        "status": "disabled" if row.disabled else "enabled",
        "state": "up" if up else "down",
        "updated_at": _time(row.last_seen_up),
        "disabled_reason": row.disabled_reason,
        "forced_down": row.forced_down,
    }


@bp.get("/os-services")
def services_index() -> Response:
    policy.enforce("os_compute_api:os-services:list")
    query = select(models.Service).order_by(models.Service.id)
    if request.args.get("host"):
        query = query.where(models.Service.host == request.args["host"])
    if request.args.get("binary"):
        query = query.where(models.Service.binary == request.args["binary"])
    return common.respond({"services": [_service(s) for s in db.session().scalars(query)]})


SERVICE_ACTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "host": {"type": "string"},
        "binary": {"type": "string"},
        "disabled_reason": {"type": ["string", "null"], "maxLength": 255},
    },
    "required": ["host", "binary"],
}


def _find_service(host: str, binary: str) -> models.Service:
    row = (
        db.session()
        .scalars(
            select(models.Service).where(
                models.Service.host == host, models.Service.binary == binary
            )
        )
        .first()
    )
    if row is None:
        raise errors.NotFound(f"Service {binary} on host {host} could not be found.")
    return row


@bp.put("/os-services/<action>")
def services_action(action: str) -> Response:
    """The 2.1 form: ``PUT /os-services/disable|disable-log-reason|enable``."""
    policy.enforce("os_compute_api:os-services:update")
    body = validation.validated_body(SERVICE_ACTION_SCHEMA)
    row = _find_service(body["host"], body["binary"])
    result: dict[str, Any] = {"host": row.host, "binary": row.binary}
    if action == "enable":
        row.disabled = False
        row.disabled_reason = None
        result["status"] = "enabled"
    elif action in ("disable", "disable-log-reason"):
        row.disabled = True
        row.disabled_reason = body.get("disabled_reason")
        result["status"] = "disabled"
        if action == "disable-log-reason":
            result["disabled_reason"] = row.disabled_reason
    else:
        raise errors.NotFound(f"Unknown os-services action {action}.")
    db.commit()
    return common.respond({"service": result})


@bp.delete("/os-services/<int:service_id>")
def services_delete(service_id: int) -> Response:
    policy.enforce("os_compute_api:os-services:delete")
    row = db.session().get(models.Service, service_id)
    if row is None:
        raise errors.NotFound(f"Service {service_id} could not be found.")
    db.session().delete(row)
    db.commit()
    return Response(status=204)


def _nodes() -> list[tuple[models.ComputeNode, models.Service | None]]:
    rows = (
        db.session()
        .execute(
            select(models.ComputeNode, models.Service)
            .outerjoin(
                models.Service,
                (models.Service.host == models.ComputeNode.host)
                & (models.Service.binary == services.COMPUTE_BINARY),
            )
            .order_by(models.ComputeNode.id)
        )
        .all()
    )
    return [(node, service) for node, service in rows]


def _hypervisor(
    node: models.ComputeNode, service: models.Service | None, detail: bool
) -> dict[str, Any]:
    up = service is not None and services.is_up(service, common.settings().service_down_time)
    body: dict[str, Any] = {
        "id": node.id,
        "hypervisor_hostname": node.hypervisor_hostname,
        "state": "up" if up else "down",
        "status": "disabled" if service is not None and service.disabled else "enabled",
    }
    if detail:
        body.update(
            {
                "vcpus": node.vcpus,
                "memory_mb": node.memory_mb,
                "local_gb": node.local_gb,
                "vcpus_used": node.vcpus_used,
                "memory_mb_used": node.memory_mb_used,
                "local_gb_used": node.local_gb_used,
                "free_ram_mb": node.memory_mb - node.memory_mb_used,
                "free_disk_gb": node.local_gb - node.local_gb_used,
                "disk_available_least": node.local_gb - node.local_gb_used,
                "hypervisor_type": node.hypervisor_type,
                "hypervisor_version": node.hypervisor_version,
                "running_vms": node.running_vms,
                "current_workload": 0,
                "host_ip": node.host_ip,
                "cpu_info": json.loads(node.cpu_info or "{}"),
                "service": {
                    "host": node.host,
                    "id": service.id if service is not None else None,
                    "disabled_reason": service.disabled_reason if service is not None else None,
                },
            }
        )
    return body


@bp.get("/os-hypervisors")
def hypervisors_index() -> Response:
    policy.enforce("os_compute_api:os-hypervisors:list")
    return common.respond({"hypervisors": [_hypervisor(n, s, False) for n, s in _nodes()]})


@bp.get("/os-hypervisors/detail")
def hypervisors_detail() -> Response:
    policy.enforce("os_compute_api:os-hypervisors:list-detail")
    return common.respond({"hypervisors": [_hypervisor(n, s, True) for n, s in _nodes()]})


@bp.get("/os-hypervisors/statistics")
def hypervisors_statistics() -> Response:
    policy.enforce("os_compute_api:os-hypervisors:statistics")
    nodes = [n for n, _ in _nodes()]
    keys = ("vcpus", "memory_mb", "local_gb", "vcpus_used", "memory_mb_used", "local_gb_used")
    stats: dict[str, int] = {"count": len(nodes)}
    for key in keys:
        stats[key] = sum(getattr(n, key) for n in nodes)
    stats["free_ram_mb"] = stats["memory_mb"] - stats["memory_mb_used"]
    stats["free_disk_gb"] = stats["local_gb"] - stats["local_gb_used"]
    stats["disk_available_least"] = stats["free_disk_gb"]
    stats["running_vms"] = sum(n.running_vms for n in nodes)
    stats["current_workload"] = 0
    return common.respond({"hypervisor_statistics": stats})


@bp.get("/os-hypervisors/<hypervisor_id>")
def hypervisors_show(hypervisor_id: str) -> Response:
    policy.enforce("os_compute_api:os-hypervisors:show")
    for node, service in _nodes():
        if str(node.id) == hypervisor_id or node.uuid == hypervisor_id:
            return common.respond({"hypervisor": _hypervisor(node, service, True)})
    raise errors.NotFound(f"Hypervisor with ID {hypervisor_id} could not be found.")


@bp.get("/os-hypervisors/<pattern>/search")
def hypervisors_search(pattern: str) -> Response:
    policy.enforce("os_compute_api:os-hypervisors:list")
    found = [_hypervisor(n, s, False) for n, s in _nodes() if pattern in n.hypervisor_hostname]
    if not found:
        raise errors.NotFound(f"No hypervisor matching '{pattern}' could be found.")
    return common.respond({"hypervisors": found})


def _zones(detail: bool) -> list[dict[str, Any]]:
    down_time = common.settings().service_down_time
    zones: dict[str, dict[str, Any]] = {}
    internal: dict[str, Any] = {}
    for row in db.session().scalars(select(models.Service).order_by(models.Service.host)):
        up = services.is_up(row, down_time)
        state = {
            "available": not row.disabled and up,
            "active": not row.disabled,
            "updated_at": _time(row.last_seen_up),
        }
        if row.binary == services.COMPUTE_BINARY:
            zone = zones.setdefault(row.availability_zone, {"available": False, "hosts": {}})
            zone["available"] = zone["available"] or state["available"]
            zone["hosts"].setdefault(row.host, {})[row.binary] = state
        else:
            internal.setdefault(row.host, {})[row.binary] = state
    result = [
        {
            "zoneName": name,
            "zoneState": {"available": zone["available"]},
            "hosts": zone["hosts"] if detail else None,
        }
        for name, zone in sorted(zones.items())
    ]
    if detail and internal:
        result.append({"zoneName": "internal", "zoneState": {"available": True}, "hosts": internal})
    return result


@bp.get("/os-availability-zone")
def zones_index() -> Response:
    policy.enforce("os_compute_api:os-availability-zone:list")
    return common.respond({"availabilityZoneInfo": _zones(False)})


@bp.get("/os-availability-zone/detail")
def zones_detail() -> Response:
    policy.enforce("os_compute_api:os-availability-zone:detail")
    return common.respond({"availabilityZoneInfo": _zones(True)})
