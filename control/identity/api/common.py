"""What the identity CRUD blueprints share: request bodies, lookups, query filters, answers.

Every resource body is wrapped in its singular key (``{"project": {...}}``) and every list in its
plural key beside ``links``, as Keystone does. Unknown ids answer ``404 Could not find <kind>:
<id>.``; query filters are exact matches on the columns a blueprint names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from flask import Response, jsonify, request
from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from control.common import errors, validation
from control.identity import render

T = TypeVar("T")

# Schema fragments of the identity bodies (on top of control.common.validation's).
NAME = {**validation.NAME, "pattern": r"\S"}
OPTIONS = {"type": "object"}
TAGS = {
    "type": "array",
    "maxItems": 80,
    "uniqueItems": True,
    "items": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[^,/]*$"},
}

_TRUE = {"", "1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off"}


def wrapped(
    key: str,
    properties: Mapping[str, Any],
    required: Iterable[str] = (),
    update: bool = False,
) -> dict[str, Any]:
    """The schema of ``{key: {...properties}}``; extra attributes are allowed and ignored.

    An update body (``update=True``) must change at least one attribute.
    """
    inner: dict[str, Any] = {"type": "object", "properties": dict(properties)}
    if required:
        inner["required"] = list(required)
    if update:
        inner["minProperties"] = 1
    return {"type": "object", "required": [key], "properties": {key: inner}}


def body_of(key: str, schema: dict[str, Any], raw: Any = None) -> dict[str, Any]:
    """The validated object under ``key`` of the request body (or of ``raw`` when given)."""
    body = validation.validate(schema, validation.json_body() if raw is None else raw)
    return dict(body[key])


def not_found(kind: str, ident: str) -> errors.NotFound:
    return errors.NotFound(f"Could not find {kind}: {ident}.")


def find(sess: Session, model: type[T], kind: str, ident: str) -> T:
    """The row of ``model`` with primary key ``ident``, or 404 naming the kind and the id."""
    found = sess.get(model, ident)
    if found is None:
        raise not_found(kind, ident)
    return found


def reject_id_change(changes: Mapping[str, Any], key: str, ident: str) -> None:
    """Keystone refuses an update body whose ``id`` differs from the one in the path."""
    if "id" in changes and changes["id"] != ident:
        raise errors.BadRequest(f"Invalid input for field '{key}.id': the id cannot be changed")


def reject_change(changes: Mapping[str, Any], key: str, field: str, current: Any) -> None:
    """Refuse a change of an attribute that is fixed at creation (``domain_id``, ``parent_id``)."""
    if field in changes and changes[field] != current:
        raise errors.BadRequest(
            f"Invalid input for field '{key}.{field}': it is fixed when the {key} is created"
        )


def query_bool(name: str) -> bool | None:
    """A boolean query filter (``?enabled=false``); absent is ``None``, a bare ``?enabled`` true."""
    if name not in request.args:
        return None
    value = request.args[name].strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise errors.BadRequest(f"Invalid value for query parameter '{name}': expected true or false")


def filtered(stmt: Select[Any], filters: Mapping[str, InstrumentedAttribute[Any]]) -> Select[Any]:
    """Add an equality condition for every query parameter named in ``filters``.

    ``filters`` maps a query parameter to the column it filters; boolean columns take
    true/false values.
    """
    for param, column in filters.items():
        if param not in request.args:
            continue
        if column.type.python_type is bool:
            stmt = stmt.where(column.is_(query_bool(param)))
        else:
            stmt = stmt.where(column == request.args[param])
    return stmt


def respond(key: str, body: Any, status: int = 200) -> Response:
    response = jsonify({key: body})
    response.status_code = status
    return response


def listing(key: str, items: list[dict[str, Any]], path: str) -> Response:
    """``{key: [...], "links": {"self", "previous", "next"}}``; nothing is paginated."""
    return jsonify({key: items, "links": render.collection_links(path)})
