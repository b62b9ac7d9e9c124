"""Token validation for the API services that are not identity (compute, image, network, volume).

Each service builds one :class:`TokenValidator` from the ``[keystone_authtoken]`` section of its
configuration and passes it to :func:`control.common.app.make_app` as the ``authenticate``
callable, with :func:`www_authenticate` for the header of every 401::

    validator = auth.TokenValidator(conf)
    app = make_app("compute", conf, blueprints, validator, auth.www_authenticate(conf))

How a token is validated (the keystonemiddleware flow):

1. A token that cannot be a token (empty, longer than 8 KiB, spaces or control characters) is
   refused at once with 401, without asking identity.
2. The cache is looked up by the SHA-256 of the token (the raw token is never kept or logged).
   A hit answers at once: a copy of the cached :class:`RequestContext`, or 401 for a token identity
   refused a moment ago (the negative cache, so that a flood of bad tokens does not reach
   identity).
3. Otherwise ``GET {auth_url}/auth/tokens?nocatalog`` with ``X-Auth-Token`` = this service's own
   token and ``X-Subject-Token`` = the user's token. 200 gives the context (user, project, roles,
   domain ids, audit ids, expiry, ``is_admin_project``); 404 means the token is expired, revoked
   or was never issued: 401 to the client.
4. The service token is obtained with password authentication (project-scoped), kept until shortly
   before it expires, and fetched again once when identity answers 401 to it (revoked, keys
   rotated out).

A valid token is cached until ``min(its expiry, now + cache_ttl)``: a token revoked at identity is
still accepted by this service for at most ``cache_ttl`` seconds (30 by default). A refused token
is remembered for ``negative_cache_ttl`` seconds (5 by default, never more than ``cache_ttl``).
The cache is a bounded LRU of ``cache_size`` entries (10000 by default); ``cache_size = 0`` or
``cache_ttl = 0`` turns it off.

When identity cannot be reached, times out, answers 5xx, or refuses this service's own
credentials, the request fails with 503 and a message naming identity and the cause, never with a
500. Tokens already in the cache keep working while identity is away.

Settings (``[keystone_authtoken]``):

- ``auth_url`` (required): identity's v3 URL, e.g. ``http://ctl:5000/v3``.
- ``username``, ``password`` (required): this service's user in identity; it needs the ``admin``
  or ``service`` role on its project to validate other users' tokens.
- ``project_name`` (``service``), ``user_domain_name`` (``Default``), ``project_domain_name``
  (``Default``): the scope of the service token.
- ``www_authenticate_uri``: sent in ``WWW-Authenticate`` on 401; ``auth_url`` without ``/v3``
  by default.
- ``cache_size`` (10000): bound of the token cache, in entries.
- ``cache_ttl`` (30): seconds a validation is reused; the window in which a revoked token may
  still be accepted.
- ``negative_cache_ttl`` (5): seconds a refused token is remembered.
- ``timeout`` (10): seconds for one request to identity.
- ``admin_project_name`` (``admin``), ``admin_project_domain`` (``Default``): the cloud's admin
  project by name, for ``is_admin_project`` when identity's answer does not say.

The validator is thread-safe: the cache and the service token are guarded by locks, and one
``requests.Session`` (keep-alive connection pool, cookies disabled) is shared by all threads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.cookiejar
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from control.common import errors
from control.common.config import Config
from control.common.context import RequestContext, new_request_id

LOG = logging.getLogger("cirrus.auth")

SECTION = "keystone_authtoken"

#: What a token may look like: printable ASCII without spaces, at most 8 KiB. Fernet tokens are
#: URL-safe base64 of about 200 characters.
MAX_TOKEN_LENGTH = 8192
_TOKEN_SHAPE = re.compile(r"^[\x21-\x7e]+$")

#: Refresh the service token when less than this many seconds (or half its lifetime) remain.
SERVICE_TOKEN_MARGIN = 120.0


def _strip_version(url: str) -> str:
    url = url.rstrip("/")
    return re.sub(r"/v3(?:\.\d+)?$", "", url)


def www_authenticate(conf: Config, section: str = SECTION) -> Callable[[], str]:
    """The ``WWW-Authenticate`` value of every 401: ``Keystone uri="<identity root>"``.

    The URI is ``www_authenticate_uri`` when set, else ``auth_url`` without its ``/v3``; clients
    (keystoneauth) use it to find where to get a token.
    """
    uri = conf.get_optional(section, "www_authenticate_uri") or _strip_version(
        conf.get(section, "auth_url")
    )
    value = f'Keystone uri="{uri.rstrip("/")}"'

    def header() -> str:
        return value

    return header


@dataclass
class CacheStats:
    """Counters of a :class:`TokenValidator`, for tests, benchmarks and debugging."""

    hits: int = 0
    negative_hits: int = 0
    misses: int = 0
    validations: int = 0
    service_token_fetches: int = 0


@dataclass
class _Entry:
    deadline: float  # time.monotonic() after which the entry is stale
    context: RequestContext | None  # None: identity refused the token


def _parse_time(value: str) -> float:
    """Seconds since the epoch of an ISO 8601 UTC time such as ``2030-01-01T00:00:00.000000Z``."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.timestamp()


def _ref_id(ref: Any) -> str | None:
    if isinstance(ref, dict):
        value = ref.get("id")
        return str(value) if value is not None else None
    return None


class TokenValidator:
    """Turn a user's token into a :class:`RequestContext` by asking identity, with a cache.

    Call it with the token (``validator(token)``); it raises :class:`errors.Unauthorized` for a
    token identity refuses and :class:`errors.ServiceUnavailable` when identity cannot answer.
    See the module documentation for the flow and the settings.
    """

    def __init__(
        self,
        conf: Config,
        section: str = SECTION,
        session: requests.Session | None = None,
    ) -> None:
        self.auth_url = conf.get(section, "auth_url").rstrip("/")
        self.username = conf.get(section, "username")
        self._password = conf.get(section, "password")
        self.project_name = conf.get(section, "project_name", "service")
        self.user_domain_name = conf.get(section, "user_domain_name", "Default")
        self.project_domain_name = conf.get(section, "project_domain_name", "Default")
        self.cache_size = max(0, conf.get_int(section, "cache_size", 10000))
        self.cache_ttl = max(0.0, conf.get_float(section, "cache_ttl", 30.0))
        self.negative_cache_ttl = min(
            max(0.0, conf.get_float(section, "negative_cache_ttl", 5.0)), self.cache_ttl
        )
        self.timeout = conf.get_float(section, "timeout", 10.0)
        self.admin_project = (
            conf.get(section, "admin_project_domain", "Default"),
            conf.get(section, "admin_project_name", "admin"),
        )
        self.stats = CacheStats()
        self._cache: OrderedDict[bytes, _Entry] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._service_lock = threading.Lock()
        self._service_token: str | None = None
        self._service_token_refresh_at = 0.0  # time.monotonic()
        self._session = session or self._new_session()

    @staticmethod
    def _new_session() -> requests.Session:
        session = requests.Session()
        session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=32, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers.update({"Accept": "application/json", "User-Agent": "cirrus-auth"})
        return session

    # -- the authenticate callable -------------------------------------------------------------

    def __call__(self, token: str) -> RequestContext:
        """Validate ``token``: a fresh :class:`RequestContext` or :class:`errors.Unauthorized`."""
        if not token or len(token) > MAX_TOKEN_LENGTH or not _TOKEN_SHAPE.match(token):
            raise errors.Unauthorized("The token is malformed.")
        key = hashlib.sha256(token.encode("ascii")).digest()
        cached = self._lookup(key)
        if cached is not None:
            if cached.context is None:
                raise errors.Unauthorized()
            return self._copy(cached.context)
        try:
            context = self._validate(token)
        except errors.Unauthorized:
            self._store(key, None, time.monotonic() + self.negative_cache_ttl)
            raise
        self._store(key, context, self._deadline(context))
        return self._copy(context)

    def validate(self, token: str) -> RequestContext:
        """The same as calling the validator."""
        return self(token)

    def __len__(self) -> int:
        """The number of cached results (valid and refused tokens)."""
        with self._cache_lock:
            return len(self._cache)

    def clear_cache(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    def close(self) -> None:
        """Close the keep-alive connections to identity."""
        self._session.close()

    # -- the cache ----------------------------------------------------------------------------

    def _count(self, counter: str) -> None:
        with self._cache_lock:
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)

    @staticmethod
    def _copy(context: RequestContext) -> RequestContext:
        # make_app sets request_id on what it gets: never hand out the cached object itself.
        return dataclasses.replace(
            context,
            request_id=new_request_id(),
            roles=list(context.roles),
            audit_ids=list(context.audit_ids),
        )

    def _deadline(self, context: RequestContext) -> float:
        now = time.monotonic()
        ttl = self.cache_ttl
        if context.expires_at:
            try:
                ttl = min(ttl, _parse_time(context.expires_at) - time.time())
            except (ValueError, TypeError, AttributeError):
                ttl = 0.0
        return now + ttl

    def _lookup(self, key: bytes) -> _Entry | None:
        with self._cache_lock:
            entry = self._cache.get(key)
            if entry is None:
                self.stats.misses += 1
                return None
            if entry.deadline <= time.monotonic():
                del self._cache[key]
                self.stats.misses += 1
                return None
            self._cache.move_to_end(key)
            if entry.context is None:
                self.stats.negative_hits += 1
            else:
                self.stats.hits += 1
            return entry

    def _store(self, key: bytes, context: RequestContext | None, deadline: float) -> None:
        if self.cache_size <= 0 or deadline <= time.monotonic():
            return
        with self._cache_lock:
            self._cache[key] = _Entry(deadline, context)
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    # -- talking to identity ------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = f"{self.auth_url}{path}"
        try:
            return self._session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.Timeout:
            LOG.warning("identity at %s did not answer within %.1f s", self.auth_url, self.timeout)
            raise errors.ServiceUnavailable(
                f"The identity service at {self.auth_url} did not answer within "
                f"{self.timeout:g} s, so the token cannot be validated. Try again later."
            ) from None
        except requests.RequestException as exc:
            LOG.warning("identity at %s is unreachable: %s", self.auth_url, exc)
            raise errors.ServiceUnavailable(
                f"The identity service at {self.auth_url} is unreachable "
                f"({type(exc).__name__}), so the token cannot be validated. Try again later."
            ) from None

    def _unavailable(self, why: str) -> errors.ServiceUnavailable:
        LOG.error("cannot validate tokens: %s", why)
        return errors.ServiceUnavailable(f"The token cannot be validated: {why}")

    def service_token(self) -> str:
        """This service's own token (fetched or refreshed when needed).

        Also usable to call other services on the service's behalf.
        """
        with self._service_lock:
            token = self._service_token
            if token is None or time.monotonic() >= self._service_token_refresh_at:
                token = self._fetch_service_token()
            return token

    def _drop_service_token(self, stale: str) -> None:
        with self._service_lock:
            if self._service_token == stale:
                self._service_token = None

    def _fetch_service_token(self) -> str:
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": self.username,
                            "domain": {"name": self.user_domain_name},
                            "password": self._password,
                        }
                    },
                },
                "scope": {
                    "project": {
                        "name": self.project_name,
                        "domain": {"name": self.project_domain_name},
                    }
                },
            }
        }
        self._count("service_token_fetches")
        response = self._request("POST", "/auth/tokens?nocatalog", json=body)
        if response.status_code in (400, 401, 403, 404):
            raise self._unavailable(
                f"identity at {self.auth_url} refused this service's credentials (HTTP "
                f"{response.status_code}); check username, password, project_name and the domain "
                f"names in [{SECTION}]"
            )
        if response.status_code != 201:
            raise self._unavailable(
                f"identity at {self.auth_url} answered HTTP {response.status_code} "
                "when this service asked for its own token"
            )
        token = response.headers.get("X-Subject-Token")
        try:
            expires = _parse_time(response.json()["token"]["expires_at"])
        except (ValueError, KeyError, TypeError):
            expires = time.time() + 2 * SERVICE_TOKEN_MARGIN
        if not token:
            raise self._unavailable(f"identity at {self.auth_url} issued no X-Subject-Token")
        lifetime = max(0.0, expires - time.time())
        self._service_token = token
        self._service_token_refresh_at = (
            time.monotonic() + lifetime - min(SERVICE_TOKEN_MARGIN, lifetime / 2)
        )
        return token

    def _validate(self, token: str) -> RequestContext:
        for attempt in (1, 2):
            service_token = self.service_token()
            self._count("validations")
            response = self._request(
                "GET",
                "/auth/tokens?nocatalog",
                headers={"X-Auth-Token": service_token, "X-Subject-Token": token},
            )
            status = response.status_code
            if status == 200:
                try:
                    return self._context(response.json()["token"])
                except (ValueError, KeyError, TypeError, AttributeError):
                    raise self._unavailable(
                        f"identity at {self.auth_url} answered a token validation with a body "
                        "this service does not understand"
                    ) from None
            if status == 404:
                raise errors.Unauthorized()
            if status == 401 and attempt == 1:
                # Our own token was refused (revoked, expired, keys rotated): fetch a new one.
                self._drop_service_token(service_token)
                continue
            if status == 401:
                raise self._unavailable(
                    f"identity at {self.auth_url} refuses this service's own token"
                )
            if status == 403:
                raise self._unavailable(
                    f"identity at {self.auth_url} does not let the user {self.username!r} validate "
                    "tokens; give it the admin or service role on its project"
                )
            raise self._unavailable(
                f"identity at {self.auth_url} answered HTTP {status} to a token validation"
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _context(self, body: dict[str, Any]) -> RequestContext:
        user = body["user"]
        project = body.get("project")
        is_admin_project = body.get("is_admin_project")
        if not isinstance(is_admin_project, bool):
            is_admin_project = bool(
                isinstance(project, dict)
                and ((project.get("domain") or {}).get("name"), project.get("name"))
                == self.admin_project
            )
        system = body.get("system")
        return RequestContext(
            user_id=user["id"],
            user_name=user.get("name"),
            user_domain_id=_ref_id(user.get("domain")),
            project_id=_ref_id(project),
            project_name=project.get("name") if isinstance(project, dict) else None,
            project_domain_id=_ref_id(project.get("domain")) if isinstance(project, dict) else None,
            domain_id=_ref_id(body.get("domain")),
            roles=[str(role["name"]) for role in body.get("roles", [])],
            is_admin_project=is_admin_project,
            audit_ids=[str(a) for a in body.get("audit_ids", [])],
            expires_at=body.get("expires_at"),
            system_scope="all" if isinstance(system, dict) and system.get("all") else None,
        )
