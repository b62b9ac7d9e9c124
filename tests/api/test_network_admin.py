"""Quotas (Neutron's defaults, per-project limits, details, 409 OverQuota) and agents (admins
only; rows written by the RPC endpoint's ``report_state``, ``alive`` from the heartbeat)."""

from __future__ import annotations

import pytest

from control.common.context import RequestContext
from control.common.db import Database
from control.network.rpc import NetworkEndpoint
from tests.api.network_env import NetworkEnv, assert_error, unique

pytestmark = pytest.mark.mariadb


def test_quota_defaults_and_details(network: NetworkEnv) -> None:
    project = network.project_id("a")
    network.network()
    quota = network.get(f"/quotas/{project}").get_json()["quota"]
    assert quota == {
        "network": 100,
        "subnet": 100,
        "port": 500,
        "router": 10,
        "floatingip": 50,
        "security_group": 10,
        "security_group_rule": 100,
    }
    details = network.get(f"/quotas/{project}/details").get_json()["quota"]
    assert details["network"]["limit"] == 100
    assert details["network"]["used"] >= 1
    assert details["network"]["reserved"] == 0
    assert network.get(f"/quotas/{project}/default").get_json()["quota"]["port"] == 500
    assert_error(network.get(f"/quotas/{network.project_id('b')}"), 403, "PolicyNotAuthorized")
    resp = network.put(f"/quotas/{project}", {"quota": {"network": 1}})
    assert_error(resp, 403, "PolicyNotAuthorized")


def test_over_quota_is_409(network: NetworkEnv) -> None:
    who = network.new_account("quota")
    project = network.project_id(who)
    resp = network.put(
        f"/quotas/{project}", {"quota": {"network": 1, "security_group": 1}}, "admin"
    )
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["quota"]["network"] == 1
    listed = network.get("/quotas", "admin").get_json()["quotas"]
    assert project in {q["project_id"] for q in listed}

    network.network(who)
    resp = network.post("/networks", {"network": {"name": unique()}}, who)
    assert_error(resp, 409, "OverQuota", "Quota exceeded for resources: ['network'].")
    # The default group counts but is never refused; a second group is over quota.
    resp = network.post("/security-groups", {"security_group": {"name": "x"}}, who)
    assert_error(resp, 409, "OverQuota", "security_group")
    resp = network.put(f"/quotas/{project}", {"quota": {"network": -2}}, "admin")
    assert_error(resp, 400, None, "quota.network")

    assert network.delete(f"/quotas/{project}", "admin").status_code == 204
    network.network(who)


def test_agents_from_report_state(network: NetworkEnv) -> None:
    database = Database(network.db_url)
    endpoint = NetworkEndpoint(database, agent_down_time=5)
    host = unique("host")
    try:
        answer = endpoint.report_state(
            RequestContext(),
            host=host,
            agent_type="Linux bridge agent",
            binary="cirrus-network-agent",
            configurations={"tunneling_ip": "192.0.2.7"},
        )
        agents = network.listing("agent", f"host={host}", "admin")
        assert len(agents) == 1
        agent = agents[0]
        assert agent["id"] == answer["id"]
        assert agent["alive"] is True
        assert agent["agent_type"] == "Linux bridge agent"
        assert agent["configurations"] == {"tunneling_ip": "192.0.2.7"}
        assert_error(network.get("/agents"), 403, "PolicyNotAuthorized")

        resp = network.put(f"/agents/{agent['id']}", {"agent": {"admin_state_up": False}}, "admin")
        assert resp.get_json()["agent"]["admin_state_up"] is False
        again = endpoint.report_state(
            RequestContext(), host=host, agent_type="Linux bridge agent", binary="b"
        )
        assert again == {"id": agent["id"], "admin_state_up": False}
        assert endpoint.get_vxlan_peers(RequestContext()).get(host) is None  # config replaced

        with database.transaction() as sess:
            from control.network import models

            row = sess.get(models.Agent, agent["id"])
            assert row is not None
            row.heartbeat_timestamp = row.heartbeat_timestamp.replace(year=2000)
        assert network.show("agent", agent["id"], "admin")["alive"] is False
        assert network.delete(f"/agents/{agent['id']}", "admin").status_code == 204
        assert_error(network.get(f"/agents/{agent['id']}", "admin"), 404, "AgentNotFound")
    finally:
        database.dispose()
