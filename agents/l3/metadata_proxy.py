"""The metadata proxy: guests' ``http://169.254.169.254/`` answered from the router's namespace.

A :class:`~agents.l3.agent.RouterHook` of the l3 agent (``L3Agent(hooks=[MetadataProxy(...)])``).
Per router namespace ``qrouter-<id>``, with no extra process:

- a table of its own, replaced in one ``nft -f -`` transaction inside the namespace (separate
  from the NAT table of :mod:`agents.l3.rules`, so it stays when the router has no gateway)::

      table ip cirrus-metadata {
          chain prerouting {
              type nat hook prerouting priority dstnat; policy accept;
              iifname "qr-*" ip daddr 169.254.169.254 tcp dport 80 redirect to :9697
          }
      }

- a TCP socket listening on ``0.0.0.0:9697`` *inside* the namespace: made by a short-lived
  thread that entered the namespace with ``setns(2)`` (which affects only the calling thread; a
  socket keeps the namespace it was made in), served by a :class:`ThreadingHTTPServer` of the
  agent process. Connections to metadata-api leave from the agent's own namespace.

For each request the guest is the source address; the router interface whose subnet holds it
names the network, and ``get_instance_port(network_id, ip_address)`` (cached ``cache_ttl``
seconds, unknown addresses ``negative_ttl``) the instance and its project. No such port: 404.
The request (GET or HEAD; path and query kept, the guest's headers dropped) goes to
``http://<host>:<port><path>`` with ``X-Instance-ID``, ``X-Tenant-ID``, ``X-Forwarded-For`` and
``X-Instance-ID-Signature`` (:func:`control.metadata.signing.sign`); status, ``Content-Type`` and
body come back. metadata-api unreachable: 502; too slow: 504 (both logged).

The listener closes when the router goes (``router_removed``, before its namespace is deleted)
and on :meth:`MetadataProxy.stop`; a namespace recreated under the same name gets a new one.
"""

from __future__ import annotations

import ctypes
import http.client
import ipaddress
import logging
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from agents.l3 import rules
from agents.network import linux, nftables
from control.common.context import RequestContext
from control.common.rpc import RPCTimeout
from control.metadata import signing

LOG = logging.getLogger("cirrus.l3.metadata")

METADATA_ADDRESS = "169.254.169.254"
DEFAULT_PROXY_PORT = 9697
DEFAULT_UPSTREAM_PORT = 8775
TABLE = "cirrus-metadata"
MAX_BODY = 16 * 1024 * 1024  # bytes of an answer passed back (user data is at most 64 KiB)
CLONE_NEWNET = 0x40000000
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_PROJECT = re.compile(r"^[0-9A-Za-z_-]{1,64}$")
_PATH = re.compile(r"^/[\x21-\x7e]{0,2047}$")  # origin-form, printable, no spaces


class MetadataRPC(Protocol):
    def get_instance_port(
        self, ctxt: RequestContext, network_id: str, ip_address: str
    ) -> dict[str, str] | None: ...


@dataclass(frozen=True)
class Instance:
    id: str
    project_id: str


# -- pure parts ----------------------------------------------------------------------------------


def render(proxy_port: int) -> str:
    """The namespace's redirect table (replacing what exists)."""
    if isinstance(proxy_port, bool) or not 1 <= int(proxy_port) <= 65535:
        raise ValueError(f"invalid proxy port {proxy_port!r}")
    return (
        f"table ip {TABLE} {{}}\n"
        f"delete table ip {TABLE}\n"
        f"table ip {TABLE} {{\n"
        "\tchain prerouting {\n"
        "\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
        f'\t\tiifname "qr-*" ip daddr {METADATA_ADDRESS} tcp dport 80 '
        f"redirect to :{int(proxy_port)}\n"
        "\t}\n"
        "}\n"
    )


def network_of(interfaces: Sequence[rules.Interface], source: str) -> str | None:
    """The network id of the router interface whose subnet holds ``source``."""
    try:
        address = ipaddress.IPv4Address(source)
    except ValueError:
        return None
    for intf in interfaces:
        if address in intf.address.network:
            return intf.network_id
    return None


def parse_instance(answer: Any) -> Instance | None:
    """``get_instance_port``'s answer, validated (it becomes request headers); None otherwise."""
    if not isinstance(answer, dict):
        return None
    device_id, project_id = answer.get("device_id"), answer.get("project_id")
    if not isinstance(device_id, str) or not _UUID.match(device_id):
        return None
    if not isinstance(project_id, str) or not _PROJECT.match(project_id):
        return None
    return Instance(device_id, project_id)


def upstream_headers(secret: str, instance: Instance, source: str) -> dict[str, str]:
    return {
        signing.INSTANCE_ID: instance.id,
        signing.TENANT_ID: instance.project_id,
        signing.SIGNATURE: signing.sign(secret, instance.id),
        signing.FORWARDED_FOR: source,
    }


def valid_path(path: str) -> bool:
    """An origin-form request target (``/openstack/latest/meta_data.json?x=y``)."""
    return bool(_PATH.match(path)) and not path.startswith("//")


class InstanceCache:
    """(network id, address) -> Instance or None, each kept for a while."""

    def __init__(
        self,
        ttl: float = 30.0,
        negative_ttl: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.clock = clock
        self._items: dict[tuple[str, str], tuple[float, Instance | None]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> tuple[bool, Instance | None]:
        """(found, value)."""
        with self._lock:
            item = self._items.get(key)
            if item is None or item[0] <= self.clock():
                self._items.pop(key, None)
                return False, None
            return True, item[1]

    def put(self, key: tuple[str, str], value: Instance | None) -> None:
        ttl = self.ttl if value is not None else self.negative_ttl
        with self._lock:
            now = self.clock()
            for stale in [k for k, (until, _v) in self._items.items() if until <= now]:
                del self._items[stale]
            self._items[key] = (now + ttl, value)


# -- the socket in the namespace ------------------------------------------------------------------


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def listen_in_namespace(path: str, port: int, backlog: int = 64) -> socket.socket:
    """A TCP socket listening on ``0.0.0.0:port`` in the network namespace at ``path``
    (``/run/netns/<name>``), made by a thread of its own that enters it."""
    result: dict[str, Any] = {}

    def make() -> None:
        try:
            with open("/proc/thread-self/ns/net", "rb") as home, open(path, "rb") as target:
                _setns(target.fileno())
                try:
                    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    try:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                        sock.bind(("0.0.0.0", port))
                        sock.listen(backlog)
                    except OSError:
                        sock.close()
                        raise
                    result["socket"] = sock
                finally:
                    _setns(home.fileno())  # the thread ends anyway; leave it as it came
        except OSError as exc:
            result["error"] = exc

    thread = threading.Thread(target=make, name="metadata-listen", daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    sock: socket.socket = result["socket"]
    return sock


# -- serving -------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    router: RouterProxy


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 15  # seconds a guest may take to send its request
    server_version = "cirrus-metadata-proxy"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 (the http.server naming)
        self._proxy("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._proxy("HEAD")

    def _proxy(self, method: str) -> None:
        status, content_type, body = self.server.router.handle(
            method, self.path, self.client_address[0]
        )
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        LOG.debug("%s %s", self.client_address[0], format % args)


Answer = tuple[int, str, bytes]  # status, content type, body


def _text(status: int, message: str) -> Answer:
    return status, "text/plain; charset=utf-8", (message + "\n").encode()


class RouterProxy:
    """One router's listener and what it needs to answer."""

    def __init__(
        self, owner: MetadataProxy, router: rules.Router, namespace: str, inode: int
    ) -> None:
        self.owner = owner
        self.router_id = router.id
        self.namespace = namespace
        self.inode = inode
        self.interfaces = list(router.interfaces)
        sock = listen_in_namespace(owner.netns_path(namespace), owner.proxy_port)
        self.server = _Server(("0.0.0.0", owner.proxy_port), _Handler, bind_and_activate=False)
        self.server.socket.close()
        self.server.socket = sock
        self.server.server_address = sock.getsockname()
        self.server.router = self
        self.thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.5},
            name=f"metadata-{router.id[:8]}",
            daemon=True,
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def handle(self, method: str, path: str, source: str) -> Answer:
        return self.owner.answer(self.router_id, self.interfaces, method, path, source)


class MetadataProxy:
    """The hook: a listener and a redirect per router namespace (see the module docstring)."""

    def __init__(
        self,
        api: MetadataRPC,
        host: str,
        shared_secret: str,
        port: int = DEFAULT_UPSTREAM_PORT,
        proxy_port: int = DEFAULT_PROXY_PORT,
        cache_ttl: float = 30.0,
        negative_ttl: float = 5.0,
        timeout: float = 10.0,
        netns_dir: str = "/run/netns",
        runner: linux.Runner = subprocess.run,
    ) -> None:
        if not host or not shared_secret:
            raise ValueError("the metadata proxy needs the metadata host and the shared secret")
        render(proxy_port)  # validates it
        self.api = api
        self.host = host
        self.port = port
        self.secret = shared_secret
        self.proxy_port = proxy_port
        self.timeout = timeout
        self.netns_dir = netns_dir
        self.runner = runner
        self.cache = InstanceCache(cache_ttl, negative_ttl)
        self._routers: dict[str, RouterProxy] = {}  # namespace -> its proxy
        self._lock = threading.Lock()

    def netns_path(self, namespace: str) -> str:
        return os.path.join(self.netns_dir, linux.valid_netns(namespace))

    # -- RouterHook ----------------------------------------------------------------------------

    def router_updated(self, router: rules.Router) -> None:
        """Redirect and listener in place; a failure is logged (the router still routes) and
        retried at the next resync."""
        try:
            self._update(router)
        except (OSError, linux.CommandError) as exc:
            LOG.error("router %s: metadata proxy not set up: %s", router.id, exc)

    def _update(self, router: rules.Router) -> None:
        namespace = router.namespace
        nftables.Firewall(namespace, runner=self.runner).load(render(self.proxy_port))
        inode = os.stat(self.netns_path(namespace)).st_ino
        with self._lock:
            current = self._routers.get(namespace)
            if current is not None and current.inode != inode:
                LOG.info("router %s: namespace recreated; new metadata listener", router.id)
                current.close()
                current = None
                del self._routers[namespace]
            if current is None:
                self._routers[namespace] = RouterProxy(self, router, namespace, inode)
                LOG.info("router %s: metadata proxy on port %d", router.id, self.proxy_port)
            else:
                current.interfaces = list(router.interfaces)

    def router_removed(self, router_id: str, namespace: str) -> None:
        with self._lock:
            current = self._routers.pop(namespace, None)
        if current is not None:
            current.close()
            LOG.info("router %s: metadata proxy stopped", router_id)

    def stop(self) -> None:
        with self._lock:
            proxies, self._routers = list(self._routers.values()), {}
        for proxy in proxies:
            proxy.close()

    def listening(self) -> set[str]:
        """The namespaces served now."""
        with self._lock:
            return set(self._routers)

    # -- per request ---------------------------------------------------------------------------

    def answer(
        self,
        router_id: str,
        interfaces: Sequence[rules.Interface],
        method: str,
        path: str,
        source: str,
    ) -> Answer:
        """What a guest at ``source`` behind ``router_id``'s ``interfaces`` gets."""
        if not valid_path(path):
            return _text(400, "Bad Request")
        network_id = network_of(interfaces, source)
        if network_id is None:
            LOG.info("router %s: metadata request from %s, on none of its subnets",
                     router_id, source)  # fmt: skip
            return _text(404, "Not Found")
        try:
            instance = self.instance(network_id, source)
        except RPCTimeout as exc:
            LOG.warning("router %s: instance of %s not found out: %s", router_id, source, exc)
            return _text(504, "Gateway Timeout")
        except Exception as exc:
            LOG.warning("router %s: instance of %s not found out: %s", router_id, source, exc)
            return _text(502, "Bad Gateway")
        if instance is None:
            LOG.info("router %s: no instance has %s on network %s", router_id, source,
                     network_id)  # fmt: skip
            return _text(404, "Not Found")
        return self.forward(method, path, instance, source)

    def instance(self, network_id: str, address: str) -> Instance | None:
        key = (network_id, address)
        found, value = self.cache.get(key)
        if found:
            return value
        ctxt = RequestContext(roles=["admin", "service"])
        answer = self.api.get_instance_port(ctxt, network_id, address)
        value = parse_instance(answer)
        if answer is not None and value is None:
            LOG.warning("network %s, %s: unusable instance port %r", network_id, address, answer)
        self.cache.put(key, value)
        return value

    def forward(self, method: str, path: str, instance: Instance, source: str) -> Answer:
        headers = upstream_headers(self.secret, instance, source)
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, path, headers=headers)
            resp = conn.getresponse()
            body = resp.read(MAX_BODY + 1) if method != "HEAD" else b""
            if len(body) > MAX_BODY:
                LOG.warning("metadata answer to %s for %s too large", path, instance.id)
                return _text(502, "Bad Gateway")
            content_type = resp.getheader("Content-Type") or "application/octet-stream"
            return resp.status, content_type, body
        except TimeoutError as exc:
            LOG.warning("metadata API %s:%s timed out (%s for %s): %s", self.host, self.port,
                        path, instance.id, exc)  # fmt: skip
            return _text(504, "Gateway Timeout")
        except (OSError, http.client.HTTPException) as exc:
            LOG.warning("metadata API %s:%s failed (%s for %s): %s", self.host, self.port,
                        path, instance.id, exc)  # fmt: skip
            return _text(502, "Bad Gateway")
        finally:
            conn.close()
