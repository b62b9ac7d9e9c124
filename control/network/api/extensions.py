"""``GET /v2.0/extensions`` and ``/v2.0/extensions/<alias>``: the Neutron extensions this API
really implements, under Neutron's aliases (clients probe them with ``find_extension``)."""

from __future__ import annotations

from flask import Blueprint, Response

from control.network.api.common import not_found, respond

bp = Blueprint("network_extensions", __name__)

UPDATED = "2024-01-01T00:00:00-00:00"

# alias -> (name, description)
EXTENSIONS: dict[str, tuple[str, str]] = {
    "agent": ("agent", "The agent management extension."),
    "allowed-address-pairs": ("Allowed Address Pairs", "Provides allowed address pairs"),
    "binding": ("Port Binding", "Expose port bindings of a virtual port to external application"),
    "external-net": (
        "Neutron external network",
        "Adds external network attribute to network resource.",
    ),
    "ext-gw-mode": (
        "Neutron L3 Configurable external gateway mode",
        "Extension of the router abstraction for specifying whether SNAT should occur on the "
        "external gateway",
    ),
    "fields": ("Fields", "Allows selecting the attributes returned with fields="),
    "net-mtu": ("Network MTU", "Provides MTU attribute for a network resource."),
    "pagination": ("Pagination support", "Extension that indicates that pagination is enabled."),
    "port-security": ("Port Security", "Provides port security"),
    "project-id": (
        "project_id field enabled",
        "Extension that indicates that project_id field is enabled.",
    ),
    "provider": ("Provider Network", "Expose mapping of virtual networks to physical networks"),
    "quotas": ("Quota management support", "Expose functions for quotas management per project"),
    "quota_details": (
        "Quota details management support",
        "Expose functions for quotas usage statistics per project",
    ),
    "router": (
        "Neutron L3 Router",
        "Router abstraction for basic L3 forwarding between L2 Neutron networks and access to "
        "external networks via a NAT gateway.",
    ),
    "security-group": ("security-group", "The security groups extension."),
    "sorting": ("Sorting support", "Extension that indicates that sorting is enabled."),
    "standard-attr-description": (
        "standard-attr-description",
        "Extension to add descriptions to standard attributes",
    ),
    "standard-attr-revisions": (
        "Resource revision numbers",
        "This extension will display the revision number of neutron resources.",
    ),
    "standard-attr-timestamp": (
        "Resource timestamps",
        "Adds created_at and updated_at fields to all Neutron resources that have Neutron "
        "standard attributes.",
    ),
}


def _body(alias: str) -> dict[str, object]:
    name, description = EXTENSIONS[alias]
    return {
        "alias": alias,
        "name": name,
        "description": description,
        "updated": UPDATED,
        "links": [],
    }


@bp.get("/v2.0/extensions")
def list_extensions() -> Response:
    return respond({"extensions": [_body(alias) for alias in sorted(EXTENSIONS)]})


@bp.get("/v2.0/extensions/<alias>")
def show_extension(alias: str) -> Response:
    if alias not in EXTENSIONS:
        raise not_found(f"Extension with alias {alias} does not exist", "ExtensionNotFound")
    return respond({"extension": _body(alias)})
