"""Request bodies: parse JSON, validate against JSON Schema, answer 400 naming the field."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
from flask import request
from jsonschema import Draft202012Validator

from control.common import errors

_validators: dict[int, Draft202012Validator] = {}


def json_body(required: bool = True) -> Any:
    """The request's JSON body; malformed JSON or a missing body is a 400."""
    raw = request.get_data(cache=True)
    if not raw:
        if required:
            raise errors.BadRequest("The request body is empty: a JSON object is required.")
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.BadRequest(f"Malformed JSON in request body: {exc}") from None


def _field_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "required" and isinstance(error.message, str):
        missing = error.message.split("'")[1] if "'" in error.message else ""
        parts.append(missing)
    if error.validator == "additionalProperties":
        extra = error.message.split("'")[1] if "'" in error.message else ""
        parts.append(extra)
    return ".".join(p for p in parts if p) or "(body)"


def validate(schema: dict[str, Any], body: Any) -> Any:
    """Validate ``body``; on failure raise 400 ``Invalid input for field 'x.y': reason``."""
    validator = _validators.get(id(schema))
    if validator is None:
        Draft202012Validator.check_schema(schema)
        validator = Draft202012Validator(schema)
        _validators[id(schema)] = validator
    error = jsonschema.exceptions.best_match(validator.iter_errors(body))
    if error is not None:
        field = _field_path(error)
        raise errors.BadRequest(f"Invalid input for field '{field}': {error.message}")
    return body


def validated_body(schema: dict[str, Any]) -> Any:
    return validate(schema, json_body())


# Reusable schema fragments.
NAME = {"type": "string", "minLength": 1, "maxLength": 255}
DESCRIPTION = {"type": ["string", "null"], "maxLength": 65535}
BOOLEAN = {"type": "boolean"}
ID = {"type": "string", "minLength": 1, "maxLength": 64}
NULLABLE_ID = {"type": ["string", "null"], "maxLength": 64}
