"""Finding another service's public endpoint in identity's catalog, with a user's token.

Used by compute-api (the image, network and volume endpoints), by compute agents (to download
images with the token of the user who asked for the server) and by volume-api (to check
``imageRef``). An explicit URL from the configuration wins.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import requests

_CACHE_TTL = 300.0
_cache: dict[tuple[str, str, str], tuple[float, str]] = {}
_lock = threading.Lock()


class CatalogError(Exception):
    """The catalog could not be read, or has no public endpoint of the wanted type."""


class EndpointNotFound(CatalogError):
    """The catalog was read and has no public endpoint of the wanted type (not cached: a service
    registered later is found at the next look-up)."""


def public_endpoint(
    auth_url: str,
    token: str,
    service_type: str,
    session: requests.Session | None = None,
    timeout: float = 10.0,
    scope: str = "",
) -> str:
    """The public URL of ``service_type`` from the catalog of ``token`` (cached 5 minutes).

    ``scope`` is part of the cache key: endpoints whose URL carries the project id (the volume
    service's ``/v3/<project_id>``) are cached per project."""
    key = (auth_url, service_type, scope)
    now = time.monotonic()
    with _lock:
        hit = _cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
    http: Any = session or requests
    try:
        response = http.get(
            f"{auth_url.rstrip('/')}/auth/tokens",
            headers={"X-Auth-Token": token, "X-Subject-Token": token},
            timeout=timeout,
        )
    except requests.RequestException as exc:
        raise CatalogError(f"identity at {auth_url} did not answer: {exc}") from None
    if response.status_code != 200:
        raise CatalogError(f"identity refused the token: {response.status_code}")
    for entry in response.json().get("token", {}).get("catalog", []):
        if entry.get("type") != service_type:
            continue
        for endpoint in entry.get("endpoints", []):
            if endpoint.get("interface") == "public":
                url = str(endpoint["url"]).rstrip("/")
                with _lock:
                    _cache[key] = (now + _CACHE_TTL, url)
                return url
    raise EndpointNotFound(f"the catalog has no public {service_type} endpoint")
