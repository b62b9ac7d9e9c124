"""The signature the metadata proxy adds to each request it forwards to the metadata API.

The proxy (``agents/l3``) knows which instance a request comes from (the router's port of the
guest's address) and sends::

    X-Instance-ID: <instance uuid>
    X-Tenant-ID: <the instance's project id>
    X-Instance-ID-Signature: sign(shared_secret, instance uuid)
    X-Forwarded-For: <the guest's address>

as Neutron's metadata agent does for Nova. Both sides read the same ``shared_secret``
(``[metadata] shared_secret`` in ``metadata.conf`` and in the l3 agent's configuration).
"""

from __future__ import annotations

import hashlib
import hmac

INSTANCE_ID = "X-Instance-ID"
TENANT_ID = "X-Tenant-ID"
SIGNATURE = "X-Instance-ID-Signature"
FORWARDED_FOR = "X-Forwarded-For"


def sign(secret: str, instance_id: str) -> str:
    """Hex HMAC-SHA256 of ``instance_id`` keyed with ``secret`` (Nova's and Neutron's)."""
    return hmac.new(secret.encode("utf-8"), instance_id.encode("utf-8"), hashlib.sha256).hexdigest()


def verify(secret: str, instance_id: str, signature: str) -> bool:
    """Whether ``signature`` is :func:`sign` of ``instance_id``, compared in constant time."""
    expected = sign(secret, instance_id).encode("ascii")
    return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))
