"""What the network blueprints share: settings, Neutron's errors, request bodies, policy on
attributes, and the list machinery every collection uses (filters, ``fields``, sorting,
``limit``/``marker`` pagination with ``<collection>_links``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Response, current_app, g, request
from sqlalchemy import Select, false, or_
from sqlalchemy.orm import InstrumentedAttribute

from control.common import db, errors, paging, policy, validation
from control.common.app import context
from control.common.app import is_admin as is_admin
from control.common.app import project_id as project_id
from control.common.app import respond as respond
from control.network import ipam


@dataclass
class NetworkSettings:
    """The ``[network]`` and ``[quota]`` sections of network.conf, read once."""

    vni_ranges: list[tuple[int, int]]
    physical_networks: list[str]
    global_physnet_mtu: int
    quota_defaults: dict[str, int]
    limit_max: int = 1000
    agent_down_time: int = 75
    notifier: Any = None  # control.network.rpc.AgentNotifier
    extra: dict[str, Any] = field(default_factory=dict)


def settings() -> NetworkSettings:
    found: NetworkSettings = current_app.extensions["cirrus.network"]
    return found


def sees_all_ports() -> bool:
    """Admins, and services (role ``service``: compute binding the ports it made for a server
    of any project), see every port."""
    return is_admin() or policy.allowed("service_role")


def notify(method: str, **kwargs: Any) -> None:
    """Tell the agents (fanout) after a commit; never fails the request."""
    notifier = settings().notifier
    if notifier is not None:
        notifier.publish(context(), method, **kwargs)


# -- errors --------------------------------------------------------------------------------------


def bad_request(message: str, kind: str = "HTTPBadRequest") -> errors.BadRequest:
    return errors.BadRequest(message, error_type=kind)


def invalid(message: str) -> errors.BadRequest:
    return errors.BadRequest(f"Invalid input for operation: {message}", error_type="InvalidInput")


def conflict(message: str, kind: str) -> errors.Conflict:
    return errors.Conflict(message, error_type=kind)


def not_found(message: str, kind: str) -> errors.NotFound:
    return errors.NotFound(message, error_type=kind)


def ipam_error(exc: ipam.IpamError) -> errors.APIError:
    error = errors.APIError(exc.message, error_type=exc.kind)
    error.code = exc.code
    error.title = "Conflict" if exc.code == 409 else "Bad Request"
    return error


# -- bodies and policy ---------------------------------------------------------------------------


def resource_body(resource: str, schema: dict[str, Any]) -> dict[str, Any]:
    """``{"<resource>": {...}}`` validated against ``schema`` (the inner object's)."""
    body = validation.json_body()
    if not isinstance(body, dict) or not isinstance(body.get(resource), dict):
        raise bad_request(f"Unable to find '{resource}' in request body")
    outer = {
        "type": "object",
        "properties": {resource: schema},
        "required": [resource],
    }
    validation.validate(outer, body)
    inner: dict[str, Any] = body[resource]
    return inner


def enforce(rule: str, target: Mapping[str, Any]) -> None:
    """Allow under ``rule`` or answer 403 as Neutron (``PolicyNotAuthorized``)."""
    if not policy.allowed(rule, target):
        raise errors.Forbidden(
            f"rule:{rule} is disallowed by policy", error_type="PolicyNotAuthorized"
        )


def enforce_attributes(
    action: str, resource: str, attributes: Iterable[str], target: Mapping[str, Any]
) -> None:
    """Enforce ``<action>_<resource>`` and every ``<action>_<resource>:<attribute>`` rule that
    exists for the attributes given."""
    enforce(f"{action}_{resource}", target)
    rules: Mapping[str, Any] = current_app.extensions["cirrus.policy"].rules
    for name in attributes:
        rule = f"{action}_{resource}:{name}"
        if rule in rules:
            enforce(rule, target)


def _attribute_rules(resource: str) -> list[tuple[str, str]]:
    """The ``(rule, attribute)`` of every ``get_<resource>:<attribute>`` rule, found once per
    request (a list renders many bodies)."""
    found: dict[str, list[tuple[str, str]]] = g.setdefault("cirrus_attribute_rules", {})
    if resource not in found:
        rules: Mapping[str, Any] = current_app.extensions["cirrus.policy"].rules
        prefix = f"get_{resource}:"
        found[resource] = [(rule, rule[len(prefix) :]) for rule in rules if rule.startswith(prefix)]
    return found[resource]


def hide_attributes(resource: str, body: dict[str, Any], target: Mapping[str, Any]) -> None:
    """Remove the attributes the caller may not see (``get_<resource>:<attribute>`` rules)."""
    cache: dict[str, bool] = g.setdefault("cirrus_visible_attributes", {})
    for rule, attribute in _attribute_rules(resource):
        if attribute not in body:
            continue
        key = f"{rule}|{target.get('project_id')}|{target.get('network_project_id')}"
        if key not in cache:
            cache[key] = policy.allowed(rule, target)
        if not cache[key]:
            del body[attribute]


def only_fields(body: dict[str, Any]) -> dict[str, Any]:
    wanted = [name for value in request.args.getlist("fields") for name in value.split(",")]
    wanted = [name for name in wanted if name]
    if not wanted:
        return body
    return {name: body[name] for name in wanted if name in body}


# -- lists ---------------------------------------------------------------------------------------


def parse_bool(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise bad_request(f"Invalid input for {name}. Reason: '{value}' is not a valid boolean value.")


def parse_int(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise bad_request(
            f"Invalid input for {name}. Reason: '{value}' is not an integer."
        ) from None


_NOT_FILTERS = {"fields", "sort_key", "sort_dir", "limit", "marker", "page_reverse"}

Filter = Callable[[Select[Any], list[str]], Select[Any]]


@dataclass
class Listing:
    """How one collection is listed: its attributes that are columns (filters and sort keys),
    their types, and filters that need more than a column."""

    collection: str
    model: Any
    columns: dict[str, InstrumentedAttribute[Any]]
    booleans: frozenset[str] = frozenset()
    integers: frozenset[str] = frozenset()
    special: dict[str, Filter] = field(default_factory=dict)

    def convert(self, name: str, value: str) -> Any:
        if name in self.booleans:
            return parse_bool(value, name)
        if name in self.integers:
            return None if value in ("", "None", "null") else parse_int(value, name)
        return value

    def filtered(self, query: Select[Any]) -> Select[Any]:
        for name in request.args:
            if name in _NOT_FILTERS:
                continue
            values = request.args.getlist(name)
            if name in self.special:
                query = self.special[name](query, values)
            elif name in ("tags", "tags-any"):
                query = query.where(false())  # nothing is tagged
            elif name in self.columns:
                column = self.columns[name]
                converted = [self.convert(name, value) for value in values]
                if None in converted:
                    query = query.where(
                        or_(column.is_(None), column.in_([v for v in converted if v is not None]))
                    )
                else:
                    query = query.where(column.in_(converted))
            # Unknown filters are ignored, as Neutron without filter validation does.
        return query

    def sort_keys(self) -> paging.Order:
        keys = request.args.getlist("sort_key")
        dirs = request.args.getlist("sort_dir")
        if dirs and len(dirs) != len(keys):
            raise bad_request("The number of sort_keys and sort_dirs must be same")
        order: paging.Order = []
        for index, key in enumerate(keys):
            if key not in self.columns:
                raise bad_request(f"{key} is invalid attribute for sort_key")
            direction = dirs[index].lower() if dirs else "asc"
            if direction not in ("asc", "desc"):
                raise bad_request(f"{dirs[index]} is invalid value for sort_dir")
            order.append((self.columns[key], direction == "asc"))
        id_column = self.columns["id"]
        if all(column is not id_column for column, _ in order):
            order.append((id_column, True))
        return order


def list_response(
    listing: Listing,
    query: Select[Any],
    render: Callable[[Any], dict[str, Any]],
    prefetch: Callable[[list[Any]], None] | None = None,
) -> Response:
    """Answer ``{"<collection>": [...], "<collection>_links": [...]}`` for ``query`` (already
    restricted to what the caller may see).

    ``prefetch``, when given, is called once with the rows of the page before any is rendered:
    it loads what rendering them needs in one query per kind rather than one per row.
    """
    query = listing.filtered(query)
    order = listing.sort_keys()
    sess = db.session()
    marker_id = request.args.get("marker")
    if marker_id:
        marker = sess.get(listing.model, marker_id)
        if marker is None:
            raise bad_request(f"Marker {marker_id} could not be found.")
        query = query.where(paging.after_marker(marker, order))
    query = query.order_by(*(column.asc() if asc else column.desc() for column, asc in order))
    limit: int | None = None
    raw_limit = request.args.get("limit")
    if raw_limit not in (None, ""):
        limit = parse_int(raw_limit, "limit")
        if limit < 0:
            raise bad_request(f"Limit must be an integer 0 or greater and not '{raw_limit}'")
        limit = min(limit, settings().limit_max) if limit else settings().limit_max
    else:
        limit = settings().limit_max
    rows = list(sess.scalars(query.limit(limit + 1)).unique())
    more = len(rows) > limit
    rows = rows[:limit]
    if prefetch is not None and rows:
        prefetch(rows)
    items = [only_fields(render(row)) for row in rows]
    body: dict[str, Any] = {listing.collection: items}
    if more and raw_limit not in (None, ""):
        body[f"{listing.collection}_links"] = paging.next_link(rows[-1].id)
    return respond(body)
