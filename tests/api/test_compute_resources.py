"""compute-api: version discovery, flavors (extra specs, access), key pairs, limits and quotas."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.compute_env import ComputeEnv, env_fixture

pytestmark = [pytest.mark.mariadb, pytest.mark.rabbitmq]


@pytest.fixture(scope="module")
def env(
    mariadb: Any,
    identity_server: Any,
    image_server: Any,
    rabbitmq: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ComputeEnv]:
    yield from env_fixture(
        mariadb, identity_server, image_server, rabbitmq, tmp_path_factory, agents=0
    )


def ssh_key() -> str:
    blob = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + os.urandom(32)
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} test@cirrus"


# -- versions ------------------------------------------------------------------------------------


def test_version_discovery_is_public(env: ComputeEnv) -> None:
    resp = env.client.get("/")
    assert resp.status_code == 200
    (version,) = resp.get_json()["versions"]
    assert version["id"] == "v2.1"
    assert version["status"] == "CURRENT"
    assert version["version"] == "2.1"
    assert version["min_version"] == "2.1"
    assert version["updated"]
    assert version["links"][0]["rel"] == "self"
    assert version["links"][0]["href"].endswith("/v2.1/")
    single = env.client.get("/v2.1").get_json()["version"]
    assert single["id"] == "v2.1"


def test_unauthenticated_request_is_401(env: ComputeEnv) -> None:
    resp = env.client.get("/v2.1/flavors")
    assert resp.status_code == 401
    assert "WWW-Authenticate" in resp.headers


# -- flavors -------------------------------------------------------------------------------------


def test_flavor_crud_and_fields(env: ComputeEnv) -> None:
    body = {
        "flavor": {
            "name": "t.crud",
            "ram": 256,
            "vcpus": 2,
            "disk": 3,
            "id": "crud-1",
            "description": "for tests",
        }
    }
    created = env.post("/flavors", body, "admin")
    assert created.status_code == 200, created.get_json()
    flavor = created.get_json()["flavor"]
    for key in [
        "id",
        "name",
        "ram",
        "vcpus",
        "disk",
        "swap",
        "OS-FLV-EXT-DATA:ephemeral",
        "os-flavor-access:is_public",
        "OS-FLV-DISABLED:disabled",
        "rxtx_factor",
        "description",
        "extra_specs",
        "links",
    ]:
        assert key in flavor, key
    assert flavor["id"] == "crud-1"
    assert flavor["ram"] == 256 and flavor["vcpus"] == 2 and flavor["disk"] == 3
    assert env.post("/flavors", body, "admin").status_code == 409
    assert env.post("/flavors", body, "a").status_code == 403
    shown = env.get("/flavors/crud-1").get_json()["flavor"]
    assert shown["name"] == "t.crud"
    listed = env.get("/flavors/detail?is_public=None", "admin").get_json()["flavors"]
    assert "crud-1" in [f["id"] for f in listed]
    brief = env.get("/flavors").get_json()["flavors"]
    assert set(next(f for f in brief if f["id"] == "crud-1")) == {"id", "name", "links"}
    updated = env.put("/flavors/crud-1", {"flavor": {"description": "new"}}, "admin")
    assert updated.get_json()["flavor"]["description"] == "new"
    assert env.delete("/flavors/crud-1", "admin").status_code == 202
    assert env.get("/flavors/crud-1").status_code == 404


def test_flavor_validation_names_the_field(env: ComputeEnv) -> None:
    resp = env.post("/flavors", {"flavor": {"name": "bad", "vcpus": 1, "disk": 1}}, "admin")
    assert resp.status_code == 400
    assert "ram" in resp.get_json()["error"]["message"]


def test_flavor_extra_specs(env: ComputeEnv) -> None:
    flavor = env.flavor("t.specs")
    base = f"/flavors/{flavor}/os-extra_specs"
    resp = env.post(base, {"extra_specs": {"hw:cpu_policy": "shared", "k2": "v2"}}, "admin")
    assert resp.status_code == 200
    assert env.get(base).get_json()["extra_specs"] == {"hw:cpu_policy": "shared", "k2": "v2"}
    assert env.put(f"{base}/k2", {"k2": "v3"}, "admin").get_json() == {"k2": "v3"}
    assert env.get(f"{base}/k2").get_json() == {"k2": "v3"}
    assert env.delete(f"{base}/k2", "admin").status_code == 200
    assert env.get(f"{base}/k2").status_code == 404
    assert env.post(base, {"extra_specs": {"x": "y"}}, "a").status_code == 403
    assert env.get(f"/flavors/{flavor}").get_json()["flavor"]["extra_specs"] == {
        "hw:cpu_policy": "shared"
    }


def test_private_flavor_access(env: ComputeEnv) -> None:
    body = {
        "flavor": {
            "name": "t.private",
            "ram": 128,
            "vcpus": 1,
            "disk": 0,
            "os-flavor-access:is_public": False,
        }
    }
    flavor = env.post("/flavors", body, "admin").get_json()["flavor"]["id"]
    assert env.get(f"/flavors/{flavor}", "a").status_code == 404
    project_a = env.project_id("a")
    resp = env.post(
        f"/flavors/{flavor}/action", {"addTenantAccess": {"tenant": project_a}}, "admin"
    )
    assert resp.status_code == 200
    assert resp.get_json()["flavor_access"] == [{"flavor_id": flavor, "tenant_id": project_a}]
    assert env.get(f"/flavors/{flavor}", "a").status_code == 200
    assert env.get(f"/flavors/{flavor}", "b").status_code == 404
    assert flavor in [f["id"] for f in env.get("/flavors/detail", "a").get_json()["flavors"]]
    assert flavor not in [f["id"] for f in env.get("/flavors/detail", "b").get_json()["flavors"]]
    access = env.get(f"/flavors/{flavor}/os-flavor-access", "admin").get_json()
    assert access["flavor_access"][0]["tenant_id"] == project_a
    resp = env.post(
        f"/flavors/{flavor}/action", {"removeTenantAccess": {"tenant": project_a}}, "admin"
    )
    assert resp.status_code == 200
    assert env.get(f"/flavors/{flavor}", "a").status_code == 404


# -- key pairs -----------------------------------------------------------------------------------


def test_keypair_import_list_show_delete(env: ComputeEnv) -> None:
    key = ssh_key()
    resp = env.post("/os-keypairs", {"keypair": {"name": "k1", "public_key": key}})
    assert resp.status_code == 200, resp.get_json()
    created = resp.get_json()["keypair"]
    assert created["name"] == "k1"
    assert created["public_key"] == key
    assert created["type"] == "ssh"
    assert created["user_id"] == env.accounts["a"].user_id
    assert len(created["fingerprint"].split(":")) == 16
    assert (
        env.post("/os-keypairs", {"keypair": {"name": "k1", "public_key": key}}).status_code == 409
    )
    listed = env.get("/os-keypairs").get_json()["keypairs"]
    assert [k["keypair"]["name"] for k in listed] == ["k1"]
    assert env.get("/os-keypairs", "b").get_json()["keypairs"] == []
    assert env.get("/os-keypairs/k1").get_json()["keypair"]["fingerprint"] == created["fingerprint"]
    assert env.get("/os-keypairs/k1", "b").status_code == 404
    assert env.delete("/os-keypairs/k1").status_code == 202
    assert env.get("/os-keypairs/k1").status_code == 404


def test_keypair_rejects_bad_key(env: ComputeEnv) -> None:
    resp = env.post("/os-keypairs", {"keypair": {"name": "bad", "public_key": "not a key"}})
    assert resp.status_code == 400
    assert "invalid" in resp.get_json()["error"]["message"]


# -- limits and quotas ---------------------------------------------------------------------------


def test_quota_defaults_show_update(env: ComputeEnv) -> None:
    project_b = env.project_id("b")
    defaults = env.get(f"/os-quota-sets/{project_b}/defaults", "b").get_json()["quota_set"]
    assert defaults["instances"] == 10 and defaults["cores"] == 20 and defaults["ram"] == 51200
    assert defaults["key_pairs"] == 100
    shown = env.get(f"/os-quota-sets/{project_b}", "b").get_json()["quota_set"]
    assert shown["id"] == project_b and shown["instances"] == 10
    assert (
        env.put(f"/os-quota-sets/{project_b}", {"quota_set": {"cores": 3}}, "b").status_code == 403
    )
    updated = env.put(f"/os-quota-sets/{project_b}", {"quota_set": {"cores": 3}}, "admin")
    assert updated.status_code == 200
    assert updated.get_json()["quota_set"]["cores"] == 3
    assert env.get(f"/os-quota-sets/{project_b}", "b").get_json()["quota_set"]["cores"] == 3
    assert env.get(f"/os-quota-sets/{project_b}", "a").status_code == 403
    limits = env.get("/limits", "b").get_json()["limits"]["absolute"]
    assert limits["maxTotalCores"] == 3
    assert limits["totalCoresUsed"] == 0
    assert limits["maxTotalInstances"] == 10


def test_key_pair_quota_is_enforced_with_a_403_naming_it(env: ComputeEnv) -> None:
    project_b = env.project_id("b")
    env.put(f"/os-quota-sets/{project_b}", {"quota_set": {"key_pairs": 1}}, "admin")
    try:
        first = env.post("/os-keypairs", {"keypair": {"name": "q1", "public_key": ssh_key()}}, "b")
        assert first.status_code == 200
        second = env.post("/os-keypairs", {"keypair": {"name": "q2", "public_key": ssh_key()}}, "b")
        assert second.status_code == 403
        assert "key_pairs" in second.get_json()["error"]["message"]
    finally:
        env.put(f"/os-quota-sets/{project_b}", {"quota_set": {"key_pairs": 100}}, "admin")
        env.delete("/os-keypairs/q1", "b")
