"""Default policy of the network API, with Neutron's rule names (the classic defaults: admin or
owner). Operators override any rule in the YAML file named by ``[policy] file`` in network.conf.

Which resources a project sees at all is decided before these rules, as Neutron's database
layer does: its own, plus ``shared`` networks (and their subnets) and ``router:external``
networks (and their subnets); admins see everything. A resource the caller cannot see answers
404. The rules then decide what the caller may do; ``<action>:<attribute>`` rules guard single
attributes (setting ``shared``, ``router:external``, ``provider:*``, ``binding:*``...), and
``get_<resource>:<attribute>`` rules decide which attributes are shown.

Targets: ``project_id`` (the resource's project), ``network_project_id`` (the project of the
network a subnet or port is on), ``shared`` and ``router_external`` (of that network).
"""

from __future__ import annotations

from control.common.policy import BASE_RULES

_ADMIN = "rule:context_is_admin"
_OWNER = "rule:admin_or_owner"
_NET_OWNER = "rule:admin_or_network_owner"
_ADMIN_OR_SERVICE = "rule:context_is_admin or rule:service_role"

RULES: dict[str, str] = {
    **BASE_RULES,
    "context_is_admin": "role:admin",
    "admin_only": "rule:context_is_admin",
    "admin_or_owner": "rule:context_is_admin or project_id:%(project_id)s",
    "admin_or_network_owner": "rule:context_is_admin or project_id:%(network_project_id)s",
    "admin_owner_or_network_owner": "rule:admin_or_owner or rule:admin_or_network_owner",
    "shared": "True:%(shared)s",
    "external": "True:%(router_external)s",
    # Networks.
    "create_network": _OWNER,
    "create_network:shared": _ADMIN,
    "create_network:router:external": _ADMIN,
    "create_network:provider:network_type": _ADMIN,
    "create_network:provider:physical_network": _ADMIN,
    "create_network:provider:segmentation_id": _ADMIN,
    "get_network": "rule:admin_or_owner or rule:shared or rule:external",
    "get_network:provider:network_type": _ADMIN,
    "get_network:provider:physical_network": _ADMIN,
    "get_network:provider:segmentation_id": _ADMIN,
    "update_network": _OWNER,
    "update_network:shared": _ADMIN,
    "update_network:router:external": _ADMIN,
    "update_network:provider:network_type": _ADMIN,
    "update_network:provider:physical_network": _ADMIN,
    "update_network:provider:segmentation_id": _ADMIN,
    "delete_network": _OWNER,
    # Subnets.
    "create_subnet": _NET_OWNER,
    "get_subnet": "rule:admin_or_owner or rule:shared or rule:external",
    "update_subnet": _NET_OWNER,
    "delete_subnet": _NET_OWNER,
    # Ports.
    "create_port": "rule:admin_or_owner",
    "create_port:device_owner": "rule:admin_or_network_owner or rule:shared",
    "create_port:mac_address": _NET_OWNER,
    "create_port:fixed_ips:ip_address": _NET_OWNER,
    "create_port:fixed_ips:subnet_id": "rule:admin_or_network_owner or rule:shared",
    "create_port:port_security_enabled": _NET_OWNER,
    "create_port:allowed_address_pairs": _NET_OWNER,
    "create_port:binding:host_id": _ADMIN_OR_SERVICE,
    "create_port:binding:profile": _ADMIN_OR_SERVICE,
    "create_port:binding:vnic_type": "rule:admin_or_owner",
    # The compute service (role service) reads and binds the ports of every project, as
    # Neutron's service_api rule allows.
    "get_port": "rule:admin_owner_or_network_owner or rule:service_role",
    "get_port:binding:host_id": _ADMIN_OR_SERVICE,
    "get_port:binding:vif_type": _ADMIN_OR_SERVICE,
    "get_port:binding:vif_details": _ADMIN_OR_SERVICE,
    "get_port:binding:profile": _ADMIN_OR_SERVICE,
    "update_port": "rule:admin_owner_or_network_owner or rule:service_role",
    "update_port:device_owner": "rule:admin_or_network_owner or rule:shared",
    "update_port:mac_address": _ADMIN,
    "update_port:fixed_ips:ip_address": _NET_OWNER,
    "update_port:fixed_ips:subnet_id": "rule:admin_or_network_owner or rule:shared",
    "update_port:port_security_enabled": _NET_OWNER,
    "update_port:allowed_address_pairs": _NET_OWNER,
    "update_port:binding:host_id": _ADMIN_OR_SERVICE,
    "update_port:binding:profile": _ADMIN_OR_SERVICE,
    "update_port:binding:vnic_type": "rule:admin_or_owner",
    "delete_port": "rule:admin_owner_or_network_owner",
    # Security groups and rules (the target is the group's project).
    "create_security_group": _OWNER,
    "get_security_group": _OWNER,
    "update_security_group": _OWNER,
    "delete_security_group": _OWNER,
    "create_security_group_rule": _OWNER,
    "get_security_group_rule": _OWNER,
    "delete_security_group_rule": _OWNER,
    # Routers.
    "create_router": _OWNER,
    "create_router:external_gateway_info:enable_snat": _ADMIN,
    "create_router:external_gateway_info:external_fixed_ips": _ADMIN,
    "get_router": _OWNER,
    "update_router": _OWNER,
    "update_router:external_gateway_info:enable_snat": _ADMIN,
    "update_router:external_gateway_info:external_fixed_ips": _ADMIN,
    "delete_router": _OWNER,
    "add_router_interface": _OWNER,
    "remove_router_interface": _OWNER,
    # Floating IPs.
    "create_floatingip": _OWNER,
    "create_floatingip:floating_ip_address": _ADMIN,
    "get_floatingip": _OWNER,
    "update_floatingip": _OWNER,
    "delete_floatingip": _OWNER,
    # Quotas (the target is the project asked about).
    "get_quota": _OWNER,
    "get_quotas": _ADMIN,
    "update_quota": _ADMIN,
    "delete_quota": _ADMIN,
    # Agents.
    "get_agent": _ADMIN,
    "update_agent": _ADMIN,
    "delete_agent": _ADMIN,
}
