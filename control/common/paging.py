"""Keyset pagination the list endpoints share: the rows after a ``marker`` in a sort order, and
the ``next`` link that carries the request's arguments on with a new ``marker``."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import request
from sqlalchemy import and_, false, or_
from sqlalchemy.orm import InstrumentedAttribute

Order = list[tuple[InstrumentedAttribute[Any], bool]]
"""A sort order: each column with whether it ascends."""


def after_marker(marker: Any, order: Order) -> Any:
    """Rows strictly after ``marker`` in ``order`` (keyset pagination)."""
    clauses = []
    for index, (column, ascending) in enumerate(order):
        value = getattr(marker, column.key)
        equal = [prev == getattr(marker, prev.key) for prev, _ in order[:index]]
        beyond = column > value if ascending else column < value
        if value is None:
            beyond = column.is_not(None) if ascending else false()
        clauses.append(and_(*equal, beyond))
    return or_(*clauses)


def next_link(marker_id: str) -> list[dict[str, str]]:
    """The ``<collection>_links`` value: this request again with ``marker`` set to ``marker_id``."""
    args = [(k, v) for k, v in request.args.items(multi=True) if k != "marker"]
    args.append(("marker", marker_id))
    href = f"{request.host_url.rstrip('/')}{request.path}?{urlencode(args)}"
    return [{"rel": "next", "href": href}]
