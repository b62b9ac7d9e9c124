"""The metadata proxy's request signature (control/metadata/signing.py)."""

from __future__ import annotations

import hashlib
import hmac

from control.metadata import signing

INSTANCE = "6f1c9a52-3b0e-4d7a-9c6e-0b3f2a1d4e5f"


def test_sign_is_hex_hmac_sha256_of_the_instance_id() -> None:
    expected = hmac.new(b"s3cret", INSTANCE.encode(), hashlib.sha256).hexdigest()
    assert signing.sign("s3cret", INSTANCE) == expected
    assert len(expected) == 64


def test_sign_matches_a_known_vector() -> None:
    # RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
    assert signing.sign("Jefe", "what do ya want for nothing?") == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_sign_depends_on_secret_and_instance() -> None:
    base = signing.sign("a", INSTANCE)
    assert signing.sign("b", INSTANCE) != base
    assert signing.sign("a", INSTANCE.replace("6", "7")) != base
    assert signing.sign("a", INSTANCE) == base


def test_verify_accepts_only_the_right_signature() -> None:
    good = signing.sign("secret", INSTANCE)
    assert signing.verify("secret", INSTANCE, good)
    assert not signing.verify("secret", INSTANCE, good.upper())
    assert not signing.verify("secret", INSTANCE, good[:-1])
    assert not signing.verify("secret", INSTANCE, "")
    assert not signing.verify("other", INSTANCE, good)
    assert not signing.verify("secret", "another", good)
    assert not signing.verify("secret", INSTANCE, "é" * 64)
