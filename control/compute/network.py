"""compute-api's client of the network API (Nova's ``nova/network/neutron.py``, cut to size).

What it does, in the order of a boot:

1. :func:`prepare` reads ``networks`` (and ``security_groups``) of ``POST /servers`` and
   validates them up front with the user's token against the network endpoint of the user's
   catalog (type ``network``; ``[network] api_url`` overrides it): an unknown network or port is
   a 400, a port in use a 409. No network service in the catalog: servers boot without NIC.
2. :func:`allocate` (after the scheduler chose the host) creates a port per requested network
   with the user's token (``device_id`` = the server, ``device_owner`` = ``compute:<zone>``),
   takes over ports the user gave, and binds every port to the host (``binding:host_id``) with
   the compute service user's token (``[keystone_authtoken]``, as Nova's ``[neutron]`` service
   auth; ``binding:*`` is for admins and services only). A failure releases what it made and
   raises :class:`AllocationFailed`, whose message names the network or port.
3. The ports are cached on the instance (``network_info``, Nova's info cache) as VIF dicts; the
   server's ``addresses`` are rendered from the cache, never from the network API.
4. :func:`deallocate` (server delete): ports compute created are deleted, ports the user gave
   are only unbound (``device_id``, ``device_owner`` and ``binding:host_id`` cleared), as Nova's
   ``preserve_on_delete``.

A VIF (one cached port)::

    {"id", "network_id", "network_name", "mac_address", "mtu",
     "fixed_ips": [{"ip_address", "subnet_id", "version"}], "security_groups": [ids],
     "preserve_on_delete": bool}
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Any

from flask import current_app, request

from control.common import catalog, errors
from control.common.service_client import ServiceAPIError, ServiceClient
from control.compute.api import common
from control.network import naming

LOG = logging.getLogger("cirrus.compute.network")

TIMEOUT = 30.0


class NetworkAPIError(ServiceAPIError):
    """The network API answered with an error (``status``) or not at all (``status`` 0)."""


class AllocationFailed(Exception):
    """Ports could not be made or bound; everything made was released."""

    def __init__(self, message: str, details: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class Client(ServiceClient):
    """The network API at ``url`` with one token."""

    service = "the network service"
    prefix = "/v2.0"
    timeout = TIMEOUT
    error = NetworkAPIError


# -- endpoints and clients -----------------------------------------------------------------------


def _user_token() -> str:
    return request.headers.get("X-Auth-Token", "")


def endpoint() -> str | None:
    """The network API's URL, ``None`` when the catalog has no network service."""
    settings = common.settings()
    if settings.network_api_url:
        return settings.network_api_url.rstrip("/")
    try:
        return catalog.public_endpoint(settings.auth_url, _user_token(), "network")
    except catalog.EndpointNotFound:
        return None
    except catalog.CatalogError as exc:
        raise errors.ServiceUnavailable(f"Cannot find the network service: {exc}") from None


def user_client(url: str | None = None) -> Client | None:
    """A client with the caller's token; ``None`` without a network service."""
    url = url or endpoint()
    return Client(url, _user_token()) if url else None


def service_client(url: str) -> Client:
    """A client with compute's own service token (``[keystone_authtoken]``): binding ports."""
    return Client(url, current_app.extensions["cirrus.auth"].service_token())


# -- the request ---------------------------------------------------------------------------------


@dataclass
class Requested:
    """One NIC asked for: a network (optionally with a fixed IP) or an existing port."""

    network_id: str = ""
    port_id: str = ""
    fixed_ip: str = ""
    network: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    """The validated NICs of a create request, allocated per server by :func:`allocate`."""

    url: str
    nics: list[Requested]
    security_group_ids: list[str] | None = None


def parse(value: Any) -> list[Requested] | str | None:
    """``networks`` of the request: ``None`` (absent), ``"auto"``, ``"none"`` or NIC requests."""
    if value is None:
        return None
    if isinstance(value, str):
        if value in ("auto", "none"):
            return value
        raise errors.BadRequest(
            f"Invalid input for field 'networks': {value!r} is not 'auto', 'none' or a list."
        )
    nics: list[Requested] = []
    ports: set[str] = set()
    for item in value:
        if not isinstance(item, dict):
            raise errors.BadRequest("Invalid input for field 'networks': entries are objects.")
        unknown = set(item) - {"uuid", "port", "fixed_ip", "tag"}
        if unknown:
            raise errors.BadRequest(
                f"Invalid input for field 'networks': unknown keys {sorted(unknown)}."
            )
        port = item.get("port")
        net = item.get("uuid")
        fixed_ip = item.get("fixed_ip")
        if port:
            if not isinstance(port, str) or not common.is_uuid(port):
                raise errors.BadRequest(f"Bad networks format: port uuid ({port}) is invalid.")
            if port in ports:
                raise errors.BadRequest(f"Port {port} is requested more than once.")
            ports.add(port)
            nics.append(Requested(port_id=port))
            continue
        if not net or not isinstance(net, str) or not common.is_uuid(net):
            raise errors.BadRequest(f"Bad networks format: network uuid ({net}) is invalid.")
        if fixed_ip is not None:
            try:
                fixed_ip = str(ipaddress.ip_address(str(fixed_ip)))
            except ValueError:
                raise errors.BadRequest(f"Invalid fixed IP address ({fixed_ip})") from None
        nics.append(Requested(network_id=net, fixed_ip=fixed_ip or ""))
    return nics


def _available_networks(client: Client, project_id: str) -> list[dict[str, Any]]:
    """Nova's ``_get_available_networks``: the project's own networks and the shared ones,
    without external networks (they are for floating IPs, not for servers)."""
    own = client.call("GET", "/networks", params={"project_id": project_id, "shared": "False"})
    shared = client.call("GET", "/networks", params={"shared": "True"})
    found: dict[str, dict[str, Any]] = {}
    for net in [*own.get("networks", []), *shared.get("networks", [])]:
        if net.get("router:external"):
            continue
        found[net["id"]] = net
    return list(found.values())


def _security_groups(client: Client, names: list[str]) -> list[str] | None:
    """Ids of the requested groups (by name or id, the caller's own); ``None``: the default."""
    if not names or set(names) == {"default"}:
        return None
    groups = client.call("GET", "/security-groups").get("security_groups", [])
    ids: list[str] = []
    for name in names:
        matches = [g for g in groups if name in (g.get("id"), g.get("name"))]
        if not matches:
            raise errors.BadRequest(
                f"Security group {name} not found for project {common.project_id()}."
            )
        if len(matches) > 1:
            raise errors.Conflict(
                f"Multiple security groups named {name}: use the group's id instead."
            )
        if matches[0]["id"] not in ids:
            ids.append(matches[0]["id"])
    return ids


def prepare(networks: Any, security_groups: Any, count: int) -> Plan | None:
    """Validate the request's NICs (400/409 now, before anything is written); ``None``: the
    servers get no NIC."""
    requested = parse(networks)
    if requested == "none":
        return None
    url = endpoint()
    if url is None:
        if isinstance(requested, list) and requested:
            raise errors.BadRequest(
                "Networks cannot be requested: there is no network service in the catalog."
            )
        return None
    client = Client(url, _user_token())
    try:
        return _prepare(client, requested, security_groups, count)
    except NetworkAPIError as exc:
        raise errors.ServiceUnavailable(f"The network service failed: {exc.message}") from None


def _prepare(
    client: Client, requested: list[Requested] | str | None, security_groups: Any, count: int
) -> Plan | None:
    if not isinstance(requested, list):
        # Absent (base microversion) or "auto" (2.37): the only network the project can use.
        nets = _available_networks(client, common.project_id())
        if len(nets) > 1:
            raise errors.Conflict(
                "Multiple possible networks found, use a Network ID to be more specific."
            )
        if not nets:
            if requested == "auto":
                raise errors.BadRequest(
                    f"Unable to automatically allocate a network for project "
                    f"{common.project_id()}: it has no network and none is shared."
                )
            return None
        requested = [Requested(network_id=nets[0]["id"])]
    if not requested:
        return None
    for nic in requested:
        if nic.port_id:
            if count > 1:
                raise errors.BadRequest(
                    "Unable to launch multiple instances with a single configured port ID. "
                    "Please launch your instance one by one with different ports."
                )
            try:
                port = client.call("GET", f"/ports/{nic.port_id}")["port"]
            except NetworkAPIError as exc:
                if exc.status == 404:
                    raise errors.BadRequest(f"Port {nic.port_id} could not be found.") from None
                raise
            if port.get("device_id"):
                raise errors.Conflict(f"Port {nic.port_id} is still in use.")
            nic.network_id = port["network_id"]
        try:
            nic.network = client.call("GET", f"/networks/{nic.network_id}")["network"]
        except NetworkAPIError as exc:
            if exc.status == 404:
                raise errors.BadRequest(f"Network {nic.network_id} could not be found.") from None
            raise
        if not nic.port_id and not nic.network.get("subnets"):
            raise errors.BadRequest(
                f"Network {nic.network_id} requires a subnet in order to boot instances on."
            )
        if nic.fixed_ip:
            if count > 1:
                raise errors.BadRequest(
                    "Unable to launch multiple instances with a single fixed IP address."
                )
            used = client.call(
                "GET",
                "/ports",
                params=[
                    ("network_id", nic.network_id),
                    ("fixed_ips", f"ip_address={nic.fixed_ip}"),
                ],
            ).get("ports", [])
            if any(
                ip.get("ip_address") == nic.fixed_ip
                for port in used
                for ip in port.get("fixed_ips", [])
            ):
                raise errors.Conflict(
                    f"Fixed IP address {nic.fixed_ip} is already in use on network "
                    f"{nic.network_id}."
                )
    names = [
        str(g.get("name")) for g in security_groups or [] if isinstance(g, dict) and g.get("name")
    ]
    return Plan(client.url, requested, _security_groups(client, names))


# -- allocation ----------------------------------------------------------------------------------


def _vif(port: dict[str, Any], network: dict[str, Any], preserve: bool) -> dict[str, Any]:
    fixed_ips = []
    for ip in port.get("fixed_ips") or []:
        address = str(ip.get("ip_address", ""))
        try:
            version = ipaddress.ip_address(address).version
        except ValueError:
            continue
        fixed_ips.append(
            {"ip_address": address, "subnet_id": ip.get("subnet_id"), "version": version}
        )
    return {
        "id": port["id"],
        "network_id": port["network_id"],
        "network_name": network.get("name") or port["network_id"],
        "mac_address": port.get("mac_address"),
        "mtu": int(network.get("mtu") or 1500),
        "fixed_ips": fixed_ips,
        "security_groups": list(port.get("security_groups") or []),
        "preserve_on_delete": preserve,
    }


def allocate(plan: Plan, instance_uuid: str, zone: str, host: str) -> list[dict[str, Any]]:
    """Make (or take over) and bind the server's ports; its VIFs. On failure everything done
    is undone and :class:`AllocationFailed` names the network or port."""
    user = Client(plan.url, _user_token())
    service = service_client(plan.url)
    owner = f"compute:{zone}"
    vifs: list[dict[str, Any]] = []
    made: list[str] = []
    taken: list[str] = []
    for nic in plan.nics:
        what = f"port {nic.port_id}" if nic.port_id else f"network {nic.network_id}"
        try:
            update: dict[str, Any] = {"binding:host_id": host}
            if nic.port_id:
                port_id = nic.port_id
                update.update({"device_id": instance_uuid, "device_owner": owner})
                taken.append(port_id)
            else:
                body: dict[str, Any] = {
                    "network_id": nic.network_id,
                    "device_id": instance_uuid,
                    "device_owner": owner,
                    "admin_state_up": True,
                }
                if nic.fixed_ip:
                    body["fixed_ips"] = [{"ip_address": nic.fixed_ip}]
                if plan.security_group_ids is not None:
                    body["security_groups"] = plan.security_group_ids
                created = user.call("POST", "/ports", {"port": body}, expect=(201,))["port"]
                port_id = created["id"]
                made.append(port_id)
            try:
                port = service.call("PUT", f"/ports/{port_id}", {"port": update})["port"]
            except NetworkAPIError as exc:
                if exc.status in (403, 404):
                    exc.message = (
                        f"compute's service user may not bind port {port_id} ({exc.message}); "
                        "it needs the admin role"
                    )
                raise
        except (NetworkAPIError, errors.APIError) as exc:
            reason = exc.message
            release(plan.url, made, taken)
            raise AllocationFailed(
                f"Failed to allocate the network(s) for {what}: {reason}"[:255], str(reason)
            ) from None
        vifs.append(_vif(port, nic.network, preserve=bool(nic.port_id)))
    return vifs


def release(url: str, made: list[str], taken: list[str]) -> None:
    """Delete the ports compute ``made``, unbind those it ``taken`` over; never raises."""
    user = Client(url, _user_token())
    for port_id in made:
        try:
            user.call("DELETE", f"/ports/{port_id}", expect=(204, 404))
        except NetworkAPIError as exc:
            LOG.warning("could not delete port %s: %s", port_id, exc.message)
    if not taken:
        return
    try:
        service = service_client(url)
    except errors.APIError as exc:
        LOG.warning("could not unbind ports %s: %s", taken, exc.message)
        return
    for port_id in taken:
        try:
            service.call(
                "PUT",
                f"/ports/{port_id}",
                {"port": {"device_id": "", "device_owner": "", "binding:host_id": ""}},
                expect=(200, 404),
            )
        except NetworkAPIError as exc:
            LOG.warning("could not unbind port %s: %s", port_id, exc.message)


def deallocate(vifs: list[dict[str, Any]]) -> None:
    """Release a server's cached ports (server delete). Failures are logged, never raised: the
    server goes away regardless, as in Nova."""
    if not vifs:
        return
    try:
        url = endpoint()
    except errors.APIError as exc:
        LOG.warning("ports %s left behind: %s", [v["id"] for v in vifs], exc.message)
        return
    if url is None:
        LOG.warning("ports %s left behind: no network service", [v["id"] for v in vifs])
        return
    release(
        url,
        [v["id"] for v in vifs if not v.get("preserve_on_delete")],
        [v["id"] for v in vifs if v.get("preserve_on_delete")],
    )


# -- rendering -----------------------------------------------------------------------------------


def interfaces(vifs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the compute agent plugs (``build_instance``'s ``interfaces``)."""
    return [
        {
            "port_id": v["id"],
            "network_id": v["network_id"],
            "mac_address": v["mac_address"],
            "mtu": v["mtu"],
            "bridge": naming.bridge(v["network_id"]),
            "tap": naming.tap(v["id"]),
            "fixed_ips": v["fixed_ips"],
        }
        for v in vifs
    ]


def addresses(vifs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The server body's ``addresses``: ``{network name: [{addr, version, OS-EXT-IPS:type,
    OS-EXT-IPS-MAC:mac_addr}]}``."""
    result: dict[str, list[dict[str, Any]]] = {}
    for vif in vifs:
        entries = result.setdefault(vif.get("network_name") or vif["network_id"], [])
        for ip in vif.get("fixed_ips") or []:
            entries.append(
                {
                    "addr": ip["ip_address"],
                    "version": ip["version"],
                    "OS-EXT-IPS:type": "fixed",
                    "OS-EXT-IPS-MAC:mac_addr": vif.get("mac_address"),
                }
            )
    return result


def interface_attachment(port: dict[str, Any]) -> dict[str, Any]:
    """A port as ``os-interface`` shows it."""
    return {
        "port_state": port.get("status"),
        "fixed_ips": [
            {"subnet_id": ip.get("subnet_id"), "ip_address": ip.get("ip_address")}
            for ip in port.get("fixed_ips") or []
        ],
        "port_id": port["id"],
        "net_id": port.get("network_id"),
        "mac_addr": port.get("mac_address"),
    }


def nova_security_group(group: dict[str, Any]) -> dict[str, Any]:
    """A network security group in Nova's proxy format (``os-security-groups``)."""
    rules = []
    for rule in group.get("security_group_rules") or []:
        if rule.get("direction") != "ingress":
            continue
        rules.append(
            {
                "id": rule.get("id"),
                "parent_group_id": group.get("id"),
                "ip_protocol": rule.get("protocol"),
                "from_port": rule.get("port_range_min"),
                "to_port": rule.get("port_range_max"),
                "ip_range": {"cidr": rule["remote_ip_prefix"]}
                if rule.get("remote_ip_prefix")
                else {},
                "group": {},
            }
        )
    return {
        "id": group.get("id"),
        "name": group.get("name"),
        "description": group.get("description") or "",
        "tenant_id": group.get("project_id") or group.get("tenant_id"),
        "rules": rules,
    }
