"""Networks: ``/v2.0/networks``. Tenant networks are VXLAN with a VNI taken from
``[network] vni_ranges``; admins may create ``flat`` and ``vlan`` provider networks (and VXLAN ones
with a chosen VNI), ``shared`` and ``router:external`` networks."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, Response
from sqlalchemy import exc, or_, select
from sqlalchemy.orm import Session

from control.common import db, errors, validation
from control.common.app import no_content
from control.network import models, quota, render
from control.network.api import common
from control.network.api.common import (
    Listing,
    conflict,
    enforce,
    enforce_attributes,
    hide_attributes,
    not_found,
    respond,
)

bp = Blueprint("network_networks", __name__)

NETWORK_TYPES = ("flat", "vlan", "vxlan")
VXLAN_OVERHEAD = 50
MAX_VNI = 2**24 - 1
PROVIDER = ("provider:network_type", "provider:physical_network", "provider:segmentation_id")

_COMMON = {
    "name": {"type": "string", "maxLength": 255},
    "description": {"type": "string", "maxLength": 255},
    "admin_state_up": validation.BOOLEAN,
    "shared": validation.BOOLEAN,
    "router:external": validation.BOOLEAN,
    "port_security_enabled": validation.BOOLEAN,
    "mtu": {"type": "integer", "minimum": 68},
}
CREATE = {
    "type": "object",
    "properties": {
        **_COMMON,
        "project_id": validation.ID,
        "tenant_id": validation.ID,
        "provider:network_type": {"type": "string", "maxLength": 32},
        "provider:physical_network": {"type": ["string", "null"], "maxLength": 64},
        "provider:segmentation_id": {"type": ["integer", "null"], "minimum": 1},
        "availability_zone_hints": {"type": "array", "maxItems": 0},
    },
    "additionalProperties": False,
}
UPDATE = {"type": "object", "properties": _COMMON, "additionalProperties": False}

# The value an attribute has when not given: its policy is checked only when it differs.
DEFAULTS = {"shared": False, "router:external": False}

LISTING = Listing(
    "networks",
    models.Network,
    {
        "id": models.Network.id,
        "name": models.Network.name,
        "description": models.Network.description,
        "status": models.Network.status,
        "admin_state_up": models.Network.admin_state_up,
        "shared": models.Network.shared,
        "router:external": models.Network.router_external,
        "mtu": models.Network.mtu,
        "port_security_enabled": models.Network.port_security_enabled,
        "project_id": models.Network.project_id,
        "tenant_id": models.Network.project_id,
        "provider:network_type": models.Network.network_type,
        "provider:physical_network": models.Network.physical_network,
        "provider:segmentation_id": models.Network.segmentation_id,
        "revision_number": models.Network.revision_number,
        "created_at": models.Network.created_at,
        "updated_at": models.Network.updated_at,
    },
    booleans=frozenset({"admin_state_up", "shared", "router:external", "port_security_enabled"}),
    integers=frozenset({"mtu", "provider:segmentation_id", "revision_number"}),
)


# -- lookups other families use ------------------------------------------------------------------


def target(net: models.Network) -> dict[str, Any]:
    return {
        "project_id": net.project_id,
        "tenant_id": net.project_id,
        "network_project_id": net.project_id,
        "shared": net.shared,
        "router_external": net.router_external,
    }


def visible_clause() -> Any:
    """What a caller sees: everything for admins; else its own, shared and external networks."""
    if common.is_admin():
        return True
    return or_(
        models.Network.project_id == common.project_id(),
        models.Network.shared.is_(True),
        models.Network.router_external.is_(True),
    )


def network_not_found(network_id: str) -> errors.NotFound:
    return not_found(f"Network {network_id} could not be found.", "NetworkNotFound")


def find_network(network_id: str, lock: bool = False) -> models.Network:
    net = db.session().get(models.Network, network_id, with_for_update=lock or None)
    if net is None or not (
        common.is_admin()
        or net.project_id == common.project_id()
        or net.shared
        or net.router_external
    ):
        raise network_not_found(network_id)
    return net


def show_body(net: models.Network) -> dict[str, Any]:
    body = render.network(net)
    hide_attributes("network", body, target(net))
    return body


# -- segments ------------------------------------------------------------------------------------


def parse_vni_ranges(values: list[str]) -> list[tuple[int, int]]:
    """``["1:1000", "5000:5100"]`` -> ranges; a bad one raises ValueError naming it."""
    ranges = []
    for value in values:
        low, sep, high = value.partition(":")
        if not sep or not low.strip().isdigit() or not high.strip().isdigit():
            raise ValueError(f"VNI range {value!r} is not <min>:<max>")
        first, last = int(low), int(high)
        if not 1 <= first <= last <= MAX_VNI:
            raise ValueError(f"VNI range {value!r} is outside 1:{MAX_VNI} or reversed")
        ranges.append((first, last))
    return ranges


def _free_vni(sess: Session) -> int:
    used = set(
        sess.scalars(
            select(models.Network.segmentation_id).where(models.Network.network_type == "vxlan")
        )
    )
    for first, last in common.settings().vni_ranges:
        for vni in range(first, last + 1):
            if vni not in used:
                return vni
    error = errors.ServiceUnavailable(
        "Unable to create the network. No tenant network is available for allocation.",
        error_type="NoNetworkAvailable",
    )
    raise error


def segment_key(network_type: str, physnet: str | None, seg_id: int | None) -> str:
    if network_type == "vxlan":
        return f"vxlan:{seg_id}"
    if network_type == "vlan":
        return f"vlan:{physnet}:{seg_id}"
    return f"flat:{physnet}"


def _segment_in_use(network_type: str, physnet: str | None, seg_id: int | None) -> errors.Conflict:
    if network_type == "vxlan":
        return conflict(
            f"Unable to create the network. The tunnel ID {seg_id} is in use.", "TunnelIdInUse"
        )
    if network_type == "vlan":
        return conflict(
            f"Unable to create the network. The VLAN {seg_id} on physical network {physnet} "
            "is in use.",
            "VlanIdInUse",
        )
    return conflict(
        f"Unable to create the flat network. Physical network {physnet} is in use.",
        "FlatNetworkInUse",
    )


def _provider(body: dict[str, Any]) -> tuple[str, str | None, int | None]:
    """Validate the provider attributes an admin gave."""
    network_type = body.get("provider:network_type") or "vxlan"
    physnet = body.get("provider:physical_network")
    seg_id = body.get("provider:segmentation_id")
    if network_type not in NETWORK_TYPES:
        raise common.invalid(f"network_type value '{network_type}' not supported")
    known = common.settings().physical_networks
    if network_type == "vxlan":
        if physnet:
            raise common.invalid("provider:physical_network specified for VXLAN network")
        if seg_id is not None and seg_id > MAX_VNI:
            raise common.invalid(f"segmentation_id out of range (1 through {MAX_VNI})")
        return network_type, None, seg_id
    if not physnet:
        raise common.invalid(
            f"provider:physical_network required for {network_type} provider network"
        )
    if known and physnet not in known:
        raise common.invalid(
            f"physical_network '{physnet}' unknown for {network_type} provider network"
        )
    if network_type == "flat":
        if seg_id is not None:
            raise common.invalid("provider:segmentation_id specified for flat provider network")
        return network_type, physnet, None
    if seg_id is None or not 1 <= seg_id <= 4094:
        raise common.invalid("provider:segmentation_id out of range (1 through 4094)")
    return network_type, physnet, seg_id


def _default_mtu(network_type: str) -> int:
    physnet_mtu = common.settings().global_physnet_mtu
    return physnet_mtu - VXLAN_OVERHEAD if network_type == "vxlan" else physnet_mtu


# -- endpoints -----------------------------------------------------------------------------------


@bp.get("/v2.0/networks")
def list_networks() -> Response:
    query = select(models.Network).where(visible_clause())
    return common.list_response(LISTING, query, show_body)


@bp.get("/v2.0/networks/<network_id>")
def show_network(network_id: str) -> Response:
    net = find_network(network_id)
    enforce("get_network", target(net))
    return respond({"network": common.only_fields(show_body(net))})


@bp.post("/v2.0/networks")
def create_network() -> Response:
    body = common.resource_body("network", CREATE)
    project = body.get("project_id") or body.get("tenant_id") or common.project_id()
    given = [k for k in body if body[k] != DEFAULTS.get(k, object())]
    enforce_attributes(
        "create", "network", given, {"project_id": project, "network_project_id": project}
    )
    network_type, physnet, seg_id = _provider(body)
    mtu = _default_mtu(network_type)
    if body.get("mtu") is not None:
        if body["mtu"] > mtu:
            raise common.invalid(f"Requested MTU is too big, maximum is {mtu}")
        mtu = body["mtu"]
    sess = db.session()
    quota.check(sess, project, common.settings().quota_defaults, {"network": 1})
    net_id = str(uuid.uuid4())
    for _attempt in range(10):
        vni = seg_id if network_type != "vxlan" or seg_id is not None else _free_vni(sess)
        net = models.Network(
            id=net_id,
            project_id=project,
            name=body.get("name", ""),
            description=body.get("description", ""),
            admin_state_up=body.get("admin_state_up", True),
            shared=body.get("shared", False),
            router_external=body.get("router:external", False),
            port_security_enabled=body.get("port_security_enabled", True),
            mtu=mtu,
            network_type=network_type,
            physical_network=physnet,
            segmentation_id=vni,
            segment_key=segment_key(network_type, physnet, vni),
        )
        try:
            with sess.begin_nested():
                sess.add(net)
        except exc.IntegrityError:
            if network_type == "vxlan" and seg_id is None:
                continue  # another request took this VNI: take the next free one
            raise _segment_in_use(network_type, physnet, vni) from None
        break
    else:
        raise errors.ServiceUnavailable("Unable to allocate a VNI; try again.")
    db.commit()
    if not body.get("shared") and project:
        from control.network.api import security_groups

        security_groups.ensure_default(project)
    return respond({"network": show_body(net)}, 201)


@bp.put("/v2.0/networks/<network_id>")
def update_network(network_id: str) -> Response:
    body = common.resource_body("network", UPDATE)
    sess = db.session()
    net = find_network(network_id, lock=True)
    changed = [k for k in body if body[k] != _current(net, k)]
    enforce_attributes("update", "network", changed, target(net))
    if "mtu" in body and body["mtu"] > _default_mtu(net.network_type):
        raise common.invalid(
            f"Requested MTU is too big, maximum is {_default_mtu(net.network_type)}"
        )
    if body.get("shared") is False and net.shared:
        others = sess.scalars(
            select(models.Port.id).where(
                models.Port.network_id == net.id, models.Port.project_id != net.project_id
            )
        ).first()
        if others is not None:
            raise conflict(
                f"Unable to reconfigure sharing settings for network {net.id}. Multiple "
                "tenants are using it.",
                "InvalidSharedSetting",
            )
    for key, column in (
        ("name", "name"),
        ("description", "description"),
        ("admin_state_up", "admin_state_up"),
        ("shared", "shared"),
        ("router:external", "router_external"),
        ("port_security_enabled", "port_security_enabled"),
        ("mtu", "mtu"),
    ):
        if key in body:
            setattr(net, column, body[key])
    net.touch()
    db.commit()
    return respond({"network": show_body(net)})


def _current(net: models.Network, key: str) -> Any:
    return render.network(net).get(key)


@bp.delete("/v2.0/networks/<network_id>")
def delete_network(network_id: str) -> Response:
    sess = db.session()
    net = find_network(network_id, lock=True)
    enforce("delete_network", target(net))
    ports = list(sess.scalars(select(models.Port).where(models.Port.network_id == net.id)))
    if any(port.device_owner != models.DEVICE_OWNER_DHCP for port in ports):
        raise conflict(
            f"Unable to complete operation on network {net.id}. There are one or more ports "
            "still in use on the network.",
            "NetworkInUse",
        )
    for port in ports:
        sess.delete(port)
    sess.flush()
    for subnet in list(net.subnets):
        sess.delete(subnet)
    sess.flush()
    sess.delete(net)
    db.commit()
    common.notify("network_delete", network_id=network_id)
    return no_content()
