"""The request context that travels with every API request and every RPC message."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any


def new_request_id() -> str:
    """Return a request id in the OpenStack form ``req-<uuid4>``."""
    return f"req-{uuid.uuid4()}"


@dataclass
class RequestContext:
    """Who is asking, on behalf of which project, and under which request id.

    It is built by the auth middleware from a validated token, carried on ``flask.g``
    during a request, and serialised into the envelope of every RPC message.
    """

    request_id: str = field(default_factory=new_request_id)
    user_id: str | None = None
    user_name: str | None = None
    user_domain_id: str | None = None
    project_id: str | None = None
    project_name: str | None = None
    project_domain_id: str | None = None
    domain_id: str | None = None
    roles: list[str] = field(default_factory=list)
    is_admin_project: bool = False
    audit_ids: list[str] = field(default_factory=list)
    expires_at: str | None = None
    system_scope: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestContext:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def policy_credentials(self) -> dict[str, Any]:
        """The facts a policy rule may test: ``role:``, ``project_id:``, ``user_id:``..."""
        return {
            "user_id": self.user_id,
            "project_id": self.project_id,
            "domain_id": self.domain_id,
            "roles": [r.lower() for r in self.roles],
            "is_admin_project": self.is_admin_project,
        }
