"""Default policy of the compute API, with Nova's rule names. Operators override any rule in the
YAML file named by ``[policy] file`` in compute.conf. Roles imply each other (admin > member >
reader), so ``role:reader`` admits members and admins too.

The target of a server rule is the server's ``project_id`` and ``user_id``; of a key pair rule,
its ``user_id``; of a quota rule, the ``project_id`` asked about.
"""

from __future__ import annotations

from control.common.policy import BASE_RULES

_ADMIN = "rule:context_is_admin"
_MEMBER = "rule:context_is_admin or (role:member and project_id:%(project_id)s)"
_READER = "rule:context_is_admin or (role:reader and project_id:%(project_id)s)"

RULES: dict[str, str] = {
    **BASE_RULES,
    "context_is_admin": "role:admin",
    # Flavors: everyone reads, admins write.
    "os_compute_api:os-flavor-manage:create": _ADMIN,
    "os_compute_api:os-flavor-manage:update": _ADMIN,
    "os_compute_api:os-flavor-manage:delete": _ADMIN,
    "os_compute_api:os-flavor-extra-specs:index": "role:reader or rule:context_is_admin",
    "os_compute_api:os-flavor-extra-specs:create": _ADMIN,
    "os_compute_api:os-flavor-extra-specs:update": _ADMIN,
    "os_compute_api:os-flavor-extra-specs:delete": _ADMIN,
    "os_compute_api:os-flavor-access": _ADMIN,
    "os_compute_api:os-flavor-access:add_tenant_access": _ADMIN,
    "os_compute_api:os-flavor-access:remove_tenant_access": _ADMIN,
    # Key pairs belong to a user.
    "os_compute_api:os-keypairs:index": "rule:context_is_admin or user_id:%(user_id)s",
    "os_compute_api:os-keypairs:show": "rule:context_is_admin or user_id:%(user_id)s",
    "os_compute_api:os-keypairs:create": "rule:context_is_admin or user_id:%(user_id)s",
    "os_compute_api:os-keypairs:delete": "rule:context_is_admin or user_id:%(user_id)s",
    # Quotas and limits.
    "os_compute_api:os-quota-sets:show": _READER,
    "os_compute_api:os-quota-sets:defaults": "@",
    "os_compute_api:os-quota-sets:update": _ADMIN,
    "os_compute_api:os-quota-sets:delete": _ADMIN,
    "os_compute_api:limits": "@",
    # Servers.
    "os_compute_api:servers:index": _READER,
    "os_compute_api:servers:detail": _READER,
    "os_compute_api:servers:index:get_all_tenants": _ADMIN,
    "os_compute_api:servers:detail:get_all_tenants": _ADMIN,
    "os_compute_api:servers:allow_all_filters": _ADMIN,
    "os_compute_api:servers:show": _READER,
    "os_compute_api:servers:show:host_status": _ADMIN,
    "os_compute_api:os-extended-server-attributes": _ADMIN,
    "os_compute_api:servers:create": _MEMBER,
    "os_compute_api:servers:update": _MEMBER,
    "os_compute_api:servers:delete": _MEMBER,
    "os_compute_api:servers:start": _MEMBER,
    "os_compute_api:servers:stop": _MEMBER,
    "os_compute_api:servers:reboot": _MEMBER,
    "os_compute_api:os-console-output": _MEMBER,
    "os_compute_api:server-metadata:index": _READER,
    "os_compute_api:os-security-groups:list": _READER,
    "os_compute_api:os-attach-interfaces:list": _READER,
    "os_compute_api:os-attach-interfaces:show": _READER,
    "os_compute_api:os-attach-interfaces:create": _MEMBER,
    "os_compute_api:os-attach-interfaces:delete": _MEMBER,
    "os_compute_api:os-volumes-attachments:index": _READER,
    "os_compute_api:os-volumes-attachments:show": _READER,
    "os_compute_api:os-volumes-attachments:create": _MEMBER,
    "os_compute_api:os-volumes-attachments:update": _ADMIN,
    "os_compute_api:os-volumes-attachments:delete": _MEMBER,
    "os_compute_api:server-metadata:show": _READER,
    "os_compute_api:server-metadata:create": _MEMBER,
    "os_compute_api:server-metadata:update": _MEMBER,
    "os_compute_api:server-metadata:update_all": _MEMBER,
    "os_compute_api:server-metadata:delete": _MEMBER,
    "os_compute_api:os-instance-actions:list": _READER,
    "os_compute_api:os-instance-actions:show": _READER,
    "os_compute_api:os-instance-actions:events": _ADMIN,
    # Operators.
    "os_compute_api:os-services:list": _ADMIN,
    "os_compute_api:os-services:update": _ADMIN,
    "os_compute_api:os-services:delete": _ADMIN,
    "os_compute_api:os-hypervisors:list": _ADMIN,
    "os_compute_api:os-hypervisors:list-detail": _ADMIN,
    "os_compute_api:os-hypervisors:show": _ADMIN,
    "os_compute_api:os-hypervisors:statistics": _ADMIN,
    "os_compute_api:os-availability-zone:list": "role:reader or rule:context_is_admin",
    "os_compute_api:os-availability-zone:detail": _ADMIN,
}
