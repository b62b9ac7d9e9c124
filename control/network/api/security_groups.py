"""Security groups and rules: ``/v2.0/security-groups``, ``/v2.0/security-group-rules``.

Every project has exactly one ``default`` group, made on first use (listing or creating groups,
creating a network or a port) in a transaction of its own; the ``default_security_groups``
primary key makes concurrent first requests agree on one group. Its rules are Neutron's: egress
IPv4 and IPv6 to anywhere, ingress IPv4 and IPv6 from members of the group itself. Other new
groups get the two egress rules. Rules name their remote by ``remote_ip_prefix`` or
``remote_group_id``; protocols by name or number; the same rule twice is 409
``SecurityGroupRuleExists``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import time
import uuid
from typing import Any

from flask import Blueprint, Response
from sqlalchemy import exc, select
from sqlalchemy.orm import Session

from control.common import db, errors, validation
from control.common.app import no_content
from control.network import models, quota, render
from control.network.api import common
from control.network.api.common import (
    Listing,
    conflict,
    enforce,
    not_found,
    respond,
)
from control.network.protocols import ICMP_PROTOCOLS, PORT_PROTOCOLS, PROTOCOLS

LOG = logging.getLogger("cirrus.network")

bp = Blueprint("network_security_groups", __name__)


GROUP_CREATE = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 255},
        "description": {"type": "string", "maxLength": 255},
        "project_id": validation.ID,
        "tenant_id": validation.ID,
        "stateful": {"const": True},
    },
    "additionalProperties": False,
}
GROUP_UPDATE = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 255},
        "description": {"type": "string", "maxLength": 255},
    },
    "additionalProperties": False,
}
RULE_CREATE = {
    "type": "object",
    "properties": {
        "security_group_id": validation.ID,
        "direction": {"enum": ["ingress", "egress"]},
        "ethertype": {"enum": ["IPv4", "IPv6"]},
        "protocol": {"type": ["string", "integer", "null"]},
        "port_range_min": {"type": ["integer", "null"], "minimum": 0, "maximum": 65535},
        "port_range_max": {"type": ["integer", "null"], "minimum": 0, "maximum": 65535},
        "remote_ip_prefix": {"type": ["string", "null"], "maxLength": 64},
        "remote_group_id": validation.NULLABLE_ID,
        "remote_address_group_id": {"type": "null"},
        "description": {"type": ["string", "null"], "maxLength": 255},
        "project_id": validation.ID,
        "tenant_id": validation.ID,
    },
    "required": ["security_group_id", "direction"],
    "additionalProperties": False,
}

GROUP_LISTING = Listing(
    "security_groups",
    models.SecurityGroup,
    {
        "id": models.SecurityGroup.id,
        "name": models.SecurityGroup.name,
        "description": models.SecurityGroup.description,
        "project_id": models.SecurityGroup.project_id,
        "tenant_id": models.SecurityGroup.project_id,
        "revision_number": models.SecurityGroup.revision_number,
        "created_at": models.SecurityGroup.created_at,
        "updated_at": models.SecurityGroup.updated_at,
    },
    integers=frozenset({"revision_number"}),
)
RULE_LISTING = Listing(
    "security_group_rules",
    models.SecurityGroupRule,
    {
        "id": models.SecurityGroupRule.id,
        "security_group_id": models.SecurityGroupRule.security_group_id,
        "direction": models.SecurityGroupRule.direction,
        "ethertype": models.SecurityGroupRule.ethertype,
        "protocol": models.SecurityGroupRule.protocol,
        "port_range_min": models.SecurityGroupRule.port_range_min,
        "port_range_max": models.SecurityGroupRule.port_range_max,
        "remote_ip_prefix": models.SecurityGroupRule.remote_ip_prefix,
        "remote_group_id": models.SecurityGroupRule.remote_group_id,
        "description": models.SecurityGroupRule.description,
        "project_id": models.SecurityGroupRule.project_id,
        "tenant_id": models.SecurityGroupRule.project_id,
        "revision_number": models.SecurityGroupRule.revision_number,
        "created_at": models.SecurityGroupRule.created_at,
        "updated_at": models.SecurityGroupRule.updated_at,
    },
    integers=frozenset({"port_range_min", "port_range_max", "revision_number"}),
)


def target(group: models.SecurityGroup) -> dict[str, Any]:
    return {"project_id": group.project_id, "tenant_id": group.project_id}


def group_not_found(group_id: str) -> errors.NotFound:
    return not_found(f"Security group {group_id} does not exist", "SecurityGroupNotFound")


def find_group(group_id: str, lock: bool = False) -> models.SecurityGroup:
    group = db.session().get(models.SecurityGroup, group_id, with_for_update=lock or None)
    if group is None or not (common.is_admin() or group.project_id == common.project_id()):
        raise group_not_found(group_id)
    return group


# -- rules ---------------------------------------------------------------------------------------


def protocol_number(protocol: str | None) -> int | None:
    if protocol is None:
        return None
    if protocol.isdigit():
        return int(protocol)
    return PROTOCOLS[protocol]


def fingerprint(
    direction: str,
    ethertype: str,
    protocol: str | None,
    port_min: int | None,
    port_max: int | None,
    remote_ip_prefix: str | None,
    remote_group_id: str | None,
) -> str:
    """What makes two rules the same (protocol by number; ``/0`` prefixes are no prefix)."""
    prefix = remote_ip_prefix
    if prefix is not None and ipaddress.ip_network(prefix).prefixlen == 0:
        prefix = None
    parts = [direction, ethertype, protocol_number(protocol), port_min, port_max, prefix]
    parts.append(remote_group_id)
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def new_rule(
    group: models.SecurityGroup,
    direction: str,
    ethertype: str,
    protocol: str | None = None,
    port_min: int | None = None,
    port_max: int | None = None,
    remote_ip_prefix: str | None = None,
    remote_group_id: str | None = None,
    description: str = "",
) -> models.SecurityGroupRule:
    return models.SecurityGroupRule(
        id=str(uuid.uuid4()),
        project_id=group.project_id,
        security_group_id=group.id,
        direction=direction,
        ethertype=ethertype,
        protocol=protocol,
        port_range_min=port_min,
        port_range_max=port_max,
        remote_ip_prefix=remote_ip_prefix,
        remote_group_id=remote_group_id,
        description=description,
        fingerprint=fingerprint(
            direction, ethertype, protocol, port_min, port_max, remote_ip_prefix, remote_group_id
        ),
    )


def _normalise_protocol(raw: Any, ethertype: str) -> str | None:
    if raw is None:
        return None
    value = str(raw).strip().lower()
    if value in ("", "any"):
        return None
    if value.isdigit():
        if not 0 <= int(value) <= 255:
            raise common.bad_request(
                f"Security group rule protocol {raw} not supported. Only protocol values "
                f"{sorted(PROTOCOLS)} and integer representations [0 to 255] are supported.",
                "SecurityGroupRuleInvalidProtocol",
            )
        return value
    if value not in PROTOCOLS:
        raise common.bad_request(
            f"Security group rule protocol {raw} not supported. Only protocol values "
            f"{sorted(PROTOCOLS)} and integer representations [0 to 255] are supported.",
            "SecurityGroupRuleInvalidProtocol",
        )
    if ethertype == "IPv4" and PROTOCOLS[value] == 58:
        raise common.bad_request(
            f"Protocol {value} is not supported for ethertype IPv4.",
            "SecurityGroupEthertypeConflictWithProtocol",
        )
    return value


def _check_ports(protocol: str | None, port_min: int | None, port_max: int | None) -> None:
    if port_min is None and port_max is None:
        return
    number = protocol_number(protocol)
    if number is None:
        raise common.bad_request(
            "Must also specify protocol if port range is given.",
            "SecurityGroupProtocolRequiredWithPorts",
        )
    if number in PORT_PROTOCOLS:
        if port_min is None or port_max is None or port_min > port_max:
            raise common.bad_request(
                "For TCP/UDP protocols, port_range_min must be <= port_range_max",
                "SecurityGroupInvalidPortRange",
            )
        if port_min == 0:
            raise common.bad_request(
                f"Invalid value for port {port_min}", "SecurityGroupInvalidPortValue"
            )
    elif number in ICMP_PROTOCOLS:
        for field, bound, value in (("type", "min", port_min), ("code", "max", port_max)):
            if value is not None and value > 255:
                raise common.bad_request(
                    f"Invalid value for ICMP {field} (port-range-{bound}): {value}.",
                    "SecurityGroupInvalidIcmpValue",
                )
        if port_min is None and port_max is not None:
            raise common.bad_request(
                f"ICMP code (port-range-max) {port_max} is provided but ICMP type "
                "(port-range-min) is missing.",
                "SecurityGroupMissingIcmpType",
            )
    else:
        raise common.bad_request(
            f"Invalid protocol {protocol} for port range, only supported for TCP, UDP, "
            "UDPLITE, SCTP and DCCP.",
            "SecurityGroupInvalidProtocolForPort",
        )


def _prefix(raw: str | None, ethertype: str) -> str | None:
    if raw is None:
        return None
    try:
        prefix = ipaddress.ip_network(raw, strict=False)
    except ValueError:
        raise common.bad_request(
            f"Invalid input for remote_ip_prefix. Reason: '{raw}' is not a valid IP subnet."
        ) from None
    if f"IPv{prefix.version}" != ethertype:
        raise common.bad_request(
            f"Conflicting value ethertype {ethertype} for CIDR {raw}",
            "SecurityGroupRuleParameterConflict",
        )
    return str(prefix)


def _add_rule(sess: Session, rule: models.SecurityGroupRule) -> None:
    try:
        with sess.begin_nested():
            sess.add(rule)
    except exc.IntegrityError:
        existing = sess.scalars(
            select(models.SecurityGroupRule.id).where(
                models.SecurityGroupRule.security_group_id == rule.security_group_id,
                models.SecurityGroupRule.fingerprint == rule.fingerprint,
            )
        ).first()
        raise conflict(
            f"Security group rule already exists. Rule id is {existing}.",
            "SecurityGroupRuleExists",
        ) from None


# -- the default group ---------------------------------------------------------------------------


def _default_rules(group: models.SecurityGroup) -> list[models.SecurityGroupRule]:
    return [
        new_rule(group, "egress", "IPv4"),
        new_rule(group, "egress", "IPv6"),
        new_rule(group, "ingress", "IPv4", remote_group_id=group.id),
        new_rule(group, "ingress", "IPv6", remote_group_id=group.id),
    ]


def _default_id(sess: Session, project_id: str) -> str | None:
    row = sess.get(models.DefaultSecurityGroup, project_id)
    return row.security_group_id if row is not None else None


def ensure_default(project_id: str) -> str:
    """The id of ``project_id``'s default group, made now if it has none (race-safe).

    It works in a transaction of its own; the request's session, if clean, is ended so that
    its next read sees the group (InnoDB snapshots are per transaction)."""
    found = _ensure_default(project_id)
    request_session = db.session()
    if not (request_session.new or request_session.dirty or request_session.deleted):
        request_session.rollback()
    return found


def _ensure_default(project_id: str) -> str:
    database = db.database()
    for attempt in range(10):
        try:
            with database.transaction() as sess:
                found = _default_id(sess, project_id)
                if found:
                    return found
                group = models.SecurityGroup(
                    id=str(uuid.uuid4()),
                    project_id=project_id,
                    name="default",
                    description="Default security group",
                )
                sess.add(group)
                sess.flush()
                sess.add(
                    models.DefaultSecurityGroup(project_id=project_id, security_group_id=group.id)
                )
                sess.flush()
                sess.add_all(_default_rules(group))
            return group.id
        except (exc.IntegrityError, exc.OperationalError) as error:
            # Another request made it first (duplicate key) or the two deadlocked: read again.
            LOG.debug("default security group of %s: retry %d (%s)", project_id, attempt, error)
            time.sleep(0.01 * attempt)
    raise errors.ServiceUnavailable("Could not create the default security group; try again.")


# -- endpoints -----------------------------------------------------------------------------------


@bp.get("/v2.0/security-groups")
def list_groups() -> Response:
    ensure_default(common.project_id())
    query = select(models.SecurityGroup)
    if not common.is_admin():
        query = query.where(models.SecurityGroup.project_id == common.project_id())
    return common.list_response(GROUP_LISTING, query, render.security_group)


@bp.get("/v2.0/security-groups/<group_id>")
def show_group(group_id: str) -> Response:
    group = find_group(group_id)
    enforce("get_security_group", target(group))
    return respond({"security_group": common.only_fields(render.security_group(group))})


@bp.post("/v2.0/security-groups")
def create_group() -> Response:
    body = common.resource_body("security_group", GROUP_CREATE)
    project = body.get("project_id") or body.get("tenant_id") or common.project_id()
    enforce("create_security_group", {"project_id": project})
    ensure_default(project)
    if body.get("name") == "default":
        raise conflict(
            "Default security group already exists.", "SecurityGroupDefaultAlreadyExists"
        )
    sess = db.session()
    quota.check(
        sess,
        project,
        common.settings().quota_defaults,
        {"security_group": 1, "security_group_rule": 2},
    )
    group = models.SecurityGroup(
        id=str(uuid.uuid4()),
        project_id=project,
        name=body.get("name", ""),
        description=body.get("description", ""),
    )
    sess.add(group)
    sess.flush()
    sess.add_all([new_rule(group, "egress", "IPv4"), new_rule(group, "egress", "IPv6")])
    db.commit()
    sess.refresh(group)
    return respond({"security_group": render.security_group(group)}, 201)


@bp.put("/v2.0/security-groups/<group_id>")
def update_group(group_id: str) -> Response:
    body = common.resource_body("security_group", GROUP_UPDATE)
    sess = db.session()
    group = find_group(group_id, lock=True)
    enforce("update_security_group", target(group))
    is_default = _default_id(sess, group.project_id) == group.id
    if is_default and body.get("name", "default") != "default":
        raise conflict(
            "Updating default security group not allowed.", "SecurityGroupCannotUpdateDefault"
        )
    if not is_default and body.get("name") == "default":
        raise conflict(
            "Default security group already exists.", "SecurityGroupDefaultAlreadyExists"
        )
    for key in ("name", "description"):
        if key in body:
            setattr(group, key, body[key])
    group.touch()
    db.commit()
    return respond({"security_group": render.security_group(group)})


@bp.delete("/v2.0/security-groups/<group_id>")
def delete_group(group_id: str) -> Response:
    sess = db.session()
    group = find_group(group_id, lock=True)
    enforce("delete_security_group", target(group))
    if _default_id(sess, group.project_id) == group.id and not common.is_admin():
        raise conflict(
            "Insufficient rights for removing default security group.",
            "SecurityGroupCannotRemoveDefault",
        )
    in_use = sess.scalars(
        select(models.PortSecurityGroup.port_id).where(
            models.PortSecurityGroup.security_group_id == group.id
        )
    ).first()
    if in_use is not None:
        raise conflict(f"Security Group {group.id} in use.", "SecurityGroupInUse")
    sess.delete(group)
    db.commit()
    common.notify("security_group_update", security_group_ids=[group_id])
    return no_content()


@bp.get("/v2.0/security-group-rules")
def list_rules() -> Response:
    query = select(models.SecurityGroupRule)
    if not common.is_admin():
        query = query.where(models.SecurityGroupRule.project_id == common.project_id())
    return common.list_response(RULE_LISTING, query, render.security_group_rule)


def find_rule(rule_id: str) -> models.SecurityGroupRule:
    rule = db.session().get(models.SecurityGroupRule, rule_id)
    if rule is None or not (common.is_admin() or rule.project_id == common.project_id()):
        raise not_found(
            f"Security group rule {rule_id} does not exist", "SecurityGroupRuleNotFound"
        )
    return rule


@bp.get("/v2.0/security-group-rules/<rule_id>")
def show_rule(rule_id: str) -> Response:
    rule = find_rule(rule_id)
    enforce("get_security_group_rule", {"project_id": rule.project_id})
    return respond({"security_group_rule": common.only_fields(render.security_group_rule(rule))})


@bp.post("/v2.0/security-group-rules")
def create_rule() -> Response:
    body = common.resource_body("security_group_rule", RULE_CREATE)
    sess = db.session()
    group = find_group(body["security_group_id"], lock=True)
    enforce("create_security_group_rule", target(group))
    ethertype = body.get("ethertype", "IPv4")
    protocol = _normalise_protocol(body.get("protocol"), ethertype)
    port_min, port_max = body.get("port_range_min"), body.get("port_range_max")
    if port_min is not None and port_max is None and protocol_number(protocol) in PORT_PROTOCOLS:
        port_max = port_min
    _check_ports(protocol, port_min, port_max)
    remote_group_id = body.get("remote_group_id")
    if body.get("remote_ip_prefix") is not None and remote_group_id is not None:
        raise common.bad_request(
            "Only remote_ip_prefix or remote_group_id may be provided.",
            "SecurityGroupRemoteGroupAndRemoteIpPrefix",
        )
    prefix = _prefix(body.get("remote_ip_prefix"), ethertype)
    if remote_group_id is not None:
        find_group(remote_group_id)
    quota.check(
        sess, group.project_id, common.settings().quota_defaults, {"security_group_rule": 1}
    )
    rule = new_rule(
        group,
        body["direction"],
        ethertype,
        protocol,
        port_min,
        port_max,
        prefix,
        remote_group_id,
        body.get("description") or "",
    )
    _add_rule(sess, rule)
    group.touch()
    db.commit()
    common.notify("security_group_update", security_group_ids=[group.id])
    return respond({"security_group_rule": render.security_group_rule(rule)}, 201)


@bp.delete("/v2.0/security-group-rules/<rule_id>")
def delete_rule(rule_id: str) -> Response:
    sess = db.session()
    rule = find_rule(rule_id)
    enforce("delete_security_group_rule", {"project_id": rule.project_id})
    group_id = rule.security_group_id
    sess.delete(rule)
    group = sess.get(models.SecurityGroup, group_id)
    if group is not None:
        group.touch()
    db.commit()
    common.notify("security_group_update", security_group_ids=[group_id])
    return no_content()
