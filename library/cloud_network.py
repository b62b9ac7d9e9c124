#!/usr/bin/python
# Copyright: Cirrus contributors
# Apache License 2.0 (see pyproject.toml)
"""Ansible module: a network of a Cirrus (Neutron) cloud, its subnets and a router for them."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cloud_network
short_description: Manage a network, its subnets and a router of an OpenStack-compatible cloud
description:
  - Brings the network named O(name) of the network service (Neutron v2.0, as Cirrus serves it)
    to O(state), with the subnets listed in O(subnets) and, when O(router) is given, a router
    with an interface on each of those subnets (and optionally a gateway on an external network).
    Only what differs is changed, so that running the task again reports no change.
  - Talks to the APIs over plain HTTP (Keystone v3 password login, then Neutron v2.0), so the host
    it runs on needs Python and PyYAML only, not openstacksdk.
  - Names are the keys. The network is found by its exact name in the project of the credentials,
    a subnet by its name on that network, the router by its name in the project; two or more
    with one name fail the task, naming their ids.
  - Options left out (V(null)) are not compared, and take the API's default when the resource is
    created. Mutable attributes that differ are updated; an immutable one that differs (a
    subnet's O(subnets[].cidr), the network's provider attributes) fails the task naming it.
  - Subnets of the network that O(subnets) does not list, and other interfaces of the router, are
    left as they are.
version_added: "0.1.0"
author: Cirrus contributors
extends_documentation_fragment:
  - cirrus_cloud
options:
  name:
    description:
      - Name of the network in the project of the credentials.
    type: str
    required: true
  state:
    description:
      - V(present) the network exists with the subnets and the router given.
      - V(absent) no network has this name. Its router interfaces are removed first (the
        routers themselves stay), then its subnets, then the network. Ports of anything else
        (servers, load balancers, ports made by hand) fail the task, naming them; delete those
        first.
    type: str
    choices: [present, absent]
    default: present
  description:
    description:
      - Description of the network.
    type: str
  admin_state_up:
    description:
      - Administrative state of the network.
    type: bool
  shared:
    description:
      - Whether every project may use the network. Setting it to V(true) needs an admin.
    type: bool
  external:
    description:
      - Whether routers may use the network as their gateway (C(router:external)). Setting it to
        V(true) needs an admin.
    type: bool
  mtu:
    description:
      - MTU of the network; at most the service's maximum for its type (VXLAN networks 50 bytes
        less than the physical networks).
    type: int
  port_security_enabled:
    description:
      - Default of the network's ports for security groups and anti-spoofing.
    type: bool
  provider_network_type:
    description:
      - Type of the network (admin only); V(vxlan) for project networks by default.
      - Used when the network is created; a different value on an existing network fails the task.
    type: str
    choices: [flat, vlan, vxlan]
  provider_physical_network:
    description:
      - Physical network of a V(flat) or V(vlan) network (admin only), one the service knows.
      - Used when the network is created; a different value on an existing network fails the task.
    type: str
  provider_segmentation_id:
    description:
      - VLAN id of a V(vlan) network or VNI of a V(vxlan) network (admin only).
      - Used when the network is created; a different value on an existing network fails the task.
    type: int
  subnets:
    description:
      - Subnets the network has, each found by its name on the network. Left out, subnets are
        not looked at.
      - Absent from O(state=absent), which deletes every subnet of the network.
    type: list
    elements: dict
    suboptions:
      name:
        description:
          - Name of the subnet, unique on the network.
        type: str
        required: true
      cidr:
        description:
          - Network address of the subnet, for example C(10.10.0.0/24) or C(fd00:10::/64); the
            IP version follows from it.
          - Cannot be changed; to change it, delete the subnet (or the network, O(state=absent))
            and run the task again.
        type: str
        required: true
      description:
        description:
          - Description of the subnet.
        type: str
      gateway_ip:
        description:
          - Gateway address, a host address of O(subnets[].cidr) outside the pools. On create the
            API takes the first host address when it is left out.
        type: str
      disable_gateway_ip:
        description:
          - V(true) the subnet has no gateway (a router interface needs one).
        type: bool
        default: false
      enable_dhcp:
        description:
          - Whether the service runs DHCP on the subnet (the API's default is V(true)).
        type: bool
      dns_nameservers:
        description:
          - DNS servers handed out by DHCP, in order; V([]) removes them.
        type: list
        elements: str
      allocation_pools:
        description:
          - Address ranges the service hands out, each C(start) and C(end). Left out or empty,
            an existing subnet keeps its pools and a new one gets every host address but the
            gateway.
        type: list
        elements: dict
      host_routes:
        description:
          - Routes handed out by DHCP, each C(destination) (a CIDR) and C(nexthop); V([])
            removes them. Compared as a set.
        type: list
        elements: dict
  router:
    description:
      - A router of the project with an interface (at the subnet's gateway address) on each
        subnet of O(subnets); created when missing.
      - Ignored with O(state=absent), which removes the interfaces on the network's subnets but
        keeps the router.
    type: dict
    suboptions:
      name:
        description:
          - Name of the router in the project of the credentials.
        type: str
        required: true
      external_network:
        description:
          - Name or id of an external network (C(router:external)) for the router's gateway (SNAT
            and floating IPs). Left out, the router's gateway is not changed.
        type: str
      enable_snat:
        description:
          - Whether the gateway translates the addresses of the subnets (the API's default is
            V(true)). Setting it needs an admin under the default policy. Needs
            O(router.external_network).
        type: bool
  wait:
    description:
      - Not used; the network API acts at once. Accepted as every C(cloud_*) module accepts it.
    type: bool
    default: true
  timeout:
    description:
      - Not used; accepted as every C(cloud_*) module accepts it.
    type: int
    default: 300
attributes:
  check_mode:
    support: full
    description: Reads the network, its subnets, the router and the external network, and
      reports what would change (RV(actions)) without any write call.
  diff_mode:
    support: none
    description: Not supported.
requirements:
  - PyYAML on the host the module runs on, to read clouds.yaml.
notes:
  - Runs where the client runs, usually the deploy host (C(delegate_to=localhost) or
    C(connection=local)).
  - Checks the options it can before any write (subnet names, CIDRs, immutable attributes,
    duplicate names, the external network), so that a wrong task changes nothing; what only the
    API can check fails with the API's status and message.
seealso:
  - name: openstack.cloud.network
    description: The collection's modules (network, subnet, router), which need openstacksdk.
    link: https://docs.ansible.com/ansible/latest/collections/openstack/cloud/network_module.html
"""

EXAMPLES = r"""
- name: A network with one subnet, routed to the external network ext
  cloud_network:
    cloud: cirrus-demo
    name: net1
    subnets:
      - name: net1-v4
        cidr: 10.10.0.0/24
        dns_nameservers: [192.0.2.53]
    router:
      name: r1
      external_network: ext
  delegate_to: localhost

- name: An external provider network (admin credentials)
  cloud_network:
    cloud: cirrus
    name: ext
    external: true
    shared: false
    provider_network_type: flat
    provider_physical_network: physnet1
    subnets:
      - name: ext-v4
        cidr: 198.51.100.0/24
        enable_dhcp: false
        allocation_pools:
          - start: 198.51.100.100
            end: 198.51.100.200
  delegate_to: localhost

- name: Delete net1 (its router interfaces and subnets first; the router r1 stays)
  cloud_network:
    cloud: cirrus-demo
    name: net1
    state: absent
  delegate_to: localhost
"""

RETURN = r"""
id:
  description: Id of the network; for O(state=absent), of the network deleted, if any.
  returned: when the network exists or existed (not in check mode when it would be created)
  type: str
  sample: 3f0c5d2a-8b1e-4f6a-9c7d-2e4b6a8c0d1f
network:
  description: The network as the API shows it after the task (C(GET /v2.0/networks/{id})).
  returned: with O(state=present), when the network exists (not in check mode when it would be
    created)
  type: dict
  sample:
    id: 3f0c5d2a-8b1e-4f6a-9c7d-2e4b6a8c0d1f
    name: net1
    status: ACTIVE
    admin_state_up: true
    shared: false
    router:external: false
    mtu: 1450
    port_security_enabled: true
    subnets: [8a2b4c6d-0e1f-4a3b-9c5d-7e9f1a3b5c7d]
    project_id: 0b6e3d5c8a9f4e2b9c1d7a6e5f4b3c2a
    revision_number: 2
subnets:
  description:
    - The subnets of O(subnets), in its order, as the API shows them after the task; in check
      mode, only those that exist already.
  returned: with O(state=present)
  type: list
  elements: dict
  sample:
    - id: 8a2b4c6d-0e1f-4a3b-9c5d-7e9f1a3b5c7d
      name: net1-v4
      network_id: 3f0c5d2a-8b1e-4f6a-9c7d-2e4b6a8c0d1f
      ip_version: 4
      cidr: 10.10.0.0/24
      gateway_ip: 10.10.0.1
      enable_dhcp: true
      allocation_pools:
        - start: 10.10.0.2
          end: 10.10.0.254
      dns_nameservers: [192.0.2.53]
      host_routes: []
router:
  description:
    - The router of O(router) as the API shows it after the task; V(null) without O(router), or
      in check mode when it would be created.
  returned: with O(state=present)
  type: dict
  sample:
    id: 5d7f9b1c-3e5a-4c7e-8a0b-2c4e6a8b0d2f
    name: r1
    status: ACTIVE
    admin_state_up: true
    external_gateway_info:
      network_id: 9e1f3a5b-7c9d-4e1f-8a3b-5c7d9e1f3a5b
      enable_snat: true
      external_fixed_ips:
        - subnet_id: 1c3e5a7b-9d1f-4b3d-8e5f-7a9b1c3d5e7f
          ip_address: 198.51.100.101
actions:
  description: What the task did, or would do in check mode, one sentence each.
  returned: always
  type: list
  elements: str
  sample:
    - create network 'net1'
    - create subnet 'net1-v4' (10.10.0.0/24)
    - add an interface on subnet 'net1-v4' to router 'r1'
"""

import ipaddress  # noqa: E402 - Ansible modules put their documentation first

from ansible.module_utils.cirrus_cloud import CirrusModule, versioned_url  # noqa: E402

ROUTER_INTERFACE = "network:router_interface"
DHCP = "network:dhcp"

#: Network options compared with the API's attributes when given: option -> attribute.
_NETWORK_MUTABLE = {
    "description": "description",
    "admin_state_up": "admin_state_up",
    "shared": "shared",
    "external": "router:external",
    "mtu": "mtu",
    "port_security_enabled": "port_security_enabled",
}
_NETWORK_PROVIDER = {
    "provider_network_type": "provider:network_type",
    "provider_physical_network": "provider:physical_network",
    "provider_segmentation_id": "provider:segmentation_id",
}

_SUBNET_SPEC = {
    "name": {"type": "str", "required": True},
    "cidr": {"type": "str", "required": True},
    "description": {"type": "str"},
    "gateway_ip": {"type": "str"},
    "disable_gateway_ip": {"type": "bool", "default": False},
    "enable_dhcp": {"type": "bool"},
    "dns_nameservers": {"type": "list", "elements": "str"},
    "allocation_pools": {"type": "list", "elements": "dict"},
    "host_routes": {"type": "list", "elements": "dict"},
}
_ROUTER_SPEC = {
    "name": {"type": "str", "required": True},
    "external_network": {"type": "str"},
    "enable_snat": {"type": "bool"},
}


def _address(value: object) -> str:
    """The canonical text of an IP address (``value`` as it is when it is not one)."""
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        return str(value)


def _pools(pools: list | None) -> list:
    return sorted((_address(p.get("start")), _address(p.get("end"))) for p in pools or [])


def _routes(routes: list | None) -> list:
    found = []
    for route in routes or []:
        try:
            destination = str(ipaddress.ip_network(str(route.get("destination")), strict=False))
        except ValueError:
            destination = str(route.get("destination"))
        found.append((destination, _address(route.get("nexthop"))))
    return sorted(found)


class NetworkModule(CirrusModule):
    """Read the network, its subnets and the router; check what cannot change; then create or
    update only what differs."""

    argument_spec = {
        "name": {"type": "str", "required": True},
        "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
        "description": {"type": "str"},
        "admin_state_up": {"type": "bool"},
        "shared": {"type": "bool"},
        "external": {"type": "bool"},
        "mtu": {"type": "int"},
        "port_security_enabled": {"type": "bool"},
        "provider_network_type": {"type": "str", "choices": ["flat", "vlan", "vxlan"]},
        "provider_physical_network": {"type": "str"},
        "provider_segmentation_id": {"type": "int"},
        "subnets": {"type": "list", "elements": "dict", "options": _SUBNET_SPEC},
        "router": {"type": "dict", "options": _ROUTER_SPEC},
    }
    module_kwargs = {"supports_check_mode": True}
    user_agent = "cirrus-ansible cloud_network"

    def __init__(self) -> None:
        super().__init__()
        self.actions: list[str] = []
        self.url = ""

    # -- helpers -------------------------------------------------------------------------------

    def did(self, action: str) -> None:
        self.actions.append(action)

    def finish(self, **result) -> None:
        self.exit_json(changed=bool(self.actions), actions=self.actions, **result)

    def listing(self, collection: str, query: dict, what: str) -> list:
        return self.session.collect(f"{self.url}/{collection}", collection, query=query, what=what)

    def only(self, kind: str, name: str, found: list, where: str, fix: str) -> dict | None:
        """The one item of ``found`` named ``name``; two or more fail the task naming them."""
        found = [item for item in found if item.get("name") == name]
        if len(found) > 1:
            ids = sorted(str(item["id"]) for item in found)
            self.fail_json(
                msg=f"{len(found)} {kind}s are named '{name}'{' ' + where if where else ''} "
                f"(ids {', '.join(ids)}); "
                f"this module needs the name to pick one: {fix}",
                ids=ids,
            )
        return found[0] if found else None

    def mine(self) -> dict:
        """The list filter that keeps the project's own resources (admins see every project's)."""
        project = self.session.project_id
        return {"project_id": project} if project else {}

    # -- checks before any call ----------------------------------------------------------------

    def check_options(self) -> None:
        subnets = self.params["subnets"] or []
        names = [subnet["name"] for subnet in subnets]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            self.fail_json(
                msg=f"subnets lists the name(s) {', '.join(twice)} more than once; a subnet's "
                "name is its key on the network: give each subnet its own name"
            )
        for index, subnet in enumerate(subnets):
            where = f"subnets[{index}] ('{subnet['name']}')"
            cidr = subnet["cidr"]
            try:
                loose = ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                self.fail_json(
                    msg=f"{where}: cidr '{cidr}' is not a valid IP network; give a network "
                    "address with its prefix length, e.g. 10.10.0.0/24 or fd00:10::/64"
                )
            if not _is_network_address(cidr):
                self.fail_json(
                    msg=f"{where}: cidr '{cidr}' has host bits set; use the network address {loose}"
                )
            if subnet["disable_gateway_ip"] and self.params["router"]:
                self.fail_json(
                    msg=f"{where}: a router interface sits on the subnet's gateway address, and "
                    "disable_gateway_ip=true leaves it none; give the subnet a gateway, or leave "
                    "router out and attach it by port (`openstack router add port`)"
                )
            if subnet["disable_gateway_ip"] and subnet["gateway_ip"]:
                self.fail_json(
                    msg=f"{where}: gateway_ip and disable_gateway_ip=true contradict each other; "
                    "give one of them"
                )
            for option, keys in (
                ("allocation_pools", ("start", "end")),
                ("host_routes", ("destination", "nexthop")),
            ):
                for item in subnet[option] or []:
                    if sorted(item) != sorted(keys):
                        self.fail_json(
                            msg=f"{where}: each item of {option} needs exactly "
                            f"{' and '.join(keys)} (got {sorted(item)})"
                        )
        router = self.params["router"]
        if router and router["enable_snat"] is not None and not router["external_network"]:
            self.fail_json(
                msg="router.enable_snat needs router.external_network (the gateway it applies "
                "to); add external_network, or leave enable_snat out"
            )

    # -- the network ---------------------------------------------------------------------------

    def find_network(self) -> dict | None:
        name = self.params["name"]
        found = self.listing(
            "networks", {"name": name, **self.mine()}, f"list the networks named '{name}'"
        )
        return self.only(
            "network",
            name,
            found,
            "in the project",
            "delete or rename the extra ones (`openstack network delete ID`, "
            "`openstack network set --name NEW ID`)",
        )

    def network_changes(self, network: dict) -> dict:
        """The attributes to update; fails on a provider attribute that differs."""
        name = self.params["name"]
        for option, attribute in _NETWORK_PROVIDER.items():
            wanted = self.params[option]
            # Only admins see the provider attributes (and may set them).
            if wanted is None or attribute not in network or network[attribute] == wanted:
                continue
            self.fail_json(
                msg=f"network '{name}' ({network['id']}) has {attribute} "
                f"{network[attribute]!r}, the task wants {wanted!r} ({option}); it cannot be "
                "changed: delete the network (state=absent) and run the task again to "
                "recreate it, or give the value it has",
                network=network,
            )
        changes = {}
        for option, attribute in _NETWORK_MUTABLE.items():
            wanted = self.params[option]
            if wanted is not None and network.get(attribute) != wanted:
                changes[attribute] = wanted
        return changes

    def create_network(self) -> dict | None:
        name = self.params["name"]
        body: dict = {"name": name}
        for option, attribute in {**_NETWORK_MUTABLE, **_NETWORK_PROVIDER}.items():
            if self.params[option] is not None:
                body[attribute] = self.params[option]
        self.did(f"create network '{name}'")
        if self.check_mode:
            return None
        response = self.session.call(
            "POST", f"{self.url}/networks", {"network": body}, what=f"create network '{name}'"
        )
        return response.body["network"]

    def update_network(self, network: dict, changes: dict) -> dict:
        name = self.params["name"]
        self.did(f"update network '{name}': {', '.join(sorted(changes))}")
        if self.check_mode:
            return network
        response = self.session.call(
            "PUT",
            f"{self.url}/networks/{network['id']}",
            {"network": changes},
            what=f"update network '{name}' ({network['id']}) ({', '.join(sorted(changes))})",
        )
        return response.body["network"]

    # -- subnets -------------------------------------------------------------------------------

    def subnets_of(self, network: dict | None) -> list:
        if network is None:
            return []
        return self.listing(
            "subnets",
            {"network_id": network["id"]},
            f"list the subnets of network '{self.params['name']}'",
        )

    def subnet_changes(self, wanted: dict, subnet: dict) -> dict:
        """The attributes of ``subnet`` to update for ``wanted``; fails when the CIDR differs."""
        cidr = str(ipaddress.ip_network(wanted["cidr"], strict=False))
        if ipaddress.ip_network(subnet["cidr"]) != ipaddress.ip_network(cidr):
            self.fail_json(
                msg=f"subnet '{wanted['name']}' ({subnet['id']}) of network "
                f"'{self.params['name']}' has cidr {subnet['cidr']}, the task wants {cidr}; a "
                "subnet's cidr cannot be changed: delete the subnet (or the network, "
                "state=absent) and run the task again to recreate it, or give a new name for a "
                "second subnet",
                subnet=subnet,
            )
        changes: dict = {}
        for option in ("description", "enable_dhcp"):
            if wanted[option] is not None and subnet.get(option) != wanted[option]:
                changes[option] = wanted[option]
        if wanted["disable_gateway_ip"]:
            if subnet.get("gateway_ip") is not None:
                changes["gateway_ip"] = None
        elif wanted["gateway_ip"] is not None:
            gateway = _address(wanted["gateway_ip"])
            if _address(subnet.get("gateway_ip")) != gateway:
                changes["gateway_ip"] = gateway
        dns = wanted["dns_nameservers"]
        if dns is not None and list(subnet.get("dns_nameservers") or []) != list(dns):
            changes["dns_nameservers"] = list(dns)
        routes = wanted["host_routes"]
        if routes is not None and _routes(subnet.get("host_routes")) != _routes(routes):
            changes["host_routes"] = [{"destination": d, "nexthop": n} for d, n in _routes(routes)]
        pools = wanted["allocation_pools"]
        if pools and _pools(subnet.get("allocation_pools")) != _pools(pools):
            changes["allocation_pools"] = [{"start": s, "end": e} for s, e in _pools(pools)]
        return changes

    def subnet_body(self, wanted: dict, network_id: str) -> dict:
        cidr = ipaddress.ip_network(wanted["cidr"], strict=False)
        body: dict = {
            "network_id": network_id,
            "name": wanted["name"],
            "cidr": str(cidr),
            "ip_version": cidr.version,
        }
        if wanted["disable_gateway_ip"]:
            body["gateway_ip"] = None
        elif wanted["gateway_ip"] is not None:
            body["gateway_ip"] = wanted["gateway_ip"]
        for option in ("description", "enable_dhcp", "dns_nameservers"):
            if wanted[option] is not None:
                body[option] = wanted[option]
        if wanted["host_routes"] is not None:
            body["host_routes"] = [
                {"destination": d, "nexthop": n} for d, n in _routes(wanted["host_routes"])
            ]
        if wanted["allocation_pools"]:
            body["allocation_pools"] = [
                {"start": s, "end": e} for s, e in _pools(wanted["allocation_pools"])
            ]
        return body

    # -- the router ----------------------------------------------------------------------------

    def find_router(self) -> dict | None:
        name = self.params["router"]["name"]
        found = self.listing(
            "routers", {"name": name, **self.mine()}, f"list the routers named '{name}'"
        )
        return self.only(
            "router",
            name,
            found,
            "in the project",
            "delete or rename the extra ones (`openstack router delete ID`, "
            "`openstack router set --name NEW ID`)",
        )

    def external_network(self) -> dict | None:
        wanted = self.params["router"]["external_network"]
        if not wanted:
            return None
        networks = self.listing(
            "networks",
            {"router:external": "true"},
            f"look up external network '{wanted}'",
        )
        by_id = [n for n in networks if n.get("id") == wanted]
        if by_id:
            return by_id[0]
        found = self.only(
            "external network",
            wanted,
            networks,
            "",
            "give the id of the one to use as router.external_network",
        )
        if found is None:
            known = sorted(str(n.get("name") or n.get("id")) for n in networks)
            self.fail_json(
                msg=f"external network '{wanted}' not found in the network service at {self.url} "
                f"(neither a name nor an id of a network with router:external this user sees; "
                f"those are: {', '.join(known) or 'none'}); fix router.external_network, or ask "
                "an administrator to create it (`openstack network create --external`)"
            )
        return found

    def gateway_change(self, router: dict, external: dict | None) -> dict | None:
        """The ``external_gateway_info`` to set, or None when it is right."""
        if external is None:
            return None
        snat = self.params["router"]["enable_snat"]
        current = router.get("external_gateway_info") or {}
        if current.get("network_id") == external["id"] and (
            snat is None or current.get("enable_snat") == snat
        ):
            return None
        info: dict = {"network_id": external["id"]}
        if snat is not None:
            info["enable_snat"] = snat
        return info

    def interfaces(self, router: dict | None) -> set:
        """The ids of the subnets the router has an interface on."""
        if router is None:
            return set()
        ports = self.listing(
            "ports",
            {"device_id": router["id"], "device_owner": ROUTER_INTERFACE},
            f"list the interfaces of router '{router['name']}'",
        )
        return {ip.get("subnet_id") for port in ports for ip in port.get("fixed_ips") or []}

    # -- the states ----------------------------------------------------------------------------

    def present(self, network: dict | None) -> None:
        name = self.params["name"]
        wanted_subnets = self.params["subnets"] or []
        # Read and check everything first, so that a task the module refuses changes nothing.
        changes = self.network_changes(network) if network is not None else {}
        existing = self.subnets_of(network)
        pairs = []
        for wanted in wanted_subnets:
            subnet = self.only(
                "subnet",
                wanted["name"],
                existing,
                f"on network '{name}'",
                "delete or rename the extra ones (`openstack subnet delete ID`, "
                "`openstack subnet set --name NEW ID`)",
            )
            pairs.append((wanted, subnet, self.subnet_changes(wanted, subnet) if subnet else None))
        router_options = self.params["router"]
        router = external = None
        if router_options:
            router = self.find_router()
            external = self.external_network()

        if network is None:
            network = self.create_network()
        elif changes:
            network = self.update_network(network, changes)

        subnets = []
        for wanted, subnet, subnet_changes in pairs:
            label = f"subnet '{wanted['name']}'"
            if subnet is None:
                self.did(f"create {label} ({wanted['cidr']})")
                if not self.check_mode:
                    subnet = self.session.call(
                        "POST",
                        f"{self.url}/subnets",
                        {"subnet": self.subnet_body(wanted, network["id"])},
                        what=f"create {label} ({wanted['cidr']}) on network '{name}'",
                    ).body["subnet"]
            elif subnet_changes:
                fields = ", ".join(sorted(subnet_changes))
                self.did(f"update {label}: {fields}")
                if not self.check_mode:
                    subnet = self.session.call(
                        "PUT",
                        f"{self.url}/subnets/{subnet['id']}",
                        {"subnet": subnet_changes},
                        what=f"update {label} ({subnet['id']}) of network '{name}' ({fields})",
                    ).body["subnet"]
            subnets.append((wanted, subnet))

        if router_options:
            router = self.ensure_router(router, external, subnets)
        if network is not None and not self.check_mode:
            network = self.session.call(
                "GET", f"{self.url}/networks/{network['id']}", what=f"show network '{name}'"
            ).body["network"]
        result: dict = {
            "subnets": [subnet for _, subnet in subnets if subnet is not None],
            "router": router,
        }
        if network is not None:
            result.update(network=network, id=network["id"])
        self.finish(**result)

    def ensure_router(self, router: dict | None, external: dict | None, pairs: list) -> dict | None:
        """Create the router or set its gateway, then add the interfaces it lacks on ``pairs``
        ((wanted, subnet body or None in check mode))."""
        router_name = self.params["router"]["name"]
        label = f"router '{router_name}'"
        if router is None:
            body: dict = {"name": router_name}
            info = self.gateway_change({}, external)
            if info:
                body["external_gateway_info"] = info
            self.did(
                f"create {label}" + (f" with a gateway on '{external['name']}'" if info else "")
            )
            if not self.check_mode:
                router = self.session.call(
                    "POST", f"{self.url}/routers", {"router": body}, what=f"create {label}"
                ).body["router"]
        else:
            info = self.gateway_change(router, external)
            if info:
                self.did(f"set the gateway of {label} to '{external['name']}'")
                if not self.check_mode:
                    router = self.session.call(
                        "PUT",
                        f"{self.url}/routers/{router['id']}",
                        {"router": {"external_gateway_info": info}},
                        what=f"set the gateway of {label} ({router['id']}) to external "
                        f"network '{external['name']}' ({external['id']})",
                    ).body["router"]
        attached = self.interfaces(router) if router and router.get("id") else set()
        for wanted, subnet in pairs:
            if subnet is not None and subnet["id"] in attached:
                continue
            self.did(f"add an interface on subnet '{wanted['name']}' to {label}")
            if self.check_mode:
                continue
            self.session.call(
                "PUT",
                f"{self.url}/routers/{router['id']}/add_router_interface",
                {"subnet_id": subnet["id"]},
                what=f"add an interface on subnet '{wanted['name']}' ({subnet['id']}) to "
                f"{label} ({router['id']})",
            )
        if router is not None and not self.check_mode:
            router = self.session.call(
                "GET", f"{self.url}/routers/{router['id']}", what=f"show {label}"
            ).body["router"]
        return router

    def absent(self, network: dict | None) -> None:
        if network is None:
            self.finish()
        name = self.params["name"]
        net_id = network["id"]
        ports = self.listing(
            "ports", {"network_id": net_id}, f"list the ports of network '{name}' ({net_id})"
        )
        blocking = [p for p in ports if p.get("device_owner") not in (ROUTER_INTERFACE, DHCP)]
        if blocking:
            described = "; ".join(
                f"port {p['id']} ({p.get('device_owner') or 'no owner'}"
                + (f", device {p['device_id']}" if p.get("device_id") else "")
                + ")"
                for p in sorted(blocking, key=lambda p: p["id"])
            )
            self.fail_json(
                msg=f"network '{name}' ({net_id}) cannot be deleted: {len(blocking)} port(s) "
                f"of servers or other devices are on it: {described}; delete those servers or "
                "ports first (`openstack server delete`, `openstack port delete`), then run the "
                "task again",
                ports=sorted(p["id"] for p in blocking),
            )
        for port in sorted(
            (p for p in ports if p.get("device_owner") == ROUTER_INTERFACE),
            key=lambda p: p["id"],
        ):
            router_id = port.get("device_id")
            self.did(f"remove interface {port['id']} from router {router_id}")
            if not self.check_mode:
                self.session.call(
                    "PUT",
                    f"{self.url}/routers/{router_id}/remove_router_interface",
                    {"port_id": port["id"]},
                    what=f"remove the interface {port['id']} of network '{name}' from router "
                    f"{router_id}",
                    allow=(404,),
                )
        for subnet in self.subnets_of(network):
            self.did(f"delete subnet '{subnet.get('name')}' ({subnet['cidr']})")
            if not self.check_mode:
                self.session.call(
                    "DELETE",
                    f"{self.url}/subnets/{subnet['id']}",
                    what=f"delete subnet '{subnet.get('name')}' ({subnet['id']}) of network "
                    f"'{name}'",
                    allow=(404,),
                )
        self.did(f"delete network '{name}'")
        if not self.check_mode:
            self.session.call(
                "DELETE",
                f"{self.url}/networks/{net_id}",
                what=f"delete network '{name}' ({net_id})",
                allow=(404,),
            )
        self.finish(id=net_id)

    def run(self) -> None:
        self.check_options()
        self.url = versioned_url(self.session.endpoint("network"), "v2.0")
        network = self.find_network()
        if self.params["state"] == "absent":
            self.absent(network)
        self.present(network)


def _is_network_address(cidr: str) -> bool:
    try:
        ipaddress.ip_network(cidr, strict=True)
    except ValueError:
        return False
    return True


def main() -> None:
    NetworkModule()()


if __name__ == "__main__":
    main()
