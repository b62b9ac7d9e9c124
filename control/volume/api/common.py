"""What the block storage blueprints share: settings, the project in the path, Cinder's errors,
request bodies, lookups, the sessions that lock, and the list machinery (filters, sorting,
``limit``/``marker`` pagination with ``<collection>_links``).
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, current_app, g, request
from sqlalchemy import Select, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from control.common import db, errors, paging, policy, validation
from control.common.app import context as context
from control.common.app import is_admin as is_admin
from control.common.app import project_id as project_id
from control.common.app import respond as respond
from control.volume import models, render


@dataclass
class VolumeSettings:
    """The ``[volume]`` and ``[quota]`` sections of volume.conf, read once."""

    quota_defaults: dict[str, int]
    default_availability_zone: str = "nova"
    default_volume_type: str = models.DEFAULT_TYPE_NAME
    service_down_time: float = 60.0
    max_over_subscription_ratio: float = 1.0
    image_api_url: str = ""
    auth_url: str = ""
    rpc_timeout: float = 60.0
    host: str = "localhost"
    limit_max: int = 1000
    agents: Any = None  # control.volume.agentapi.LazyAgentAPI (None: no [rpc] transport_url)
    extra: dict[str, Any] = field(default_factory=dict)


def settings() -> VolumeSettings:
    found: VolumeSettings = current_app.extensions["cirrus.volume"]
    return found


def agents() -> Any:
    """The :class:`~control.volume.agentapi.VolumeAgentAPI`; 503 without ``[rpc]``."""
    lazy = settings().agents
    if lazy is None:
        raise errors.ServiceUnavailable(
            "The volume service has no message broker configured ([rpc] transport_url)."
        )
    return lazy.get()


def project_blueprint(name: str) -> Blueprint:
    """A blueprint whose routes all start with ``/v3/<project_id>``: the project in the path must
    be the token's (admins may name any project), else 403."""
    bp = Blueprint(name, __name__, url_prefix="/v3/<project_id>")

    @bp.url_value_preprocessor
    def _pop_project(_endpoint: str | None, values: dict[str, Any] | None) -> None:
        g.path_project_id = (values or {}).pop("project_id", None)

    @bp.before_request
    def _check_project() -> None:
        wanted = g.get("path_project_id")
        if g.get("context") is None or wanted is None:
            return
        if wanted != project_id() and not is_admin():
            raise errors.Forbidden(
                f"The project {wanted} in the URL is not the project of the token "
                f"({project_id() or 'unscoped'})."
            )

    return bp


def base_url() -> str:
    return request.host_url.rstrip("/")


def enforce(rule: str, target: Mapping[str, Any] | None = None) -> None:
    if not policy.allowed(rule, target or {}):
        raise errors.Forbidden(f"Policy doesn't allow {rule} to be performed.")


def target(project: str | None = None) -> dict[str, Any]:
    return {"project_id": project if project is not None else project_id()}


def write_session() -> Session:
    """The request's session as READ COMMITTED: after a lock is taken, the counts and sums that
    follow see what the transactions before it committed. Call first in the view."""
    sess = db.session()
    sess.connection(execution_options={"isolation_level": "READ COMMITTED"})
    return sess


def body_of(key: str, schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    """``{"<key>": {...}}`` validated against ``schema`` (the inner object's)."""
    body = validation.json_body()
    if not isinstance(body, dict) or not isinstance(body.get(key), dict):
        raise errors.BadRequest(f"Missing required element '{key}' in request body.")
    validation.validate({"type": "object", "properties": {key: schema}, "required": [key]}, body)
    inner: dict[str, Any] = body[key]
    return inner


def parse_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in ("true", "1", "yes", "on", "t", "y"):
        return True
    if lowered in ("false", "0", "no", "off", "f", "n"):
        return False
    raise errors.BadRequest(f"Invalid value '{value}' for {name}: it must be a boolean.")


def parse_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise errors.BadRequest(f"Invalid input for field/attribute {name}: must be an integer.")
    try:
        return int(str(value).strip())
    except ValueError:
        raise errors.BadRequest(
            f"Invalid input for field/attribute {name}. Value: {value}. "
            f"'{value}' is not an integer."
        ) from None


def parse_dict_arg(value: str, name: str) -> dict[str, Any]:
    """A dict in a query string, as JSON or as a Python literal (cinderclient sends
    ``str(dict)``)."""
    for parse in (json.loads, ast.literal_eval):
        try:
            parsed = parse(value)
        except (ValueError, SyntaxError):
            continue
        if isinstance(parsed, dict):
            return parsed
    raise errors.BadRequest(f"Invalid filter {name}: '{value}' is not a dictionary.")


def metadata_value(value: Any, name: str = "metadata") -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.BadRequest(f"Invalid input for field/attribute {name}: must be an object.")
    for key, item in value.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 255:
            raise errors.BadRequest(
                f"Invalid input for field/attribute {name}: keys must be 1 to 255 characters."
            )
        if not isinstance(item, str) or len(item) > 255:
            raise errors.BadRequest(
                f"Invalid input for field/attribute {name}.{key}: values must be strings of "
                "at most 255 characters."
            )
    return dict(value)


# -- lookups -------------------------------------------------------------------------------------


def volume_not_found(volume_id: str) -> errors.NotFound:
    return errors.NotFound(f"Volume {volume_id} could not be found.")


def find_volume(volume_id: str, lock: bool = False) -> models.Volume:
    volume = db.session().get(models.Volume, volume_id, with_for_update=lock or None)
    if volume is None or not (is_admin() or volume.project_id == project_id()):
        raise volume_not_found(volume_id)
    return volume


def find_snapshot(snapshot_id: str, lock: bool = False) -> models.Snapshot:
    snap = db.session().get(models.Snapshot, snapshot_id, with_for_update=lock or None)
    if snap is None or not (is_admin() or snap.project_id == project_id()):
        raise errors.NotFound(f"Snapshot {snapshot_id} could not be found.")
    return snap


def find_type(name_or_id: str) -> models.VolumeType:
    sess = db.session()
    found = sess.get(models.VolumeType, name_or_id)
    if found is None:
        found = sess.scalars(
            select(models.VolumeType).where(models.VolumeType.name == name_or_id)
        ).first()
    if found is None:
        raise errors.NotFound(f"Volume type with name {name_or_id} could not be found.")
    return found


def volume_body(volume: models.Volume) -> dict[str, Any]:
    show_host = g.get("cirrus_show_host")
    if show_host is None:
        show_host = policy.allowed(
            "volume_extension:volume_host_attribute", target(volume.project_id)
        )
        g.cirrus_show_host = show_host
    backend = None
    if show_host and volume.host:
        backends: dict[str, str] = g.setdefault("cirrus_backends", {})
        if volume.host not in backends:
            backends[volume.host] = (
                db.session().scalar(
                    select(models.Service.backend_name).where(
                        models.Service.host == volume.host,
                        models.Service.binary == "cinder-volume",
                    )
                )
                or "file"
            )
        backend = backends[volume.host]
    return render.volume(volume, base_url(), show_host=show_host, backend_name=backend)


def update_names(item: models.Volume | models.Snapshot, body: dict[str, Any], key: str) -> None:
    """Apply an update body's ``name`` and ``description`` (or their ``display_`` aliases) to
    ``item``; 400 when the body under ``key`` is empty."""
    if not body:
        raise errors.BadRequest(f"Missing request body: nothing to update in '{key}'.")
    for name, alias in (("name", "display_name"), ("description", "display_description")):
        for field_name in (name, alias):
            if field_name in body:
                setattr(item, name, body[field_name])


def volume_status_error(volume: models.Volume, action: str, allowed: str) -> errors.BadRequest:
    return errors.BadRequest(
        f"Invalid volume: Volume {volume.id} status must be {allowed} to {action}, "
        f"but current status is: {volume.status}."
    )


# -- lists ---------------------------------------------------------------------------------------

Filter = Callable[[Select[Any], str], Select[Any]]

_NOT_FILTERS = {
    "limit",
    "marker",
    "sort",
    "sort_key",
    "sort_dir",
    "offset",
    "all_tenants",
    "with_count",
}


@dataclass
class Listing:
    collection: str
    model: Any
    columns: dict[str, InstrumentedAttribute[Any]]
    special: dict[str, Filter] = field(default_factory=dict)

    def filtered(self, query: Select[Any]) -> Select[Any]:
        for name, value in request.args.items():
            if name in _NOT_FILTERS:
                continue
            if name in self.special:
                query = self.special[name](query, value)
            elif name in self.columns:
                query = query.where(self.columns[name] == value)
            # Unknown filters are ignored, as Cinder before filter validation.
        return query

    def sort_keys(self) -> paging.Order:
        pairs: list[tuple[str, str]] = []
        if request.args.get("sort"):
            for item in request.args["sort"].split(","):
                key, _, direction = item.strip().partition(":")
                pairs.append((key.strip(), (direction or "desc").strip().lower()))
        else:
            keys = [k for v in request.args.getlist("sort_key") for k in v.split(",")]
            dirs = [d for v in request.args.getlist("sort_dir") for d in v.split(",")]
            for index, key in enumerate(keys):
                pairs.append((key, (dirs[index] if index < len(dirs) else "desc").lower()))
        order: paging.Order = []
        for key, direction in pairs:
            if key not in self.columns:
                raise errors.BadRequest(f"Invalid sort key: {key}.")
            if direction not in ("asc", "desc"):
                raise errors.BadRequest(f"Invalid sort direction: {direction}.")
            order.append((self.columns[key], direction == "asc"))
        if not order:
            order.append((self.columns["created_at"], False))
        id_column = self.columns["id"]
        if all(column is not id_column for column, _ in order):
            order.append((id_column, order[-1][1]))
        return order


def list_response(
    listing: Listing,
    query: Select[Any],
    render_item: Callable[[Any], dict[str, Any]],
    find_marker: Callable[[str], Any],
) -> Response:
    query = listing.filtered(query)
    order = listing.sort_keys()
    sess = db.session()
    marker_id = request.args.get("marker")
    if marker_id:
        try:
            marker = find_marker(marker_id)
        except errors.NotFound:
            raise errors.BadRequest(f"Marker {marker_id} could not be found.") from None
        query = query.where(paging.after_marker(marker, order))
    query = query.order_by(*(column.asc() if asc else column.desc() for column, asc in order))
    raw_limit = request.args.get("limit")
    limit = settings().limit_max
    if raw_limit not in (None, ""):
        limit = parse_int(raw_limit, "limit")
        if limit < 0:
            raise errors.BadRequest(f"Invalid limit: {raw_limit} must be 0 or greater.")
        limit = min(limit, settings().limit_max)
    offset = request.args.get("offset")
    if offset:
        query = query.offset(parse_int(offset, "offset"))
    rows = list(sess.scalars(query.limit(limit + 1)).unique())
    more = len(rows) > limit
    rows = rows[:limit]
    body: dict[str, Any] = {listing.collection: [render_item(row) for row in rows]}
    if more and rows:
        body[f"{listing.collection}_links"] = paging.next_link(rows[-1].id)
    return respond(body)


def all_tenants() -> bool:
    """Whether an admin asked for every project's resources (``all_tenants``)."""
    value = request.args.get("all_tenants")
    if value is None:
        return False
    return is_admin() and (value == "" or parse_bool(value, "all_tenants"))


def visible(query: Select[Any], model: Any) -> Select[Any]:
    """Restrict to the caller's project unless an admin asked for ``all_tenants`` (an admin may
    also filter with ``project_id``)."""
    if all_tenants():
        wanted = request.args.get("project_id")
        return query.where(model.project_id == wanted) if wanted else query
    return query.where(model.project_id == project_id())
