"""Quotas (``os-quota-sets``), ``limits``, ``os-services`` and ``os-availability-zone``.

- ``GET os-quota-sets/{project}`` (``?usage=true``: ``{"limit", "in_use", "reserved",
  "allocated"}`` per resource), ``GET os-quota-sets/{project}/defaults``, ``PUT`` (admin),
  ``DELETE`` (admin: back to the defaults).
- ``GET limits``: Cinder's absolute limits and their usage; no rate limits.
- ``GET os-services`` (admin): ``cinder-scheduler`` on the API's host (up: it is answering) and a
  ``cinder-volume`` per agent host as ``<host>@<backend>``, up while it reports within
  ``service_down_time``.
- ``GET os-availability-zone``: the zones of the volume services, and the default zone.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request
from sqlalchemy import delete, select

from control.common import db, errors
from control.common.db import utcnow
from control.volume import models, quota, render, scheduler
from control.volume.api import common
from control.volume.api.common import enforce, respond, target

bp: Blueprint = common.project_blueprint("volume_misc")

UPDATE = {
    "type": "object",
    "properties": {name: {"type": ["integer", "string"]} for name in quota.RESOURCES},
}


def _usage_wanted() -> bool:
    return common.parse_bool(request.args.get("usage", "false"), "usage")


@bp.get("/os-quota-sets/<target_project>")
def show_quota(target_project: str) -> Response:
    enforce("volume_extension:quotas:show", target(target_project))
    sess = db.session()
    limits = quota.limits(sess, target_project, common.settings().quota_defaults)
    body: dict[str, Any] = {"id": target_project}
    if _usage_wanted():
        used = quota.usage(sess, target_project)
        for name, limit in limits.items():
            body[name] = {"limit": limit, "in_use": used[name], "reserved": 0, "allocated": 0}
    else:
        body.update(limits)
    return respond({"quota_set": body})


@bp.get("/os-quota-sets/<target_project>/defaults")
def show_defaults(target_project: str) -> Response:
    enforce("volume_extension:quotas:show", target(target_project))
    return respond({"quota_set": {"id": target_project, **common.settings().quota_defaults}})


@bp.put("/os-quota-sets/<target_project>")
def update_quota(target_project: str) -> Response:
    body = common.body_of("quota_set", UPDATE)
    enforce("volume_extension:quotas:update", target(target_project))
    sess = db.session()
    for resource, raw in body.items():
        if resource not in quota.RESOURCES:
            continue  # Cinder ignores the quotas it does not keep (backups, groups...)
        limit = common.parse_int(raw, resource)
        if limit < -1:
            raise errors.BadRequest(
                f"Invalid input received: Quota limit {limit} for {resource} must be -1 or greater."
            )
        row = sess.get(models.Quota, (target_project, resource))
        if row is None:
            sess.add(models.Quota(project_id=target_project, resource=resource, hard_limit=limit))
        else:
            row.hard_limit = limit
    db.commit()
    limits = quota.limits(sess, target_project, common.settings().quota_defaults)
    return respond({"quota_set": limits})


@bp.delete("/os-quota-sets/<target_project>")
def delete_quota(target_project: str) -> Response:
    enforce("volume_extension:quotas:delete", target(target_project))
    db.session().execute(delete(models.Quota).where(models.Quota.project_id == target_project))
    db.commit()
    return Response(status=200)


@bp.get("/limits")
def limits() -> Response:
    enforce("limits_extension:used_limits")
    sess = db.session()
    project = common.project_id()
    hard = quota.limits(sess, project, common.settings().quota_defaults)
    used = quota.usage(sess, project)
    return respond(
        {
            "limits": {
                "rate": [],
                "absolute": {
                    "maxTotalVolumes": hard["volumes"],
                    "maxTotalSnapshots": hard["snapshots"],
                    "maxTotalVolumeGigabytes": hard["gigabytes"],
                    "maxTotalBackups": 0,
                    "maxTotalBackupGigabytes": 0,
                    "totalVolumesUsed": used["volumes"],
                    "totalGigabytesUsed": used["gigabytes"],
                    "totalSnapshotsUsed": used["snapshots"],
                    "totalBackupsUsed": 0,
                    "totalBackupGigabytesUsed": 0,
                },
            }
        }
    )


@bp.get("/os-services")
def services() -> Response:
    enforce("volume_extension:services:index")
    settings = common.settings()
    now = utcnow()
    items: list[dict[str, Any]] = [
        {
            "binary": "cinder-scheduler",
            "host": settings.host,
            "zone": settings.default_availability_zone,
            "status": "enabled",
            "state": "up",
            "updated_at": render.isotime(now),
            "disabled_reason": None,
        }
    ]
    rows = db.session().scalars(select(models.Service).order_by(models.Service.host)).all()
    for row in rows:
        items.append(
            {
                "binary": row.binary,
                "host": f"{row.host}@{row.backend_name or 'file'}",
                "zone": row.availability_zone,
                "status": "disabled" if row.disabled else "enabled",
                "state": "up" if scheduler.is_up(row, settings.service_down_time, now) else "down",
                "updated_at": render.isotime(row.updated_at),
                "disabled_reason": row.disabled_reason,
            }
        )
    binary = request.args.get("binary")
    host = request.args.get("host")
    if binary:
        items = [item for item in items if item["binary"] == binary]
    if host:
        items = [item for item in items if item["host"].split("@")[0] == host.split("@")[0]]
    return respond({"services": items})


@bp.get("/os-availability-zone")
def availability_zones() -> Response:
    enforce("volume_extension:availability_zone_list")
    settings = common.settings()
    rows = (
        db.session()
        .scalars(select(models.Service).where(models.Service.binary == scheduler.BINARY))
        .all()
    )
    zones: dict[str, bool] = {settings.default_availability_zone: False}
    for row in rows:
        up = not row.disabled and scheduler.is_up(row, settings.service_down_time)
        zones[row.availability_zone] = zones.get(row.availability_zone, False) or up
    return respond(
        {
            "availabilityZoneInfo": [
                {"zoneName": name, "zoneState": {"available": available}}
                for name, available in sorted(zones.items())
            ]
        }
    )
