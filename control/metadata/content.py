"""What the metadata API answers, computed from one instance (Nova's ``nova/api/metadata/base.py``,
cut to what Cirrus stores).

:class:`Guest` is a snapshot of the instance row (and its key pair's type) taken by the view;
:func:`lookup` turns a request path into an :class:`Answer`, or raises :class:`NotFound`. Paths
are Nova's: ``/`` and ``/<ec2 version>/...`` (``/ec2/...`` too) for the EC2 format,
``/openstack`` and ``/openstack/<version>/<file>`` for the OpenStack format; ``latest`` names
the newest version of either, and versions gate what each answer holds, as in Nova.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from control.network import naming

LOG = logging.getLogger("cirrus.metadata")

# Nova's OpenStack format versions (nova/api/metadata/base.py), oldest first.
FOLSOM = "2012-08-10"
GRIZZLY = "2013-04-04"
HAVANA = "2013-10-17"
LIBERTY = "2015-10-15"
NEWTON_ONE = "2016-06-30"
NEWTON_TWO = "2016-10-06"
OCATA = "2017-02-22"
ROCKY = "2018-08-27"
OPENSTACK_VERSIONS = [FOLSOM, GRIZZLY, HAVANA, LIBERTY, NEWTON_ONE, NEWTON_TWO, OCATA, ROCKY]

# Nova's EC2 format versions, oldest first.
EC2_VERSIONS = [
    "1.0",
    "2007-01-19",
    "2007-03-01",
    "2007-08-29",
    "2007-10-10",
    "2007-12-15",
    "2008-02-01",
    "2008-09-01",
    "2009-04-04",
]

LATEST = "latest"
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
# Nova serves user data as text/plain too; it is the bytes given at create, whatever they are.
USER_DATA_TYPE = "text/plain"

MD_JSON = "meta_data.json"
USER_DATA = "user_data"
PASSWORD_FILE = "password"  # noqa: S105 - the file's name, no secret
VENDOR_DATA = "vendor_data.json"
VENDOR_DATA2 = "vendor_data2.json"
NETWORK_DATA = "network_data.json"

ROOT_DEVICE = "/dev/vda"


class NotFound(Exception):
    """No such path (or version) in the metadata of this instance."""


@dataclass
class Answer:
    body: bytes
    content_type: str


@dataclass
class Guest:
    """What the metadata of one instance is made from."""

    uuid: str
    name: str
    project_id: str
    availability_zone: str
    flavor_name: str
    image_ref: str
    address: str
    key_name: str | None = None
    key_data: str | None = None
    key_type: str = "ssh"
    user_data: bytes | None = None
    meta: dict[str, str] = field(default_factory=dict)
    vifs: list[dict[str, Any]] = field(default_factory=list)
    dhcp_domain: str = ""


def decode_user_data(value: str | None) -> bytes | None:
    """The user data as given at create: compute stores it base64-encoded, as the API takes it."""
    if value is None:
        return None
    try:
        return base64.b64decode(value)
    except (binascii.Error, ValueError):
        LOG.warning("user data is not valid base64: served as stored")
        return value.encode("utf-8")


def sanitize_hostname(name: str) -> str:
    """Nova's ``utils.sanitize_hostname``: a DNS label from a display name (maybe "")."""
    hostname = name.encode("latin-1", "ignore").decode("latin-1")[:63]
    hostname = re.sub(r"[ _\.]", "-", hostname)
    hostname = re.sub(r"[^\w.-]+", "", hostname)
    return hostname.lower().strip(".-")


def hostname(guest: Guest) -> str:
    """The instance's host name (Nova's default ``Server-<uuid>`` when its name gives none), with
    the DHCP domain when one is set."""
    host = sanitize_hostname(guest.name) or f"server-{guest.uuid}"
    return f"{host}.{guest.dhcp_domain}" if guest.dhcp_domain else host


def _ec2_number(uuid: str) -> int:
    return int(uuid.replace("-", "")[:8] or "0", 16)


def ec2_instance_id(uuid: str) -> str:
    """``i-%08x``. Nova numbers instances in a mapping table; Cirrus has no integer id, so the
    number is the first 32 bits of the uuid: stable for the instance's life and across services."""
    return f"i-{_ec2_number(uuid):08x}"


def ec2_image_id(image_ref: str) -> str:
    """``ami-%08x``, derived from the image id as :func:`ec2_instance_id` from the instance's."""
    try:
        return f"ami-{_ec2_number(image_ref):08x}"
    except ValueError:
        return "ami-00000000"


def reservation_id(uuid: str) -> str:
    """``r-`` and 8 characters. Nova stores one per create request; Cirrus derives it."""
    return "r-" + hashlib.sha256(uuid.encode("utf-8")).hexdigest()[:8]


def _first_ipv4(guest: Guest) -> str:
    for vif in guest.vifs:
        for ip in vif.get("fixed_ips") or []:
            if ip.get("version") == 4:
                return str(ip.get("ip_address", ""))
    return ""


# -- the EC2 format ------------------------------------------------------------------------------


def _since(versions: list[str], required: str, requested: str) -> bool:
    return versions.index(required) <= versions.index(requested)


def ec2_metadata(guest: Guest, version: str) -> dict[str, Any]:
    """Nova's ``get_ec2_metadata``: the tree under ``/<version>/``."""

    def since(required: str) -> bool:
        return _since(EC2_VERSIONS, required, version)

    host = hostname(guest)
    meta: dict[str, Any] = {
        "ami-id": ec2_image_id(guest.image_ref),
        "ami-launch-index": 0,
        "ami-manifest-path": "FIXME",
        "instance-id": ec2_instance_id(guest.uuid),
        "hostname": host,
        "local-ipv4": guest.address or _first_ipv4(guest),
        "reservation-id": reservation_id(guest.uuid),
        "security-groups": ["default"],
    }
    if guest.key_name:
        # Nova's odd rendering: public-keys/ lists "0=<name>", public-keys/0/ "openssh-key".
        meta["public-keys"] = {
            "0": {"_name": f"0={guest.key_name}", "openssh-key": guest.key_data or ""}
        }
    if since("2007-01-19"):
        meta["local-hostname"] = host
        meta["public-hostname"] = host
        meta["public-ipv4"] = ""
    if since("2007-08-29"):
        meta["instance-type"] = guest.flavor_name
    if since("2007-12-15"):
        meta["block-device-mapping"] = {"ami": posixpath.basename(ROOT_DEVICE), "root": ROOT_DEVICE}
    if since("2008-02-01"):
        meta["placement"] = {"availability-zone": guest.availability_zone}
    if since("2008-09-01"):
        meta["instance-action"] = "none"
    data: dict[str, Any] = {"meta-data": meta}
    if guest.user_data is not None:
        data["user-data"] = guest.user_data
    return data


def ec2_print(data: Any) -> bytes:
    """Nova's ``ec2_md_print``: a directory lists its keys (sub-directories with ``/``), a list
    its items, one a line; a value is itself."""
    if isinstance(data, dict):
        lines = []
        for key in sorted(data):
            if key == "_name":
                continue
            value = data[key]
            if isinstance(value, dict):
                lines.append(str(value["_name"]) if "_name" in value else f"{key}/")
            else:
                lines.append(key)
        return "\n".join(lines).encode("utf-8")
    if isinstance(data, list):
        return "\n".join(str(item) for item in data).encode("utf-8")
    if isinstance(data, bytes):
        return data
    return str(data).encode("utf-8")


def _find(data: Any, tokens: list[str]) -> Any:
    for token in tokens:
        if not isinstance(data, dict) or token not in data:
            raise NotFound("/".join(tokens))
        data = data[token]
    return data


# -- the OpenStack format ------------------------------------------------------------------------


def openstack_metadata(guest: Guest, version: str) -> dict[str, Any]:
    """Nova's ``meta_data.json`` (without ``files`` and ``dedicated_cpus``)."""

    def since(required: str) -> bool:
        return _since(OPENSTACK_VERSIONS, required, version)

    metadata: dict[str, Any] = {"uuid": guest.uuid, "meta": dict(guest.meta)}
    if guest.key_name:
        key_data = guest.key_data or ""
        metadata["public_keys"] = {guest.key_name: key_data}
        if since(LIBERTY):
            metadata["keys"] = [{"name": guest.key_name, "type": guest.key_type, "data": key_data}]
    metadata["hostname"] = hostname(guest)
    metadata["name"] = guest.name
    metadata["launch_index"] = 0
    metadata["availability_zone"] = guest.availability_zone
    if since(GRIZZLY):
        metadata["random_seed"] = base64.b64encode(os.urandom(512)).decode("ascii")
    if since(LIBERTY):
        metadata["project_id"] = guest.project_id
    if since(NEWTON_ONE):
        metadata["devices"] = []
    return metadata


def network_data(guest: Guest) -> dict[str, Any]:
    """Nova's ``network_data.json`` from the cached ports: a link per port and a DHCP network per
    address family on it (Cirrus's subnets are served by dnsmasq); no ports, empty lists."""
    links: list[dict[str, Any]] = []
    networks: list[dict[str, Any]] = []
    for vif in guest.vifs:
        port_id = str(vif.get("id", ""))
        link_id = naming.tap(port_id)
        links.append(
            {
                "id": link_id,
                "vif_id": port_id,
                "type": "bridge",
                "mtu": vif.get("mtu"),
                "ethernet_mac_address": vif.get("mac_address"),
            }
        )
        versions = sorted({int(ip.get("version", 4)) for ip in vif.get("fixed_ips") or []})
        for ip_version in versions:
            networks.append(
                {
                    "id": f"network{len(networks)}",
                    "type": f"ipv{ip_version}_dhcp",
                    "link": link_id,
                    "network_id": vif.get("network_id"),
                }
            )
    return {"links": links, "networks": networks, "services": []}


def _json(value: Any) -> Answer:
    return Answer(json.dumps(value).encode("utf-8"), JSON)


def _text(data: Any) -> Answer:
    return Answer(ec2_print(data), TEXT)


def openstack_files(guest: Guest, version: str) -> list[str]:
    """Nova's listing of ``/openstack/<version>/``: what the version has."""
    files = [MD_JSON]
    if guest.user_data is not None:
        files.append(USER_DATA)
    if _since(OPENSTACK_VERSIONS, GRIZZLY, version):
        files.append(PASSWORD_FILE)
    if _since(OPENSTACK_VERSIONS, HAVANA, version):
        files.append(VENDOR_DATA)
    if _since(OPENSTACK_VERSIONS, LIBERTY, version):
        files.append(NETWORK_DATA)
    if _since(OPENSTACK_VERSIONS, NEWTON_TWO, version):
        files.append(VENDOR_DATA2)
    return files


def openstack_version(token: str) -> str:
    version = OPENSTACK_VERSIONS[-1] if token == LATEST else token
    if version not in OPENSTACK_VERSIONS:
        raise NotFound(token)
    return version


def _openstack(guest: Guest, tokens: list[str]) -> Answer:
    if not tokens:
        return _text([*OPENSTACK_VERSIONS, LATEST])
    version = openstack_version(tokens[0])
    files = openstack_files(guest, version)
    if len(tokens) == 1:
        return _text(files)
    name = "/".join(tokens[1:])
    if name not in files:
        raise NotFound(name)
    if name == MD_JSON:
        return _json(openstack_metadata(guest, version))
    if name == USER_DATA:
        return Answer(guest.user_data or b"", USER_DATA_TYPE)
    if name == PASSWORD_FILE:
        return Answer(b"", TEXT)
    if name == NETWORK_DATA:
        return _json(network_data(guest))
    return _json({})  # vendor_data.json, vendor_data2.json: no vendor data providers


def _ec2(guest: Guest, tokens: list[str]) -> Answer:
    if not tokens:
        return _text([*EC2_VERSIONS, LATEST])
    version = EC2_VERSIONS[-1] if tokens[0] == LATEST else tokens[0]
    if version not in EC2_VERSIONS:
        raise NotFound(tokens[0])
    data = _find(ec2_metadata(guest, version), tokens[1:])
    if isinstance(data, bytes):
        return Answer(data, USER_DATA_TYPE)
    return _text(data)


def lookup(guest: Guest, path: str) -> Answer:
    """The answer to ``GET path`` (trailing slashes and ``.``/``..`` normalised, as Nova)."""
    tokens = [token for token in posixpath.normpath("/" + path).split("/") if token]
    if tokens and tokens[0] == "openstack":
        return _openstack(guest, tokens[1:])
    if tokens and tokens[0] == "ec2":
        tokens = tokens[1:]
    return _ec2(guest, tokens)
