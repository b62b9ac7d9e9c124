"""The l3-agent's router parsing and NAT ruleset: what is generated from valid routers, and that
anything that could smuggle text into a command line or a ruleset is refused."""

from __future__ import annotations

import copy
import subprocess
import time
from typing import Any

import pytest

from agents.l3 import rules
from agents.l3.agent import L3Agent, is_router_namespace

ROUTER = "11111111-2222-3333-4444-555555555555"
GW_PORT = "aaaaaaaa-0000-0000-0000-000000000001"
QR_PORT = "bbbbbbbb-0000-0000-0000-000000000002"
QR2_PORT = "bbbbbbbb-1111-0000-0000-000000000003"
EXT_NET = "cccccccc-0000-0000-0000-000000000004"
INT_NET = "dddddddd-0000-0000-0000-000000000005"
FIP = "eeeeeeee-0000-0000-0000-000000000006"


def body(**changes: Any) -> dict[str, Any]:
    router: dict[str, Any] = {
        "id": ROUTER,
        "project_id": "p",
        "admin_state_up": True,
        "gateway": {
            "port_id": GW_PORT,
            "mac_address": "FA:16:3E:00:00:01",
            "network_id": EXT_NET,
            "ips": [
                {
                    "ip_address": "172.24.4.10",
                    "prefixlen": 24,
                    "subnet_id": "s",
                    "gateway_ip": "172.24.4.1",
                },
                {
                    "ip_address": "2001:db8::10",
                    "prefixlen": 64,
                    "subnet_id": "s6",
                    "gateway_ip": "2001:db8::1",
                },
            ],
            "enable_snat": True,
        },
        "interfaces": [
            {
                "port_id": QR_PORT,
                "mac_address": "fa:16:3e:00:00:02",
                "network_id": INT_NET,
                "ip_address": "10.0.0.1",
                "prefixlen": 24,
                "subnet_id": "x",
                "cidr": "10.0.0.0/24",
            },
            {
                "port_id": QR2_PORT,
                "mac_address": "fa:16:3e:00:00:03",
                "network_id": INT_NET,
                "ip_address": "10.0.1.1",
                "prefixlen": 24,
                "subnet_id": "y",
                "cidr": "10.0.1.0/24",
            },
        ],
        "floating_ips": [
            {
                "id": FIP,
                "floating_ip_address": "172.24.4.20",
                "fixed_ip_address": "10.0.0.5",
                "port_id": "whatever",
            }
        ],
    }
    router.update(changes)
    return router


def test_parse_names_everything_with_naming() -> None:
    router = rules.parse_router(body())
    assert router.namespace == f"qrouter-{ROUTER}"
    assert router.gateway is not None
    assert router.gateway.device == "qg-aaaaaaaa-00"
    assert router.gateway.peer == "tapaaaaaaaa-00"
    assert router.gateway.bridge == "brqcccccccc-00"
    assert router.gateway.mac == "fa:16:3e:00:00:01"
    assert [str(a) for a in router.gateway.addresses] == ["172.24.4.10/24"]  # IPv6 skipped
    assert str(router.gateway.gateway_ip) == "172.24.4.1"
    assert [i.device for i in router.interfaces] == ["qr-bbbbbbbb-00", "qr-bbbbbbbb-11"]
    assert str(router.interfaces[0].address) == "10.0.0.1/24"
    assert [(str(f.floating), str(f.fixed)) for f in router.floating_ips] == [
        ("172.24.4.20", "10.0.0.5")
    ]


def test_render_snat_and_floating_ip() -> None:
    text = rules.render(rules.parse_router(body()))
    assert text == (
        "table ip cirrus-nat {}\n"
        "delete table ip cirrus-nat\n"
        "table ip cirrus-nat {\n"
        "\tchain prerouting {\n"
        "\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
        '\t\tiifname "qg-aaaaaaaa-00" ip daddr 172.24.4.20 dnat to 10.0.0.5\n'
        "\t}\n"
        "\tchain postrouting {\n"
        "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
        '\t\toifname "qg-aaaaaaaa-00" ip saddr 10.0.0.5 snat to 172.24.4.20\n'
        '\t\toifname "qg-aaaaaaaa-00" ip saddr { 10.0.0.0/23 } snat to 172.24.4.10\n'
        "\t}\n"
        "}\n"
    )


def test_render_without_snat_keeps_floating_ips() -> None:
    router = body()
    router["gateway"]["enable_snat"] = False
    text = rules.render(rules.parse_router(router))
    assert "snat to 172.24.4.20" in text and "dnat to 10.0.0.5" in text
    assert "snat to 172.24.4.10" not in text


def test_render_without_gateway_only_removes_the_table() -> None:
    text = rules.render(rules.parse_router(body(gateway=None)))
    assert text == "table ip cirrus-nat {}\ndelete table ip cirrus-nat\n"


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("id",), "not-a-uuid"),
        (("id",), "11111111-2222-3333-4444-555555555555 x"),
        (("admin_state_up",), "yes"),
        (("gateway", "port_id"), "../../etc"),
        (("gateway", "network_id"), 7),
        (("gateway", "mac_address"), "fa:16:3e:00:00:01; drop"),
        (("gateway", "enable_snat"), "false"),
        (("gateway", "ips", 0, "ip_address"), "172.24.4.10 } accept"),
        (("gateway", "ips", 0, "ip_address"), "172.24.4.300"),
        (("gateway", "ips", 0, "prefixlen"), "24"),
        (("gateway", "ips", 0, "prefixlen"), 33),
        (("gateway", "ips", 0, "gateway_ip"), "nope"),
        (("interfaces", 0, "ip_address"), "10.0.0.1/24"),
        (("interfaces", 0, "ip_address"), None),
        (("interfaces", 0, "prefixlen"), True),
        (("interfaces", 0, "mac_address"), "fa-16-3e-00-00-02"),
        (("interfaces", 0, "mtu"), 10),
        (("interfaces", 0, "port_id"), 'bbbbbbbb-0000-0000-0000-000000000002"'),
        (("floating_ips", 0, "id"), None),
        (("floating_ips", 0, "floating_ip_address"), "172.24.4.20; flush ruleset"),
        (("floating_ips", 0, "fixed_ip_address"), "10.0.0.5\nflush ruleset"),
    ],
)
def test_invalid_values_are_refused(path: tuple[Any, ...], value: Any) -> None:
    router = copy.deepcopy(body())
    target: Any = router
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(rules.InvalidRouter):
        rules.render(rules.parse_router(router))


def test_duplicates_are_refused() -> None:
    router = body()
    router["floating_ips"].append(dict(router["floating_ips"][0], id=QR_PORT))
    with pytest.raises(rules.InvalidRouter, match="twice"):
        rules.parse_router(router)
    router = body()
    router["interfaces"][1]["port_id"] = QR_PORT[:-1] + "9"
    with pytest.raises(rules.InvalidRouter, match="two interfaces"):
        rules.parse_router(router)


def test_only_cirrus_router_namespaces_are_ours() -> None:
    assert is_router_namespace(f"qrouter-{ROUTER}")
    assert not is_router_namespace("qrouter-x")
    assert not is_router_namespace(f"qdhcp-{ROUTER}")
    assert not is_router_namespace("cirlab0")


class Recorder:
    """A runner that records argv lists and answers like an empty host."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def __call__(self, argv: Any, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append((argv, kwargs))
        out = ""
        if "-j" in argv:
            out = "[]"
        code = 1 if argv[-4:-1] == ["link", "show", "dev"] else 0
        stderr = 'Device "x" does not exist.' if code else ""
        return subprocess.CompletedProcess(argv, code, out, stderr)


class FakeAPI:
    def __init__(self, routers: list[dict[str, Any]]) -> None:
        self.routers = routers
        self.statuses: list[tuple[str, dict[str, str]]] = []

    def report_state(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {}

    def get_routers(self, ctxt: Any, host: str) -> list[dict[str, Any]]:
        return self.routers

    def update_floatingip_statuses(self, ctxt: Any, router_id: str, statuses: Any) -> int:
        self.statuses.append((router_id, dict(statuses)))
        return len(statuses)


def test_agent_runs_argument_lists_never_a_shell() -> None:
    runner = Recorder()
    api = FakeAPI([body()])
    agent = L3Agent("h", api, runner=runner)
    result = agent.resync()
    assert result.wired == [ROUTER], result
    assert api.statuses == [(ROUTER, {FIP: "ACTIVE"})]
    for argv, kwargs in runner.calls:
        assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
        assert not kwargs.get("shell")
    argvs = [argv for argv, _ in runner.calls]
    assert ["ip", "netns", "add", f"qrouter-{ROUTER}"] in argvs
    ns = f"qrouter-{ROUTER}"
    assert ["ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"] in argvs
    nft = [(argv, kw) for argv, kw in runner.calls if "nft" in argv]
    assert nft[0][0] == ["ip", "netns", "exec", ns, "nft", "-f", "-"]
    assert "dnat to 10.0.0.5" in nft[0][1]["input"]
    # a second resync reports nothing new
    agent.resync()
    assert len(api.statuses) == 1


def test_agent_skips_a_bad_router_and_reports_its_floating_ips_down() -> None:
    runner = Recorder()
    bad = body()
    bad["interfaces"][0]["mac_address"] = "nope"
    api = FakeAPI([bad])
    result = L3Agent("h", api, runner=runner).resync()
    assert result.failed == [ROUTER] and result.wired == []
    assert api.statuses == [(ROUTER, {FIP: "DOWN"})]
    assert not any("add" in argv for argv, _ in runner.calls)


def _wait(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


class CountingAPI(FakeAPI):
    def __init__(self) -> None:
        super().__init__([])
        self.calls = 0
        self.reports: list[dict[str, Any]] = []

    def report_state(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.reports.append({"args": args, **kwargs})
        return {}

    def get_routers(self, ctxt: Any, host: str) -> list[dict[str, Any]]:
        self.calls += 1
        return []


def test_loop_resyncs_on_start_notification_and_reconnect() -> None:
    api = CountingAPI()
    online = {"value": True}
    agent = L3Agent("h", api, resync_interval=3600, debounce=0, runner=Recorder())
    agent.connected = lambda: online["value"]
    agent.start()
    try:
        assert _wait(lambda: api.calls == 1)
        assert api.reports[0]["args"][1:4] == ("h", "L3 agent", "cirrus-l3-agent")
        assert api.reports[0]["start_flag"] is True
        agent.router_update(None, router_id=ROUTER)  # type: ignore[arg-type]
        assert _wait(lambda: api.calls == 2)
        agent.port_update(None)  # type: ignore[arg-type]
        time.sleep(0.2)
        assert api.calls == 2
        online["value"] = False
        time.sleep(1.2)
        online["value"] = True
        assert _wait(lambda: api.calls == 3)
    finally:
        agent.stop()
