"""metadata-api: both formats for a server with a key pair, metadata and user data, behind the
proxy's signed headers, on a compute database (migrated, rows written with the compute models)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from control.common import config, migrate
from control.common.db import Database
from control.compute import models
from control.metadata import app as metadata_app
from control.metadata.signing import sign

pytestmark = [pytest.mark.mariadb]

SECRET = "proxy-shared-secret"
GUEST_IP = "10.0.0.5"
PROJECT = "0f3d6e1c2b4a49d7a1e2c3b4d5e6f708"
OTHER_PROJECT = "9a8b7c6d5e4f43210fedcba987654321"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGp0ZXN0a2V5bWF0ZXJpYWxmb3JjaXJydXM test@cirrus"
USER_DATA = b"#!/bin/sh\necho cirrus-guest-up\n\xff\x00\xfe binary tail\n"


@dataclass
class Env:
    client: FlaskClient
    server: str
    bare: str
    networked: str
    deleted: str
    port_id: str
    network_id: str


def conf(tmp: Path, **metadata: str) -> config.Config:
    return config.load(
        "metadata",
        path=tmp / "none.conf",
        overrides={
            "DEFAULT": {"log_level": "WARNING"},
            "database": {"connection": "sqlite://"},
            "metadata": metadata,
        },
    )


def _instance(name: str, **fields: Any) -> models.Instance:
    values: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "name": name,
        "project_id": PROJECT,
        "user_id": "u-metadata",
        "image_ref": "c3a1f0d2-5b6e-4f70-8a9b-0c1d2e3f4a5b",
        "flavor_id": "1",
        "flavor_name": "m1.tiny",
        "vcpus": 1,
        "memory_mb": 512,
        "root_gb": 1,
        "availability_zone": "zone-a",
        "host": "cmp0",
        "vm_state": models.ACTIVE,
    }
    values.update(fields)
    return models.Instance(**values)


@pytest.fixture(scope="module")
def env(mariadb: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    url = mariadb.create_database("compute")
    migrate.upgrade("compute", url)
    database = Database(url)
    port_id = str(uuid.uuid4())
    network_id = str(uuid.uuid4())
    server = _instance(
        "My Server_1",
        key_name="mykey",
        key_data=KEY,
        user_data=base64.b64encode(USER_DATA).decode(),
    )
    server.metadata_items = [
        models.InstanceMetadata(key="role", value="web"),
        models.InstanceMetadata(key="tier", value="1"),
    ]
    bare = _instance("bare", availability_zone=None)
    networked = _instance("net")
    networked.set_vifs(
        [
            {
                "id": port_id,
                "network_id": network_id,
                "network_name": "private",
                "mac_address": "fa:16:3e:00:00:01",
                "mtu": 1450,
                "fixed_ips": [{"ip_address": "10.0.0.7", "subnet_id": "s", "version": 4}],
                "security_groups": [],
                "preserve_on_delete": False,
            }
        ]
    )
    deleted = _instance("gone", vm_state=models.DELETED)
    with database.transaction() as sess:
        sess.add(
            models.KeyPair(
                user_id="u-metadata", name="mykey", public_key=KEY, fingerprint="f", type="ssh"
            )
        )
        sess.add_all([server, bare, networked, deleted])
    database.dispose()
    tmp = tmp_path_factory.mktemp("metadata")
    overrides = {
        "DEFAULT": {"log_level": "WARNING"},
        "database": {"connection": url},
        "metadata": {"shared_secret": SECRET},
    }
    app = metadata_app.create_app(
        config.load("metadata", path=tmp / "none.conf", overrides=overrides)
    )
    app.config["TESTING"] = True
    try:
        yield Env(
            app.test_client(),
            server.uuid,
            bare.uuid,
            networked.uuid,
            deleted.uuid,
            port_id,
            network_id,
        )
    finally:
        app.extensions["cirrus.db"].dispose()


def headers(instance: str, tenant: str = PROJECT, secret: str = SECRET) -> dict[str, str]:
    return {
        "X-Instance-ID": instance,
        "X-Tenant-ID": tenant,
        "X-Instance-ID-Signature": sign(secret, instance),
        "X-Forwarded-For": GUEST_IP,
    }


def get(env: Env, path: str, instance: str | None = None) -> Any:
    return env.client.get(path, headers=headers(instance or env.server))


def text(env: Env, path: str, instance: str | None = None) -> str:
    resp = get(env, path, instance)
    assert resp.status_code == 200, (path, resp.data)
    assert resp.mimetype == "text/plain", path
    return str(resp.get_data(as_text=True))


def as_json(env: Env, path: str, instance: str | None = None) -> Any:
    resp = get(env, path, instance)
    assert resp.status_code == 200, (path, resp.data)
    assert resp.mimetype == "application/json", path
    return resp.get_json()


# -- the guard -----------------------------------------------------------------------------------


def test_unsigned_request_is_403(env: Env) -> None:
    sent = headers(env.server)
    del sent["X-Instance-ID-Signature"]
    resp = env.client.get("/openstack/latest/meta_data.json", headers=sent)
    assert resp.status_code == 403
    assert KEY not in resp.get_data(as_text=True)


def test_wrong_signature_is_403(env: Env) -> None:
    resp = env.client.get("/latest/meta-data/", headers=headers(env.server, secret="guess"))
    assert resp.status_code == 403
    # A signature of another instance does not open this one.
    sent = headers(env.server)
    sent["X-Instance-ID-Signature"] = sign(SECRET, env.bare)
    assert env.client.get("/latest/user-data", headers=sent).status_code == 403


def test_other_tenant_is_404(env: Env) -> None:
    resp = env.client.get(
        "/openstack/latest/meta_data.json", headers=headers(env.server, tenant=OTHER_PROJECT)
    )
    assert resp.status_code == 404


def test_unknown_and_deleted_instances_are_404(env: Env) -> None:
    assert get(env, "/openstack/latest/meta_data.json", str(uuid.uuid4())).status_code == 404
    assert get(env, "/latest/meta-data/", env.deleted).status_code == 404


def test_missing_proxy_headers_are_400(env: Env) -> None:
    assert env.client.get("/latest/meta-data/").status_code == 400
    sent = headers(env.server)
    del sent["X-Tenant-ID"]
    assert env.client.get("/latest/meta-data/", headers=sent).status_code == 400


def test_healthcheck_needs_no_signature(env: Env) -> None:
    assert env.client.get("/healthcheck").status_code == 200


# -- the OpenStack format ------------------------------------------------------------------------


def test_openstack_versions_latest_last(env: Env) -> None:
    versions = text(env, "/openstack").split("\n")
    assert versions[0] == "2012-08-10"
    assert versions[-2:] == ["2018-08-27", "latest"]
    assert text(env, "/openstack/") == "\n".join(versions)


def test_openstack_version_listing(env: Env) -> None:
    listing = text(env, "/openstack/latest/").split("\n")
    assert set(listing) == {
        "meta_data.json",
        "user_data",
        "password",
        "vendor_data.json",
        "network_data.json",
        "vendor_data2.json",
    }
    assert text(env, "/openstack/2012-08-10").split("\n") == ["meta_data.json", "user_data"]
    assert "user_data" not in text(env, "/openstack/latest", env.bare).split("\n")
    assert get(env, "/openstack/2011-01-01/meta_data.json").status_code == 404
    assert get(env, "/openstack/2012-08-10/network_data.json").status_code == 404


def test_meta_data_json(env: Env) -> None:
    md = as_json(env, "/openstack/latest/meta_data.json")
    assert md["uuid"] == env.server
    assert md["name"] == "My Server_1"
    assert md["hostname"] == "my-server-1.novalocal"
    assert md["launch_index"] == 0
    assert md["availability_zone"] == "zone-a"
    assert md["project_id"] == PROJECT
    assert md["public_keys"] == {"mykey": KEY}
    assert md["keys"] == [{"name": "mykey", "type": "ssh", "data": KEY}]
    assert md["meta"] == {"role": "web", "tier": "1"}
    assert md["devices"] == []
    assert len(base64.b64decode(md["random_seed"])) == 512
    # Dated versions hold what Nova's did at that date.
    old = as_json(env, "/openstack/2013-04-04/meta_data.json")
    assert old["public_keys"] == {"mykey": KEY}
    assert "keys" not in old
    assert "project_id" not in old
    assert "devices" not in old


def test_meta_data_json_without_key(env: Env) -> None:
    md = as_json(env, "/openstack/latest/meta_data.json", env.bare)
    assert "public_keys" not in md
    assert "keys" not in md
    assert md["meta"] == {}
    assert md["hostname"] == "bare.novalocal"
    assert md["availability_zone"] == "nova"


def test_user_data_is_the_exact_bytes(env: Env) -> None:
    resp = get(env, "/openstack/latest/user_data")
    assert resp.status_code == 200
    assert resp.data == USER_DATA
    assert get(env, "/openstack/latest/user_data", env.bare).status_code == 404


def test_vendor_network_data_and_password(env: Env) -> None:
    assert as_json(env, "/openstack/latest/vendor_data.json") == {}
    assert as_json(env, "/openstack/latest/vendor_data2.json") == {}
    assert as_json(env, "/openstack/latest/network_data.json") == {
        "links": [],
        "networks": [],
        "services": [],
    }
    resp = get(env, "/openstack/latest/password")
    assert resp.status_code == 200
    assert resp.data == b""
    resp = env.client.post("/openstack/latest/password", data="secret", headers=headers(env.server))
    assert resp.status_code == 400


def test_network_data_from_the_port_cache(env: Env) -> None:
    data = as_json(env, "/openstack/latest/network_data.json", env.networked)
    tap = "tap" + env.port_id[:11]
    assert data["links"] == [
        {
            "id": tap,
            "vif_id": env.port_id,
            "type": "bridge",
            "mtu": 1450,
            "ethernet_mac_address": "fa:16:3e:00:00:01",
        }
    ]
    assert data["networks"] == [
        {"id": "network0", "type": "ipv4_dhcp", "link": tap, "network_id": env.network_id}
    ]
    assert data["services"] == []


def test_head_works(env: Env) -> None:
    resp = env.client.head("/openstack/latest/meta_data.json", headers=headers(env.server))
    assert resp.status_code == 200
    assert resp.mimetype == "application/json"
    assert resp.data == b""
    assert env.client.head("/latest/meta-data/", headers=headers(env.server)).status_code == 200


# -- the EC2 format ------------------------------------------------------------------------------


def test_ec2_versions(env: Env) -> None:
    versions = text(env, "/").split("\n")
    assert versions[0] == "1.0"
    assert versions[-2:] == ["2009-04-04", "latest"]
    assert text(env, "/latest") == "meta-data/\nuser-data"
    assert text(env, "/latest/", env.bare) == "meta-data/"
    assert get(env, "/1999-01-01/meta-data/").status_code == 404


def test_ec2_meta_data_listing(env: Env) -> None:
    listing = text(env, "/latest/meta-data/").split("\n")
    assert listing == sorted(listing)
    assert set(listing) == {
        "ami-id",
        "ami-launch-index",
        "ami-manifest-path",
        "block-device-mapping/",
        "hostname",
        "instance-action",
        "instance-id",
        "instance-type",
        "local-hostname",
        "local-ipv4",
        "placement/",
        "public-hostname",
        "public-ipv4",
        "public-keys/",
        "reservation-id",
        "security-groups",
    }
    assert "public-keys/" not in text(env, "/latest/meta-data", env.bare).split("\n")
    # Older versions list less, as in Nova.
    assert "instance-type" not in text(env, "/1.0/meta-data/").split("\n")


def test_ec2_meta_data_values(env: Env) -> None:
    md = "/latest/meta-data"
    assert text(env, f"{md}/instance-id") == f"i-{int(env.server[:8], 16):08x}"
    assert text(env, f"{md}/ami-id") == "ami-c3a1f0d2"
    assert text(env, f"{md}/ami-launch-index") == "0"
    assert text(env, f"{md}/hostname") == "my-server-1.novalocal"
    assert text(env, f"{md}/local-hostname") == "my-server-1.novalocal"
    assert text(env, f"{md}/public-hostname") == "my-server-1.novalocal"
    assert text(env, f"{md}/instance-type") == "m1.tiny"
    assert text(env, f"{md}/local-ipv4") == GUEST_IP
    assert text(env, f"{md}/public-ipv4") == ""
    assert text(env, f"{md}/instance-action") == "none"
    assert text(env, f"{md}/security-groups") == "default"
    assert text(env, f"{md}/reservation-id").startswith("r-")
    assert text(env, f"{md}/placement/") == "availability-zone"
    assert text(env, f"{md}/placement/availability-zone") == "zone-a"
    assert text(env, f"{md}/block-device-mapping/") == "ami\nroot"
    assert text(env, f"{md}/block-device-mapping/root") == "/dev/vda"
    assert get(env, f"{md}/no-such-key").status_code == 404
    assert get(env, f"{md}/hostname/deeper").status_code == 404


def test_ec2_public_keys(env: Env) -> None:
    md = "/latest/meta-data"
    assert text(env, f"{md}/public-keys/") == "0=mykey"
    assert text(env, f"{md}/public-keys/0/") == "openssh-key"
    assert text(env, f"{md}/public-keys/0/openssh-key") == KEY
    assert get(env, f"{md}/public-keys/1/openssh-key").status_code == 404


def test_ec2_user_data_and_prefix(env: Env) -> None:
    resp = get(env, "/latest/user-data")
    assert resp.status_code == 200
    assert resp.data == USER_DATA
    assert get(env, "/2009-04-04/user-data").data == USER_DATA
    assert get(env, "/latest/user-data", env.bare).status_code == 404
    assert text(env, "/ec2/latest/meta-data/instance-type") == "m1.tiny"


def test_json_documents_are_json(env: Env) -> None:
    resp = get(env, "/openstack/latest/meta_data.json")
    assert json.loads(resp.data)["uuid"] == env.server


# -- configuration -------------------------------------------------------------------------------


def test_refuses_to_start_without_shared_secret(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match=r"\[metadata\] shared_secret is required"):
        metadata_app.create_app(conf(tmp_path))
    with pytest.raises(config.ConfigError, match=r"\[metadata\] shared_secret is required"):
        metadata_app.create_app(conf(tmp_path, shared_secret=""))
