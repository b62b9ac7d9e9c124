from __future__ import annotations

import pytest
from flask import Flask

from control.common import errors, validation
from control.identity import passwords

SCHEMA = {
    "type": "object",
    "required": ["user"],
    "properties": {
        "user": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": validation.NAME, "enabled": validation.BOOLEAN},
        }
    },
}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "user"),
        ({"user": {}}, "user.name"),
        ({"user": {"name": ""}}, "user.name"),
        ({"user": {"name": "x", "enabled": "yes"}}, "user.enabled"),
    ],
)
def test_errors_name_the_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(errors.BadRequest, match=f"field '{field}'"):
        validation.validate(SCHEMA, body)


def test_malformed_json_is_a_bad_request() -> None:
    app = Flask(__name__)
    with (
        app.test_request_context(data="{nope", content_type="application/json"),
        pytest.raises(errors.BadRequest, match="Malformed JSON"),
    ):
        validation.json_body()


def test_password_hash_is_bcrypt_with_at_least_12_rounds() -> None:
    hashed = passwords.hash_password("s3cret", rounds=4)
    assert hashed.startswith("$2b$12$")
    assert passwords.check_password("s3cret", hashed)
    assert not passwords.check_password("s3cret!", hashed)
    assert not passwords.check_password("s3cret", None)


def test_long_passwords_count_every_byte() -> None:
    base = "x" * 80
    hashed = passwords.hash_password(base + "a")
    assert passwords.check_password(base + "a", hashed)
    assert not passwords.check_password(base + "b", hashed)
