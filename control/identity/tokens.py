"""Fernet tokens: issue, validate, revoke. No token is stored.

The payload is a compact JSON list, encrypted and signed with the primary key of the
:class:`~control.identity.fernet.KeyRepository`::

    [1, user_id, methods, project_id, domain_id, issued_at, expires_at, audit_ids]

(times in microseconds since the epoch, UTC)

A token is valid while it has not expired, no revocation event matches it, its user and the user's
domain are enabled and, for a scoped token, the scope still exists, is enabled and the user still
holds a role on it.

Each worker keeps what it validated for ``[token] cache_ttl`` seconds (:class:`ValidationCache`).
The revocation events are still read on every validation, so a revoked token, a changed password
or a disabled user or project is refused at once by every worker; any other change (a grant
removed, a role deleted) is seen by a worker at once if it made the change, and by the others
within ``cache_ttl``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.fernet import InvalidToken
from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session

from control.common import db, errors
from control.common.context import RequestContext
from control.identity import models, render, service_catalog
from control.identity.fernet import KeyRepository

PAYLOAD_VERSION = 1
INVALID = "The request you have made requires authentication."


def new_audit_id() -> str:
    return base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")


def _to_micros(value: datetime) -> int:
    return int(value.replace(tzinfo=UTC).timestamp() * 1_000_000)


def _from_micros(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, UTC).replace(tzinfo=None)


@dataclass
class TokenData:
    """What a token says: who, how, on what, until when."""

    user_id: str
    methods: list[str]
    project_id: str | None
    domain_id: str | None
    issued_at: datetime
    expires_at: datetime
    audit_ids: list[str] = field(default_factory=list)

    def encode(self) -> bytes:
        payload = [
            PAYLOAD_VERSION,
            self.user_id,
            self.methods,
            self.project_id,
            self.domain_id,
            _to_micros(self.issued_at),
            _to_micros(self.expires_at),
            self.audit_ids,
        ]
        return json.dumps(payload, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> TokenData:
        version, user_id, methods, project_id, domain_id, issued, expires, audit_ids = json.loads(
            raw
        )
        if version != PAYLOAD_VERSION:
            raise ValueError(f"unknown token payload version {version}")
        return cls(
            user_id=user_id,
            methods=list(methods),
            project_id=project_id,
            domain_id=domain_id,
            issued_at=_from_micros(issued),
            expires_at=_from_micros(expires),
            audit_ids=list(audit_ids),
        )


@dataclass
class ValidatedToken:
    """A token that passed every check, with the records it refers to."""

    data: TokenData
    user: models.User
    user_domain: models.Domain
    project: models.Project | None
    project_domain: models.Domain | None
    domain: models.Domain | None
    roles: list[models.Role]

    @property
    def scope_target(self) -> tuple[str, str] | None:
        if self.project is not None:
            return ("project", self.project.id)
        if self.domain is not None:
            return ("domain", self.domain.id)
        return None


class ValidationCache:
    """A bounded, thread-safe map of token hash -> :class:`ValidatedToken`, entries kept ``ttl``
    seconds. It holds detached snapshots: nothing in it is attached to a database session."""

    def __init__(self, ttl: float, size: int = 10000) -> None:
        self.ttl = ttl
        self.size = size
        self._entries: OrderedDict[str, tuple[float, ValidatedToken]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def get(self, token: str) -> ValidatedToken | None:
        if self.ttl <= 0:
            return None
        key = self._key(token)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] < time.monotonic():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, token: str, validated: ValidatedToken) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            self._entries[self._key(token)] = (time.monotonic() + self.ttl, validated)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class TokenProvider:
    def __init__(self, keys: KeyRepository, expiration: int = 3600, cache_ttl: float = 0) -> None:
        self.keys = keys
        self.expiration = expiration
        self.cache = ValidationCache(cache_ttl)

    def issue(
        self,
        user_id: str,
        methods: list[str],
        project_id: str | None = None,
        domain_id: str | None = None,
        parent: TokenData | None = None,
    ) -> tuple[str, TokenData]:
        now = db.utcnow()
        if parent is not None:
            expires = parent.expires_at
            audit_ids = [new_audit_id(), parent.audit_ids[-1] if parent.audit_ids else ""]
            audit_ids = [a for a in audit_ids if a]
        else:
            expires = now + timedelta(seconds=self.expiration)
            audit_ids = [new_audit_id()]
        data = TokenData(user_id, methods, project_id, domain_id, now, expires, audit_ids)
        return self.keys.encrypt(data.encode()).decode(), data

    def decode(self, token: str) -> TokenData:
        """Decrypt and check expiry; every failure is the same 401 (it tells nothing)."""
        try:
            data = TokenData.decode(self.keys.decrypt(token.encode()))
        except (InvalidToken, ValueError, TypeError, UnicodeError):
            raise errors.Unauthorized(INVALID) from None
        if data.expires_at <= db.utcnow():
            raise errors.Unauthorized(INVALID)
        return data


def implied_closure(sess: Session, role_ids: set[str]) -> set[str]:
    implications = sess.execute(
        select(models.ImpliedRole.prior_role_id, models.ImpliedRole.implied_role_id)
    ).all()
    result = set(role_ids)
    changed = True
    while changed:
        changed = False
        for prior, implied in implications:
            if prior in result and implied not in result:
                result.add(implied)
                changed = True
    return result


def effective_roles(
    sess: Session, user_id: str, target_type: str, target_id: str
) -> list[models.Role]:
    """The roles a user holds on a project or domain, implied roles included."""
    direct = set(
        sess.scalars(
            select(models.RoleAssignment.role_id).where(
                models.RoleAssignment.user_id == user_id,
                models.RoleAssignment.target_type == target_type,
                models.RoleAssignment.target_id == target_id,
            )
        )
    )
    if not direct:
        return []
    ids = implied_closure(sess, direct)
    roles = sess.scalars(select(models.Role).where(models.Role.id.in_(ids))).all()
    return sorted(roles, key=lambda r: r.name)


# Read on every validation, so it is a plain statement: no ORM work on the hot path.
_REVOKED = text(
    "SELECT 1 FROM revocation_events WHERE audit_id IN :audit_ids"
    " OR (user_id = :user_id AND issued_before >= :issued_at)"
    " OR (project_id = :project_id AND issued_before >= :issued_at) LIMIT 1"
).bindparams(bindparam("audit_ids", expanding=True))


def is_revoked(sess: Session, data: TokenData) -> bool:
    found = sess.execute(
        _REVOKED,
        {
            "audit_ids": data.audit_ids or [""],
            "user_id": data.user_id,
            "project_id": data.project_id,
            "issued_at": data.issued_at,
        },
    ).first()
    return found is not None


def validate(sess: Session, provider: TokenProvider, token: str) -> ValidatedToken:
    data = provider.decode(token)
    if is_revoked(sess, data):
        raise errors.Unauthorized(INVALID)
    cached = provider.cache.get(token)
    if cached is not None:
        return cached
    validated = _load(sess, data)
    if provider.cache.ttl > 0:
        for row in (
            validated.user,
            validated.user_domain,
            validated.project,
            validated.project_domain,
            validated.domain,
            *validated.roles,
        ):
            if row is not None and row in sess:
                sess.expunge(row)
        provider.cache.put(token, validated)
    return validated


def _load(sess: Session, data: TokenData) -> ValidatedToken:
    """Load and check everything a token refers to."""
    user = sess.get(models.User, data.user_id)
    if user is None or not user.enabled:
        raise errors.Unauthorized(INVALID)
    user_domain = sess.get(models.Domain, user.domain_id)
    if user_domain is None or not user_domain.enabled:
        raise errors.Unauthorized(INVALID)
    project = project_domain = domain = None
    roles: list[models.Role] = []
    if data.project_id:
        project = sess.get(models.Project, data.project_id)
        if project is None or not project.enabled:
            raise errors.Unauthorized(INVALID)
        project_domain = sess.get(models.Domain, project.domain_id)
        if project_domain is None or not project_domain.enabled:
            raise errors.Unauthorized(INVALID)
        roles = effective_roles(sess, user.id, "project", project.id)
    elif data.domain_id:
        domain = sess.get(models.Domain, data.domain_id)
        if domain is None or not domain.enabled:
            raise errors.Unauthorized(INVALID)
        roles = effective_roles(sess, user.id, "domain", domain.id)
    if (project is not None or domain is not None) and not roles:
        raise errors.Unauthorized(INVALID)
    return ValidatedToken(data, user, user_domain, project, project_domain, domain, roles)


def revoke_token(sess: Session, data: TokenData) -> None:
    """Revoke one token (and the tokens rescoped from it) by its audit id."""
    sess.add(
        models.RevocationEvent(audit_id=data.audit_ids[0], issued_before=db.utcnow(), user_id=None)
    )


def revoke_user(sess: Session, user_id: str) -> None:
    """Revoke every token of a user issued until now (password change, disable, delete)."""
    sess.add(models.RevocationEvent(user_id=user_id, issued_before=db.utcnow()))


def revoke_project(sess: Session, project_id: str) -> None:
    sess.add(models.RevocationEvent(project_id=project_id, issued_before=db.utcnow()))


def body(sess: Session, validated: ValidatedToken, include_catalog: bool = True) -> dict[str, Any]:
    """The ``token`` body of POST and GET /v3/auth/tokens."""
    data = validated.data
    user_domain = validated.user_domain
    token: dict[str, Any] = {
        "methods": data.methods,
        "user": {
            "id": validated.user.id,
            "name": validated.user.name,
            "domain": {"id": user_domain.id, "name": user_domain.name},
            "password_expires_at": None,
        },
        "audit_ids": data.audit_ids,
        "expires_at": render.isotime(data.expires_at),
        "issued_at": render.isotime(data.issued_at),
    }
    if validated.project is not None and validated.project_domain is not None:
        token["project"] = {
            "id": validated.project.id,
            "name": validated.project.name,
            "domain": {"id": validated.project_domain.id, "name": validated.project_domain.name},
        }
        token["is_domain"] = False
    elif validated.domain is not None:
        token["domain"] = {"id": validated.domain.id, "name": validated.domain.name}
    if validated.scope_target is not None:
        token["roles"] = [{"id": r.id, "name": r.name} for r in validated.roles]
        if include_catalog:
            token["catalog"] = service_catalog.build(
                sess, validated.project.id if validated.project else None
            )
    return token


def to_context(validated: ValidatedToken, admin_project: tuple[str, str] | None) -> RequestContext:
    """The request context for a validated token. ``admin_project`` is (domain, name)."""
    project = validated.project
    is_admin_project = bool(
        project is not None
        and validated.project_domain is not None
        and admin_project is not None
        and (validated.project_domain.name, project.name) == admin_project
    )
    return RequestContext(
        user_id=validated.user.id,
        user_name=validated.user.name,
        user_domain_id=validated.user.domain_id,
        project_id=project.id if project else None,
        project_name=project.name if project else None,
        project_domain_id=project.domain_id if project else None,
        domain_id=validated.domain.id if validated.domain else None,
        roles=[r.name for r in validated.roles],
        is_admin_project=is_admin_project,
        audit_ids=validated.data.audit_ids,
        expires_at=render.isotime(validated.data.expires_at),
    )
