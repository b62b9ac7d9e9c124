"""``/limits`` and ``/os-quota-sets``: a project's absolute limits and usage; quota show,
update (admin) and the defaults (``[quota]`` in compute.conf)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from control.common import db, errors, policy, validation
from control.compute import models, quota
from control.compute.api import common

bp = Blueprint("compute_quotas", __name__, url_prefix="/v2.1")

UPDATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "quota_set": {
            "type": "object",
            "properties": {
                **{
                    name: {"type": ["integer", "string"], "pattern": "^-?[0-9]+$", "minimum": -1}
                    for name in common.QUOTA_RESOURCES
                },
                "force": {"type": ["boolean", "string"]},
            },
            "additionalProperties": True,
        }
    },
    "required": ["quota_set"],
}

# Nova's quota_set keys that Cirrus does not enforce, shown as unlimited for client compatibility.
_UNENFORCED = {
    "floating_ips": -1,
    "fixed_ips": -1,
    "security_groups": -1,
    "security_group_rules": -1,
    "injected_files": -1,
    "injected_file_content_bytes": -1,
    "injected_file_path_bytes": -1,
    "server_groups": -1,
    "server_group_members": -1,
}


def _quota_set(project_id: str, values: dict[str, int]) -> dict[str, Any]:
    return {"id": project_id, **{k: values[k] for k in common.QUOTA_RESOURCES}, **_UNENFORCED}


@bp.get("/limits")
def limits() -> Response:
    policy.enforce("os_compute_api:limits")
    project = request.args.get("tenant_id") or common.project_id()
    if project != common.project_id():
        policy.enforce("context_is_admin")
    sess = db.session()
    hard = quota.limits(sess, project, common.settings().quota_defaults)
    used = quota.usage(sess, project)
    absolute = {
        "maxTotalInstances": hard["instances"],
        "maxTotalCores": hard["cores"],
        "maxTotalRAMSize": hard["ram"],
        "maxTotalKeypairs": hard["key_pairs"],
        "maxServerMeta": hard["metadata_items"],
        "maxImageMeta": hard["metadata_items"],
        "maxPersonality": 5,
        "maxPersonalitySize": 10240,
        "maxServerGroups": -1,
        "maxServerGroupMembers": -1,
        "maxTotalFloatingIps": -1,
        "maxSecurityGroups": -1,
        "maxSecurityGroupRules": -1,
        "totalInstancesUsed": used["instances"],
        "totalCoresUsed": used["cores"],
        "totalRAMUsed": used["ram"],
        "totalFloatingIpsUsed": 0,
        "totalSecurityGroupsUsed": 0,
        "totalServerGroupsUsed": 0,
    }
    return common.respond({"limits": {"rate": [], "absolute": absolute}})


@bp.get("/os-quota-sets/<project_id>")
def show(project_id: str) -> Response:
    policy.enforce("os_compute_api:os-quota-sets:show", {"project_id": project_id})
    sess = db.session()
    hard = quota.limits(sess, project_id, common.settings().quota_defaults)
    return common.respond({"quota_set": _quota_set(project_id, hard)})


@bp.get("/os-quota-sets/<project_id>/detail")
def detail(project_id: str) -> Response:
    policy.enforce("os_compute_api:os-quota-sets:show", {"project_id": project_id})
    sess = db.session()
    hard = quota.limits(sess, project_id, common.settings().quota_defaults)
    used = quota.usage(sess, project_id, common.user_id())
    body: dict[str, Any] = {"id": project_id}
    for name in common.QUOTA_RESOURCES:
        body[name] = {"limit": hard[name], "in_use": used.get(name, 0), "reserved": 0}
    for name, value in _UNENFORCED.items():
        body[name] = {"limit": value, "in_use": 0, "reserved": 0}
    return common.respond({"quota_set": body})


@bp.get("/os-quota-sets/<project_id>/defaults")
def defaults(project_id: str) -> Response:
    policy.enforce("os_compute_api:os-quota-sets:defaults")
    return common.respond({"quota_set": _quota_set(project_id, common.settings().quota_defaults)})


@bp.put("/os-quota-sets/<project_id>")
def update(project_id: str) -> Response:
    policy.enforce("os_compute_api:os-quota-sets:update", {"project_id": project_id})
    body = validation.validated_body(UPDATE_SCHEMA)["quota_set"]
    sess = db.session()
    for name in common.QUOTA_RESOURCES:
        if name not in body:
            continue
        try:
            value = int(body[name])
        except (TypeError, ValueError):
            raise errors.BadRequest(f"Invalid input for field '{name}'.") from None
        if value < -1:
            raise errors.BadRequest(f"Invalid input for field '{name}': must be >= -1.")
        row = sess.get(models.Quota, (project_id, name))
        if row is None:
            sess.add(models.Quota(project_id=project_id, resource=name, hard_limit=value))
        else:
            row.hard_limit = value
    db.commit()
    hard = quota.limits(sess, project_id, common.settings().quota_defaults)
    result = _quota_set(project_id, hard)
    result.pop("id")
    return common.respond({"quota_set": result})


@bp.delete("/os-quota-sets/<project_id>")
def revert(project_id: str) -> Response:
    policy.enforce("os_compute_api:os-quota-sets:delete", {"project_id": project_id})
    sess = db.session()
    for row in sess.scalars(select_quotas(project_id)):
        sess.delete(row)
    db.commit()
    return Response(status=202)


def select_quotas(project_id: str) -> Any:
    from sqlalchemy import select

    return select(models.Quota).where(models.Quota.project_id == project_id)
