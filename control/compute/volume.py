"""compute-api's client of the volume API (Nova's ``nova/volume/cinder.py``, legacy attach flow).

The volume endpoint comes from the user's catalog (type ``volumev3``, then ``block-storage``;
``[volume] api_url`` overrides it), as :mod:`control.compute.network` finds the network one; its
URL carries the project (``/v3/<project_id>``), so look-ups are cached per project. Every call
uses the caller's token (docs/block-storage-contract.md, "The volume API actions compute uses").

The flows that use it live in :mod:`control.compute.api.servers`:

- attach: GET the volume -> ``os-reserve`` -> ``os-initialize_connection`` (connector host = the
  server's host) -> the agent hot-plugs it -> ``os-attach``; a failure after the reserve undoes
  it with :func:`rollback` (``os-terminate_connection`` + ``os-unreserve``): the volume is
  ``available`` again.
- detach: ``os-begin_detaching`` -> the agent unplugs it (failure: ``os-roll_detaching``) ->
  ``os-terminate_connection`` -> ``os-detach``.
- server delete: :func:`release` of each volume (never raises: a volume service that is down
  is logged, the server goes regardless), ``delete_on_termination`` volumes deleted.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import request

from control.common import catalog, errors
from control.common.service_client import ServiceAPIError, ServiceClient
from control.compute.api import common

LOG = logging.getLogger("cirrus.compute.volume")

TIMEOUT = 60.0
SERVICE_TYPES = ("volumev3", "block-storage")


class VolumeAPIError(ServiceAPIError):
    """The volume API answered with an error (``status``) or not at all (``status`` 0)."""


class Client(ServiceClient):
    """The volume API at ``url`` (``.../v3/<project_id>``) with one token."""

    service = "the volume service"
    headers = {"OpenStack-API-Version": "volume 3.0"}
    timeout = TIMEOUT
    error = VolumeAPIError

    # -- the calls compute makes -----------------------------------------------------------------

    def get(self, volume_id: str) -> dict[str, Any]:
        volume: dict[str, Any] = self.call("GET", f"/volumes/{volume_id}")["volume"]
        return volume

    def action(self, volume_id: str, name: str, args: Any = None) -> Any:
        """``POST /volumes/{id}/action`` ``{name: args}``; the answer body (or None)."""
        return self.call(
            "POST", f"/volumes/{volume_id}/action", {name: args}, expect=(200, 202, 204)
        )

    def reserve(self, volume_id: str) -> None:
        self.action(volume_id, "os-reserve")

    def unreserve(self, volume_id: str) -> None:
        self.action(volume_id, "os-unreserve")

    def initialize_connection(self, volume_id: str, host: str) -> dict[str, Any]:
        answer = self.action(volume_id, "os-initialize_connection", {"connector": connector(host)})
        info = (answer or {}).get("connection_info")
        if not isinstance(info, dict):
            raise VolumeAPIError(f"the volume service gave no connection info for {volume_id}")
        return info

    def attach(self, volume_id: str, instance_uuid: str, mountpoint: str, host: str) -> None:
        self.action(
            volume_id,
            "os-attach",
            {
                "instance_uuid": instance_uuid,
                "mountpoint": mountpoint,
                "host_name": host,
                "mode": "rw",
            },
        )

    def begin_detaching(self, volume_id: str) -> None:
        self.action(volume_id, "os-begin_detaching")

    def roll_detaching(self, volume_id: str) -> None:
        self.action(volume_id, "os-roll_detaching")

    def terminate_connection(self, volume_id: str, host: str) -> None:
        self.action(volume_id, "os-terminate_connection", {"connector": connector(host)})

    def detach(self, volume_id: str, attachment_id: str | None) -> None:
        self.action(
            volume_id, "os-detach", {"attachment_id": attachment_id} if attachment_id else {}
        )

    def delete(self, volume_id: str) -> None:
        self.call("DELETE", f"/volumes/{volume_id}", expect=(202, 204, 404))


def connector(host: str) -> dict[str, Any]:
    """What compute tells the volume service about the host that connects (Nova's connector,
    cut to what the NBD exports need)."""
    return {"host": host}


# -- endpoints and clients -----------------------------------------------------------------------


def _user_token() -> str:
    return request.headers.get("X-Auth-Token", "")


def endpoint() -> str | None:
    """The volume API's URL for the caller's project, ``None`` when the catalog has none."""
    settings = common.settings()
    project = common.project_id() or ""
    if settings.volume_api_url:
        url = settings.volume_api_url
        for placeholder in ("$(project_id)s", "%(project_id)s", "$(tenant_id)s", "%(tenant_id)s"):
            url = url.replace(placeholder, project)
        return url.rstrip("/")
    for service_type in SERVICE_TYPES:
        try:
            return catalog.public_endpoint(
                settings.auth_url, _user_token(), service_type, scope=project
            )
        except catalog.EndpointNotFound:
            continue
        except catalog.CatalogError as exc:
            raise errors.ServiceUnavailable(f"Cannot find the volume service: {exc}") from None
    return None


def user_client() -> Client | None:
    """A client with the caller's token; ``None`` without a volume service."""
    url = endpoint()
    return Client(url, _user_token()) if url else None


def require_client() -> Client:
    """A client with the caller's token; 400 when there is no volume service to use."""
    client = user_client()
    if client is None:
        raise errors.BadRequest(
            "Volumes cannot be used: there is no volume service (volumev3 or block-storage) "
            "in the catalog."
        )
    return client


def unavailable(exc: VolumeAPIError) -> errors.APIError:
    """The API error for a volume service that failed where it should not have."""
    return errors.ServiceUnavailable(f"The volume service failed: {exc.message}")


# -- undoing -------------------------------------------------------------------------------------


def rollback(client: Client, volume_id: str, host: str | None, attached: bool = False) -> None:
    """Make a volume that was reserved (and maybe connected, maybe attached) ``available``
    again; never raises (what fails is logged)."""
    if host:
        try:
            client.terminate_connection(volume_id, host)
        except VolumeAPIError as exc:
            LOG.warning("volume %s: terminate_connection failed: %s", volume_id, exc.message)
    try:
        if attached:
            client.detach(volume_id, None)
        else:
            client.unreserve(volume_id)
    except VolumeAPIError as exc:
        LOG.warning("volume %s: could not make it available again: %s", volume_id, exc.message)


def release(
    client: Client | None,
    volume_id: str,
    host: str | None,
    attachment_id: str | None,
    delete: bool,
) -> None:
    """A server's volume when the server goes: exports stopped, attachment removed (or the
    reservation dropped), and the volume deleted when ``delete``. Never raises."""
    if client is None:
        LOG.warning("volume %s left attached: no volume service", volume_id)
        return
    try:
        if host:
            client.terminate_connection(volume_id, host)
        if attachment_id:
            client.detach(volume_id, attachment_id)
        else:
            status = client.get(volume_id).get("status")
            if status == "attaching":
                client.unreserve(volume_id)
            elif status in ("in-use", "detaching"):
                client.detach(volume_id, None)
        if delete:
            client.delete(volume_id)
    except VolumeAPIError as exc:
        if exc.status == 404:
            return
        LOG.warning("volume %s of a deleted server left behind: %s", volume_id, exc.message)
