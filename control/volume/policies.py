"""Default policy of the block storage API, with Cinder's rule names (the classic defaults: admin
or owner). Operators override any rule in the YAML file named by ``[policy] file`` in volume.conf.

Which volumes and snapshots a project sees is decided before these rules: its own (admins see
every project's with ``all_tenants``); one it cannot see answers 404. Targets: ``project_id`` (the
resource's project, or the project asked about for quotas).
"""

from __future__ import annotations

from control.common.policy import BASE_RULES

_ADMIN = "rule:admin_api"
_OWNER = "rule:admin_or_owner"

RULES: dict[str, str] = {
    **BASE_RULES,
    "context_is_admin": "role:admin",
    "admin_api": "rule:context_is_admin",
    "admin_or_owner": "rule:context_is_admin or project_id:%(project_id)s",
    # Volumes.
    "volume:create": _OWNER,
    "volume:create_from_image": _OWNER,
    "volume:get": _OWNER,
    "volume:get_all": _OWNER,
    "volume:update": _OWNER,
    "volume:delete": _OWNER,
    "volume:extend": _OWNER,
    "volume:get_volume_metadata": _OWNER,
    "volume:create_volume_metadata": _OWNER,
    "volume:update_volume_metadata": _OWNER,
    "volume:delete_volume_metadata": _OWNER,
    "volume_extension:volume_host_attribute": _ADMIN,
    "volume_extension:volume_tenant_attribute": _OWNER,
    "volume_extension:volume_image_metadata": _OWNER,
    # Actions (Nova's legacy attach flow uses these with the user's token).
    "volume:reserve_volume": _OWNER,
    "volume:unreserve_volume": _OWNER,
    "volume:initialize_connection": _OWNER,
    "volume:terminate_connection": _OWNER,
    "volume:attach": _OWNER,
    "volume:detach": _OWNER,
    "volume:begin_detaching": _OWNER,
    "volume:roll_detaching": _OWNER,
    "volume_extension:volume_actions:set_bootable": _OWNER,
    "volume_extension:volume_admin_actions:reset_status": _ADMIN,
    "volume_extension:volume_admin_actions:force_detach": _ADMIN,
    # Snapshots.
    "volume:create_snapshot": _OWNER,
    "volume:get_snapshot": _OWNER,
    "volume:get_all_snapshots": _OWNER,
    "volume:update_snapshot": _OWNER,
    "volume:delete_snapshot": _OWNER,
    "volume:snapshot_metadata": _OWNER,
    # Volume types.
    "volume_extension:types_manage": _ADMIN,
    "volume_extension:type_get": "@",
    "volume_extension:type_get_all": "@",
    "volume_extension:types_extra_specs:index": _ADMIN,
    "volume_extension:types_extra_specs:manage": _ADMIN,
    # Quotas, limits, services, zones.
    "volume_extension:quotas:show": _OWNER,
    "volume_extension:quotas:update": _ADMIN,
    "volume_extension:quotas:delete": _ADMIN,
    "volume_extension:quota_classes": _ADMIN,
    "limits_extension:used_limits": "@",
    "volume_extension:services:index": _ADMIN,
    "volume_extension:availability_zone_list": "@",
}
