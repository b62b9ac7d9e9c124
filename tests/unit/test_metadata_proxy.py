"""The l3 agent's metadata proxy (agents/l3/metadata_proxy.py): the redirect table, finding the
instance, the signed headers, forwarding to a stub metadata API on localhost, and the
``[metadata]`` configuration. The real namespaces are in tests/integration/test_l3_agent.py."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from agents.l3 import metadata_proxy as mp
from agents.l3 import rules, service
from control.common import config
from control.common.context import RequestContext
from control.common.rpc import RPCTimeout
from control.metadata import signing

NET = "3f1c9a52-3b0e-4d7a-9c6e-0b3f2a1d4e5f"
OTHER_NET = "4a1c9a52-3b0e-4d7a-9c6e-0b3f2a1d4e5f"
INSTANCE = "6f1c9a52-3b0e-4d7a-9c6e-0b3f2a1d4e5f"
PROJECT = "0123456789abcdef0123456789abcdef"


def interface(network_id: str, address: str) -> rules.Interface:
    return rules.Interface(
        port_id="aaaaaaaa-3b0e-4d7a-9c6e-0b3f2a1d4e5f",
        network_id=network_id,
        mac="fa:16:3e:00:00:01",
        address=ipaddress.IPv4Interface(address),
    )


class FakeRPC:
    def __init__(self, answer: Any = None, error: Exception | None = None) -> None:
        self.answer = answer
        self.error = error
        self.calls: list[tuple[str, str]] = []

    def get_instance_port(
        self, ctxt: RequestContext, network_id: str, ip_address: str
    ) -> dict[str, str] | None:
        self.calls.append((network_id, ip_address))
        if self.error is not None:
            raise self.error
        result: dict[str, str] | None = self.answer
        return result


class Upstream:
    """A stub metadata API on 127.0.0.1 recording what it was sent."""

    def __init__(self, status: int = 200, body: bytes = b'{"uuid": "x"}') -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.requests.append(("GET", self.path, dict(self.headers)))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    made = Upstream()
    try:
        yield made
    finally:
        made.close()


def proxy(api: FakeRPC, port: int = 1, **kwargs: Any) -> mp.MetadataProxy:
    return mp.MetadataProxy(api, "127.0.0.1", "s3cret", port=port, **kwargs)


def test_redirect_table() -> None:
    text = mp.render(9697)
    assert text.startswith("table ip cirrus-metadata {}\ndelete table ip cirrus-metadata\n")
    assert 'iifname "qr-*" ip daddr 169.254.169.254 tcp dport 80 redirect to :9697' in text
    assert "type nat hook prerouting priority dstnat" in text
    for bad in (0, 65536, True):
        with pytest.raises(ValueError):
            mp.render(bad)


def test_network_of_the_source() -> None:
    interfaces = [interface(NET, "10.0.0.1/24"), interface(OTHER_NET, "10.0.1.1/24")]
    assert mp.network_of(interfaces, "10.0.0.5") == NET
    assert mp.network_of(interfaces, "10.0.1.200") == OTHER_NET
    assert mp.network_of(interfaces, "10.0.2.5") is None
    assert mp.network_of(interfaces, "not an address") is None
    assert mp.network_of(interfaces, "fe80::1") is None


def test_instance_answers_are_validated() -> None:
    good = {"port_id": "p", "device_id": INSTANCE, "project_id": PROJECT}
    assert mp.parse_instance(good) == mp.Instance(INSTANCE, PROJECT)
    assert mp.parse_instance(None) is None
    assert mp.parse_instance("x") is None
    assert mp.parse_instance({**good, "device_id": ""}) is None
    assert mp.parse_instance({**good, "device_id": INSTANCE + "\r\nX-Evil: 1"}) is None
    assert mp.parse_instance({**good, "project_id": "a b"}) is None
    assert mp.parse_instance({**good, "project_id": None}) is None


def test_signed_headers() -> None:
    headers = mp.upstream_headers("s3cret", mp.Instance(INSTANCE, PROJECT), "10.0.0.5")
    assert headers[signing.INSTANCE_ID] == INSTANCE
    assert headers[signing.TENANT_ID] == PROJECT
    assert headers[signing.FORWARDED_FOR] == "10.0.0.5"
    assert signing.verify("s3cret", INSTANCE, headers[signing.SIGNATURE])


def test_paths() -> None:
    assert mp.valid_path("/openstack/latest/meta_data.json")
    assert mp.valid_path("/latest/meta-data/?x=1")
    assert mp.valid_path("/")
    for bad in ("http://evil/", "//evil/x", "", "/a b", "/a\r\nHost: x", "x/y", "/" + "a" * 3000):
        assert not mp.valid_path(bad), bad


def test_cache_keeps_answers_for_a_while() -> None:
    now = [100.0]
    cache = mp.InstanceCache(ttl=30, negative_ttl=5, clock=lambda: now[0])
    instance = mp.Instance(INSTANCE, PROJECT)
    cache.put((NET, "10.0.0.5"), instance)
    cache.put((NET, "10.0.0.6"), None)
    assert cache.get((NET, "10.0.0.5")) == (True, instance)
    assert cache.get((NET, "10.0.0.6")) == (True, None)
    assert cache.get((NET, "10.0.0.7")) == (False, None)
    now[0] += 6
    assert cache.get((NET, "10.0.0.6")) == (False, None)
    assert cache.get((NET, "10.0.0.5")) == (True, instance)
    now[0] += 25
    assert cache.get((NET, "10.0.0.5")) == (False, None)


def test_answer_forwards_signed_and_caches(upstream: Upstream) -> None:
    api = FakeRPC({"port_id": "p", "device_id": INSTANCE, "project_id": PROJECT})
    px = proxy(api, upstream.port)
    interfaces = [interface(NET, "10.0.0.1/24")]
    status, ctype, body = px.answer("r", interfaces, "GET", "/openstack/latest/meta_data.json?a=1",
                                    "10.0.0.5")  # fmt: skip
    assert (status, ctype, body) == (200, "application/json", b'{"uuid": "x"}')
    method, path, headers = upstream.requests[-1]
    assert path == "/openstack/latest/meta_data.json?a=1"
    assert headers[signing.INSTANCE_ID] == INSTANCE
    assert headers[signing.TENANT_ID] == PROJECT
    assert headers[signing.FORWARDED_FOR] == "10.0.0.5"
    assert signing.verify("s3cret", INSTANCE, headers[signing.SIGNATURE])
    px.answer("r", interfaces, "GET", "/openstack", "10.0.0.5")
    assert api.calls == [(NET, "10.0.0.5")]  # the second came from the cache


def test_answer_refusals(upstream: Upstream) -> None:
    interfaces = [interface(NET, "10.0.0.1/24")]
    unknown = proxy(FakeRPC(None), upstream.port)
    assert unknown.answer("r", interfaces, "GET", "/openstack", "10.0.0.9")[0] == 404
    assert unknown.answer("r", interfaces, "GET", "/openstack", "192.0.2.1")[0] == 404
    assert unknown.answer("r", interfaces, "GET", "http://x/", "10.0.0.9")[0] == 400
    bad = proxy(FakeRPC({"device_id": "", "project_id": PROJECT}), upstream.port)
    assert bad.answer("r", interfaces, "GET", "/openstack", "10.0.0.9")[0] == 404
    timeout = proxy(FakeRPC(error=RPCTimeout("network", "get_instance_port", 1)), upstream.port)
    assert timeout.answer("r", interfaces, "GET", "/openstack", "10.0.0.9")[0] == 504
    broken = proxy(FakeRPC(error=RuntimeError("boom")), upstream.port)
    assert broken.answer("r", interfaces, "GET", "/openstack", "10.0.0.9")[0] == 502
    assert upstream.requests == []


def test_upstream_down_is_502_and_silent_is_504() -> None:
    api = FakeRPC({"port_id": "p", "device_id": INSTANCE, "project_id": PROJECT})
    interfaces = [interface(NET, "10.0.0.1/24")]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    status, _ctype, body = proxy(api, closed).answer("r", interfaces, "GET", "/x", "10.0.0.5")
    assert (status, body) == (502, b"Bad Gateway\n")
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        px = proxy(api, silent.getsockname()[1], timeout=0.3)
        assert px.answer("r", interfaces, "GET", "/x", "10.0.0.5")[0] == 504


def conf(tmp_path: Path, text: str) -> config.Config:
    path = tmp_path / "l3-agent.conf"
    path.write_text(text)
    return config.load("l3-agent", path)


def test_configuration(tmp_path: Path) -> None:
    api = FakeRPC()
    assert service.build_proxy(conf(tmp_path, "[l3]\n"), api) is None
    assert service.build_proxy(conf(tmp_path, "[metadata]\nhost =\n"), api) is None
    with pytest.raises(config.ConfigError, match=r"l3-agent.conf: \[metadata\] shared_secret"):
        service.build_proxy(conf(tmp_path, "[metadata]\nhost = 10.0.0.10\n"), api)
    with pytest.raises(config.ConfigError, match=r"\[metadata\] proxy_port"):
        service.build_proxy(
            conf(tmp_path, "[metadata]\nhost = h\nshared_secret = s\nproxy_port = 0\n"), api
        )
    built = service.build_proxy(
        conf(tmp_path, "[metadata]\nhost = 10.0.0.10\nshared_secret = s\n"), api
    )
    assert built is not None
    assert (built.host, built.port, built.proxy_port, built.secret) == ("10.0.0.10", 8775, 9697,
                                                                      "s")  # fmt: skip
    built = service.build_proxy(
        conf(tmp_path, "[metadata]\nhost = m\nport = 18775\nshared_secret = s\n"
                       "proxy_port = 19697\n"), api,
    )  # fmt: skip
    assert built is not None and (built.port, built.proxy_port) == (18775, 19697)
