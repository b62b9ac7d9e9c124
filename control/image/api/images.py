"""``/v2/images``: create, list, show, update (JSON patch) and delete image records.

Bodies are flat, as Glance's: the core attributes and the extra properties side by side. Extra
properties are strings; names Glance keeps for itself are refused (``location``, ``deleted``,
``deleted_at``, anything starting with ``os_glance``) and so are read-only attributes (``status``,
``size``, ``checksum``...), both with 403 as Glance answers.
"""

from __future__ import annotations

import re
import urllib.parse
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, request
from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.sql.elements import KeyedColumnElement

from control.common import db, errors, policy, validation
from control.common.app import no_content
from control.image import models, render
from control.image.api import common

bp = Blueprint("image_images", __name__, url_prefix="/v2")

# -- attributes ----------------------------------------------------------------------------------

#: Attributes a client may set, with their schema (extra properties: any string).
CORE_PROPERTIES: dict[str, Any] = {
    "name": {"type": ["null", "string"], "maxLength": 255},
    "visibility": {"type": "string", "enum": list(models.VISIBILITIES)},
    "protected": {"type": "boolean"},
    "os_hidden": {"type": "boolean"},
    "owner": {"type": ["null", "string"], "maxLength": 255},
    "container_format": {
        "type": ["null", "string"],
        "enum": [None, *models.CONTAINER_FORMATS],
    },
    "disk_format": {"type": ["null", "string"], "enum": [None, *models.DISK_FORMATS]},
    "min_ram": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
    "min_disk": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
    "tags": {
        "type": "array",
        "items": {"type": "string", "minLength": 1, "maxLength": 255},
    },
}
EXTRA_PROPERTY = {"type": "string", "maxLength": 65535}
#: Extra properties with a shape of their own (Glance's schema-image.json): the kernel and
#: ramdisk images of an AMI-style image are image ids.
SHAPED_EXTRA_PROPERTIES: dict[str, Any] = {
    "kernel_id": {"type": "string", "pattern": common.UUID_PATTERN},
    "ramdisk_id": {"type": "string", "pattern": common.UUID_PATTERN},
}

CREATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "pattern": common.UUID_PATTERN},
        **CORE_PROPERTIES,
        **SHAPED_EXTRA_PROPERTIES,
    },
    "additionalProperties": EXTRA_PROPERTY,
}
STATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {**CORE_PROPERTIES, **SHAPED_EXTRA_PROPERTIES},
    "additionalProperties": EXTRA_PROPERTY,
}

READ_ONLY = frozenset(
    {
        "id",
        "status",
        "size",
        "virtual_size",
        "checksum",
        "os_hash_algo",
        "os_hash_value",
        "created_at",
        "updated_at",
        "direct_url",
        "self",
        "file",
        "schema",
        "stores",
        "locations",
    }
)
RESERVED = frozenset({"location", "deleted", "deleted_at"})
RESERVED_PREFIX = "os_glance"

PATCH_TYPES = {
    "application/openstack-images-v2.0-json-patch": 4,
    "application/openstack-images-v2.1-json-patch": 10,
}
PATCH_OPS = ("add", "remove", "replace")

# -- listing -------------------------------------------------------------------------------------

SORT_KEYS = (
    "name",
    "status",
    "container_format",
    "disk_format",
    "size",
    "id",
    "created_at",
    "updated_at",
)
IN_FILTERS = ("id", "name", "status", "container_format", "disk_format")
LIST_PARAMS = frozenset(
    {
        "limit",
        "marker",
        "sort",
        "sort_key",
        "sort_dir",
        "member_status",
        "tag",
        "visibility",
        "owner",
        "size_min",
        "size_max",
        "protected",
        "os_hidden",
        "created_at",
        "updated_at",
        *IN_FILTERS,
    }
)
TIME_OPERATORS = ("gt", "gte", "lt", "lte", "eq", "neq")


def _check_attribute_names(names: list[str]) -> None:
    for name in names:
        if name in READ_ONLY:
            raise errors.Forbidden(f"Attribute '{name}' is read-only.")
        if name in RESERVED or name.startswith(RESERVED_PREFIX):
            raise errors.Forbidden(f"Attribute '{name}' is reserved.")
        if len(name) > 255:
            raise errors.BadRequest(
                f"Custom property {name[:40]}... should not be greater than 255 characters."
            )


def _check_quotas(properties: Mapping[str, str], tags: list[str]) -> None:
    limits = common.settings()
    if len(properties) > limits.max_properties:
        raise errors.PayloadTooLarge(
            f"An image may have at most {limits.max_properties} extra properties "
            f"(this one would have {len(properties)})."
        )
    if len(tags) > limits.max_tags:
        raise errors.PayloadTooLarge(
            f"An image may have at most {limits.max_tags} tags (this one would have {len(tags)})."
        )


def _check_visibility(new: str, old: str | None, target: dict[str, Any]) -> None:
    if new == old:
        return
    if new == "public":
        policy.enforce("publicize_image", target)
    elif new == "community":
        policy.enforce("communitize_image", target)


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


# -- create --------------------------------------------------------------------------------------


@bp.post("/images")
def create_image() -> Response:
    body = validation.json_body()
    if not isinstance(body, dict):
        raise errors.BadRequest("The request body must be a JSON object of image attributes.")
    _check_attribute_names([k for k in body if k != "id"])
    validation.validate(CREATE_SCHEMA, body)
    ctxt_project = common.project_id()
    admin = common.is_admin()
    owner = body.get("owner", ctxt_project)
    if not admin and (owner is None or owner != ctxt_project):
        raise errors.Forbidden(f"You are not permitted to create images owned by '{owner}'.")
    image_id = str(body.get("id") or uuid.uuid4())
    target = {
        "project_id": owner,
        "owner": owner,
        "member_id": None,
        "visibility": body.get("visibility", "shared"),
        "visible_to_all": False,
    }
    policy.enforce("add_image", target)
    _check_visibility(body.get("visibility", "shared"), None, target)
    extra = {k: v for k, v in body.items() if k != "id" and k not in CORE_PROPERTIES}
    tags = _unique(body.get("tags") or [])
    _check_quotas(extra, tags)
    sess = db.session()
    if sess.get(models.Image, image_id) is not None:
        raise errors.Conflict(f"An image with ID {image_id} already exists.")
    image = models.Image(
        id=image_id,
        name=body.get("name"),
        owner=owner,
        status="queued",
        visibility=body.get("visibility", "shared"),
        disk_format=body.get("disk_format"),
        container_format=body.get("container_format"),
        min_disk=body.get("min_disk", 0),
        min_ram=body.get("min_ram", 0),
        protected=body.get("protected", False),
        os_hidden=body.get("os_hidden", False),
        properties=[models.ImageProperty(name=k, value=v) for k, v in extra.items()],
        tags=[models.ImageTag(value=t) for t in tags],
    )
    sess.add(image)
    db.commit(
        f"Image {image_id} conflicts with an existing image, or two of its properties or tags "
        "differ only in letter case."
    )
    response = common.respond(render.image(image), 201)
    response.headers["Location"] = render.image_href(image.id)
    return response


# -- list ----------------------------------------------------------------------------------------


def _int_param(name: str, minimum: int = 0) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise errors.BadRequest(f"{name} param must be an integer") from None
    if value < minimum:
        raise errors.BadRequest(f"{name} param must be positive")
    return value


def _sorting() -> list[tuple[str, str]]:
    args = request.args
    keys: list[str] = []
    dirs: list[str] = []
    if "sort" in args:
        if "sort_key" in args or "sort_dir" in args:
            raise errors.BadRequest("Old and new sorting syntax cannot be combined")
        for part in args["sort"].split(","):
            key, _, direction = part.partition(":")
            keys.append(key.strip())
            dirs.append(direction.strip() or "desc")
    else:
        keys = [k.strip() for k in args.getlist("sort_key")]
        dirs = [d.strip() for d in args.getlist("sort_dir")]
        if len(dirs) > 1 and len(dirs) != len(keys):
            raise errors.BadRequest("Number of sort dirs does not match the number of sort keys")
    for key in keys:
        if key not in SORT_KEYS:
            raise errors.BadRequest(
                f"Invalid sort key: {key}. It must be one of the following: {', '.join(SORT_KEYS)}."
            )
    for direction in dirs:
        if direction not in ("asc", "desc"):
            raise errors.BadRequest(f"Invalid sort direction: {direction}")
    if not keys:
        keys = ["created_at"]
    if len(dirs) <= 1:
        dirs = (dirs or ["desc"]) * len(keys)
    order = list(zip(keys, dirs, strict=True))
    last_dir = dirs[-1]
    for extra in ("created_at", "id"):
        if extra not in keys:
            order.append((extra, last_dir))
    return order


def _sort_expression(key: str) -> ColumnElement[Any]:
    column: KeyedColumnElement[Any] = getattr(models.Image, key)
    # NULLs would break keyset pagination: compare them as the lowest value of the type.
    if key == "size":
        return func.coalesce(column, -1)
    if key in ("name", "container_format", "disk_format"):
        return func.coalesce(column, "")
    return column


def _marker_value(image: models.Image, key: str) -> Any:
    value = getattr(image, key)
    if value is None:
        return -1 if key == "size" else ""
    return value


def _in_or_equal(param: str) -> ColumnElement[bool]:
    column: KeyedColumnElement[Any] = getattr(models.Image, param)
    value = request.args[param]
    if value.startswith("in:"):
        values = [v.strip() for v in value[3:].split(",")]
        return column.in_(values)
    return column == value


def _time_filter(param: str) -> ColumnElement[bool]:
    column: KeyedColumnElement[Any] = getattr(models.Image, param)
    raw = request.args[param]
    operator, _, value = raw.partition(":")
    if operator not in TIME_OPERATORS or not value:
        raise errors.BadRequest(
            f"Invalid value '{raw}' for '{param}' filter: expected OPERATOR:TIME with OPERATOR "
            f"one of {', '.join(TIME_OPERATORS)}"
        )
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise errors.BadRequest(
            f"Invalid value '{raw}' for '{param}' filter: '{value}' is not an ISO 8601 time"
        ) from None
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    comparisons: dict[str, ColumnElement[bool]] = {
        "gt": column > when,
        "gte": column >= when,
        "lt": column < when,
        "lte": column <= when,
        "eq": column == when,
        "neq": column != when,
    }
    return comparisons[operator]


def _conditions(admin: bool, project: str | None) -> list[ColumnElement[bool]]:
    args = request.args
    image = models.Image
    conditions: list[ColumnElement[bool]] = []
    member_status = args.get("member_status", "accepted")
    if member_status not in (*models.MEMBER_STATUSES, "all"):
        raise errors.BadRequest(f"Invalid status: {member_status}")
    if not admin:
        access: list[ColumnElement[bool]] = [image.visibility.in_(("public", "community"))]
        if project:
            members = select(models.ImageMember.image_id).where(
                models.ImageMember.member == project
            )
            if member_status != "all":
                members = members.where(models.ImageMember.status == member_status)
            access.append(image.owner == project)
            access.append(and_(image.visibility == "shared", image.id.in_(members)))
        conditions.append(or_(*access))
    visibility = args.get("visibility")
    if visibility:
        if visibility not in (*models.VISIBILITIES, "all"):
            raise errors.BadRequest(f"Invalid visibility value: {visibility}")
        if visibility != "all":
            conditions.append(image.visibility == visibility)
    elif project:
        conditions.append(or_(image.visibility != "community", image.owner == project))
    else:
        conditions.append(image.visibility != "community")
    hidden = common.query_bool("os_hidden")
    conditions.append(image.os_hidden.is_(bool(hidden)))
    protected = common.query_bool("protected")
    if protected is not None:
        conditions.append(image.protected.is_(protected))
    for param in IN_FILTERS:
        if param in args:
            conditions.append(_in_or_equal(param))
    if "owner" in args:
        conditions.append(image.owner == args["owner"])
    size_min = _int_param("size_min")
    if size_min is not None:
        conditions.append(image.size >= size_min)
    size_max = _int_param("size_max")
    if size_max is not None:
        conditions.append(image.size <= size_max)
    for param in ("created_at", "updated_at"):
        if param in args:
            conditions.append(_time_filter(param))
    for tag in args.getlist("tag"):
        tagged = select(models.ImageTag.image_id).where(models.ImageTag.value == tag.strip())
        conditions.append(image.id.in_(tagged))
    for name, value in args.items(multi=True):
        if name in LIST_PARAMS:
            continue
        having = select(models.ImageProperty.image_id).where(
            models.ImageProperty.name == name, models.ImageProperty.value == value
        )
        conditions.append(image.id.in_(having))
    return conditions


def _after_marker(marker: models.Image, order: list[tuple[str, str]]) -> ColumnElement[bool]:
    """Rows that come after ``marker`` in ``order`` (keyset pagination)."""
    alternatives: list[ColumnElement[bool]] = []
    for i, (key, direction) in enumerate(order):
        same = [_sort_expression(k) == _marker_value(marker, k) for k, _ in order[:i]]
        expression = _sort_expression(key)
        value = _marker_value(marker, key)
        beyond = expression > value if direction == "asc" else expression < value
        alternatives.append(and_(*same, beyond))
    return or_(*alternatives)


def _query_string(**replace: str) -> str:
    params = [(k, v) for k, v in request.args.items(multi=True) if k not in replace]
    params.extend(replace.items())
    return urllib.parse.urlencode([(k, v) for k, v in params if k != "marker" or v])


@bp.get("/images")
def list_images() -> Response:
    policy.enforce("get_images", {"project_id": common.project_id()})
    limits = common.settings()
    admin = common.is_admin()
    project = common.project_id()
    limit = _int_param("limit")
    limit = limits.limit_default if limit is None else min(limit, limits.limit_max)
    order = _sorting()
    conditions = _conditions(admin, project)
    sess = db.session()
    stmt = select(models.Image).where(*conditions)
    marker_id = request.args.get("marker")
    if marker_id:
        marker = sess.get(models.Image, marker_id)
        if marker is None or not common.can_see(
            marker, common.membership(marker.id, project), admin
        ):
            raise errors.BadRequest(f"Invalid marker: no image found with ID {marker_id}.")
        stmt = stmt.where(_after_marker(marker, order))
    for key, direction in order:
        expression = _sort_expression(key)
        stmt = stmt.order_by(expression.asc() if direction == "asc" else expression.desc())
    rows = list(sess.scalars(stmt.limit(limit)))
    memberships: dict[str, models.ImageMember] = {}
    if project and rows:
        memberships = {
            m.image_id: m
            for m in sess.scalars(
                select(models.ImageMember).where(
                    models.ImageMember.member == project,
                    models.ImageMember.image_id.in_([r.id for r in rows]),
                )
            )
        }
    images = [
        render.image(row)
        for row in rows
        if policy.allowed("get_image", common.target(row, memberships.get(row.id)))
    ]
    first = _query_string(marker="")
    body: dict[str, Any] = {
        "images": images,
        "first": f"/v2/images?{first}" if first else "/v2/images",
        "schema": render.IMAGES_SCHEMA,
    }
    if rows and len(rows) == limit:
        body["next"] = f"/v2/images?{_query_string(marker=rows[-1].id)}"
    return common.respond(body)


# -- show ----------------------------------------------------------------------------------------


@bp.get("/images/<image_id>")
def show_image(image_id: str) -> Response:
    image, member = common.find_image(image_id)
    common.enforce("get_image", image, member)
    return common.respond(render.image(image))


# -- update --------------------------------------------------------------------------------------

_POINTER_TOKEN = re.compile(r"~[^01]|~$")


def _decode_pointer(pointer: Any) -> list[str]:
    if not isinstance(pointer, str):
        raise errors.BadRequest("The 'path' of a change must be a JSON pointer string.")
    if not pointer.startswith("/"):
        raise errors.BadRequest(f'Pointer `{pointer}` does not start with "/".')
    if re.search(r"/\s*?/", pointer[1:]):
        raise errors.BadRequest(f'Pointer `{pointer}` contains adjacent "/".')
    if len(pointer) > 1 and pointer.endswith("/"):
        raise errors.BadRequest(f'Pointer `{pointer}` end with "/".')
    if _POINTER_TOKEN.search(pointer):
        raise errors.BadRequest(
            f'Pointer `{pointer}` contains "~" not part of a recognized escape sequence.'
        )
    return [p.replace("~1", "/").replace("~0", "~").strip() for p in pointer[1:].split("/")]


def _parse_changes(body: Any, draft: int) -> list[dict[str, Any]]:
    if not isinstance(body, list):
        raise errors.BadRequest("Request body must be a JSON array of operation objects.")
    changes = []
    for raw in body:
        if not isinstance(raw, dict):
            raise errors.BadRequest("Operations must be JSON objects.")
        if draft == 10:
            op = raw.get("op")
            if op not in PATCH_OPS:
                raise errors.BadRequest(
                    f"Invalid operation: `{op}`. It must be one of the following: "
                    f"{', '.join(PATCH_OPS)}."
                )
            pointer = raw.get("path")
            if pointer is None:
                raise errors.BadRequest("Unable to find 'path' in JSON Schema change")
        else:
            present = [key for key in PATCH_OPS if key in raw]
            if len(present) != 1:
                raise errors.BadRequest(
                    'Operation objects must contain exactly one member named "add", '
                    '"remove", or "replace".'
                )
            op = present[0]
            pointer = raw[op]
        path = _decode_pointer(pointer)
        if not path[0] or len(path) > 2 or (len(path) == 2 and path[0] != "tags"):
            raise errors.BadRequest(f"Invalid JSON pointer for this resource: '/{'/'.join(path)}'")
        _check_attribute_names([path[0]])
        change: dict[str, Any] = {"op": op, "path": path}
        if op != "remove":
            if "value" not in raw:
                raise errors.BadRequest(f'Operation "{op}" requires a member named "value".')
            change["value"] = raw["value"]
        changes.append(change)
    return changes


def _tag_index(segment: str, length: int, op: str) -> int:
    """The list index a ``/tags/<segment>`` pointer names (``-`` is the end, for ``add``)."""
    if segment == "-" and op == "add":
        return length
    if not segment.isdigit():
        raise errors.BadRequest(f"Invalid JSON pointer for this resource: '/tags/{segment}'")
    index = int(segment)
    if index > length or (op != "add" and index == length):
        raise errors.Conflict(f"Tag index {index} is out of range.")
    return index


def _apply_tag_change(tags: list[Any], change: dict[str, Any]) -> None:
    op = change["op"]
    index = _tag_index(change["path"][1], len(tags), op)
    if op == "add":
        tags.insert(index, change["value"])
    elif op == "remove":
        del tags[index]
    else:
        tags[index] = change["value"]


def _apply_changes(
    state: dict[str, Any], extra: dict[str, Any], changes: list[dict[str, Any]], draft: int
) -> None:
    """Apply ``changes`` to the core ``state`` and the ``extra`` properties, as Glance does."""
    for change in changes:
        op, path = change["op"], change["path"]
        name = path[0]
        if len(path) == 2:
            if not isinstance(state["tags"], list):
                raise errors.BadRequest("Invalid input for field 'tags': not a list")
            _apply_tag_change(state["tags"], change)
            continue
        core = name in CORE_PROPERTIES
        if op == "remove":
            if core:
                raise errors.Forbidden(f"Property {name} may not be removed.")
            if name not in extra:
                raise errors.Conflict(f"Property {name} does not exist.")
            del extra[name]
        elif op == "replace":
            if core:
                state[name] = change["value"]
            elif name in extra:
                extra[name] = change["value"]
            else:
                raise errors.Conflict(f"Property {name} does not exist.")
        else:
            if draft == 4 and (core or name in extra):
                raise errors.Conflict(f"Property {name} already present.")
            if core:
                state[name] = change["value"]
            else:
                extra[name] = change["value"]


@bp.patch("/images/<image_id>")
def update_image(image_id: str) -> Response:
    draft = PATCH_TYPES.get(request.mimetype)
    if draft is None:
        raise errors.UnsupportedMediaType(
            "An image update must be a JSON patch with Content-Type "
            "application/openstack-images-v2.1-json-patch.",
            headers={"Accept-Patch": ", ".join(sorted(PATCH_TYPES))},
        )
    image, member = common.find_image(image_id)
    target = common.target(image, member)
    common.enforce("modify_image", image, member)
    changes = _parse_changes(validation.json_body(), draft)
    current: dict[str, Any] = {
        "name": image.name,
        "visibility": image.visibility,
        "protected": image.protected,
        "os_hidden": image.os_hidden,
        "owner": image.owner,
        "container_format": image.container_format,
        "disk_format": image.disk_format,
        "min_ram": image.min_ram,
        "min_disk": image.min_disk,
        "tags": image.tag_values(),
    }
    state = dict(current, tags=list(current["tags"]))
    extra: dict[str, Any] = image.extra_properties()
    _apply_changes(state, extra, changes, draft)
    validation.validate(STATE_SCHEMA, {**extra, **state})
    if state["owner"] != image.owner and not common.is_admin():
        raise errors.Forbidden("Owner can't be updated by non admin.")
    _check_visibility(state["visibility"], image.visibility, target)
    for attribute in ("disk_format", "container_format"):
        if state[attribute] != current[attribute] and image.status != "queued":
            raise errors.Forbidden(
                f"Attribute {attribute} can be only replaced for a queued image."
            )
    tags = _unique(state.pop("tags"))
    _check_quotas(extra, tags)
    for attribute, value in state.items():
        if value != current[attribute]:
            setattr(image, attribute, value)
    _store_properties(image, extra)
    _store_tags(image, tags)
    if changes:
        image.updated_at = db.utcnow()
    db.commit("Two properties or tags of the image differ only in letter case.")
    return common.respond(render.image(image))


def _store_properties(image: models.Image, wanted: dict[str, str]) -> None:
    existing = {prop.name: prop for prop in image.properties}
    for name, prop in existing.items():
        if name not in wanted:
            image.properties.remove(prop)
        elif prop.value != wanted[name]:
            prop.value = wanted[name]
    for name, value in wanted.items():
        if name not in existing:
            image.properties.append(models.ImageProperty(name=name, value=value))


def _store_tags(image: models.Image, wanted: list[str]) -> None:
    existing = {tag.value: tag for tag in image.tags}
    for value, tag in existing.items():
        if value not in wanted:
            image.tags.remove(tag)
    for value in wanted:
        if value not in existing:
            image.tags.append(models.ImageTag(value=value))


# -- delete --------------------------------------------------------------------------------------


@bp.delete("/images/<image_id>")
def delete_image(image_id: str) -> Response:
    image, member = common.find_image(image_id)
    common.enforce("delete_image", image, member)
    if image.protected:
        raise errors.Forbidden(f"Image {image_id} is protected and cannot be deleted.")
    status = image.status
    sess = db.session()
    sess.delete(image)
    db.commit()
    store = common.settings().store
    store.delete(image.id)
    if status != "saving":
        store.clean_staging(image.id)
    return no_content()
