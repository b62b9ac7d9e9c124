"""library/cloud_server.py run in playbooks against the real compute API.

The ``compute_server`` fixture runs compute-api under gunicorn beside identity and image-api,
with the scheduler, the conductor and two fake-driver compute hosts. The tests act as a user:
a clouds.yaml with a ``member`` of a fresh project, a playbook on localhost run through
ansible-runner from the repository root (ansible.cfg points at library/ and module_utils/), and
what the compute API shows afterwards. The play runner and the cloud content are in
``tests/fixtures/ansible_playbook.py``; task results and recap counts come from runner events.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest
import requests

from tests.fixtures.ansible_playbook import (
    CloudContent,
    Playbook,
    cloud_fixtures,
    servers_named,
    show_server,
    wait_status,
)
from tests.fixtures.identity_server import IdentityServer

pytestmark = [pytest.mark.mariadb, pytest.mark.rabbitmq]

content, playbook = cloud_fixtures("cloud-server")


def _name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def _task(title: str, /, **options: Any) -> dict[str, Any]:
    """A cloud_server task called ``title``; a failure does not stop the play, the test reads
    it."""
    return {"name": title, "cloud_server": options, "ignore_errors": True}


def _boot(content: CloudContent, name: str) -> dict[str, Any]:
    """A server created straight through the API, ACTIVE."""
    body = {"server": {"name": name, "imageRef": content.image_id, "flavorRef": content.flavor_id}}
    response = requests.post(
        f"{content.compute_url}/servers", json=body, headers=content.headers(), timeout=30
    )
    assert response.status_code == 202, response.text
    return wait_status(content, response.json()["server"]["id"], "ACTIVE")


def _actions(content: CloudContent, server_id: str) -> list[str]:
    response = requests.get(
        f"{content.compute_url}/servers/{server_id}/os-instance-actions",
        headers=content.headers(),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return sorted(a["action"] for a in response.json()["instanceActions"])


# -- behaviour ------------------------------------------------------------------------------------


def test_a_second_identical_run_reports_no_change(
    content: CloudContent, playbook: Playbook
) -> None:
    name = _name("present")
    task = {
        "name": "Boot the server",
        "cloud_server": {
            "name": name,
            "image": content.image,
            "flavor": content.flavor,
            "metadata": {"role": "web"},
        },
    }
    first = playbook.run([task], name="present.yml")
    assert first.returncode == 0, first.output()
    assert first.recap() == {"ok": 1, "changed": 1, "failed": 0}
    second = playbook.run([task], name="present.yml")
    assert second.returncode == 0, second.output()
    assert second.recap() == {"ok": 1, "changed": 0, "failed": 0}

    (server,) = servers_named(content, name)
    assert server["status"] == "ACTIVE"
    assert server["metadata"] == {"role": "web"}
    assert server["flavor"]["id"] == content.flavor_id
    assert server["image"]["id"] == content.image_id


def test_stop_start_reboot_and_delete_each_twice(content: CloudContent, playbook: Playbook) -> None:
    name = _name("life")

    def twice(state: str, **extra: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        options = {"name": name, "image": content.image, "flavor": content.flavor}
        options.update(state=state, **extra)
        run = playbook.run([_task("first", **options), _task("second", **options)])
        first, second = run.result("first"), run.result("second")
        assert not first.get("failed") and not second.get("failed"), run.output()
        return first, second

    first, second = twice("stopped")  # created, then stopped
    assert first["changed"] and not second["changed"]
    server_id = first["id"]
    assert second["id"] == server_id
    assert second["server"]["status"] == "SHUTOFF"
    assert show_server(content, server_id).json()["server"]["status"] == "SHUTOFF"

    first, second = twice("started")
    assert first["changed"] and not second["changed"]
    assert first["server"]["status"] == "ACTIVE"
    assert show_server(content, server_id).json()["server"]["status"] == "ACTIVE"

    first, second = twice("rebooted", reboot_type="HARD")
    assert first["changed"] and second["changed"]
    shown = show_server(content, server_id).json()["server"]
    assert shown["status"] == "ACTIVE" and shown["OS-EXT-STS:task_state"] is None
    assert _actions(content, server_id) == ["create", "reboot", "reboot", "start", "stop"]

    first, second = twice("absent")
    assert first["changed"] and not second["changed"]
    assert first["id"] == server_id
    assert show_server(content, server_id).status_code == 404
    assert servers_named(content, name) == []


def test_check_mode_reports_without_writing(content: CloudContent, playbook: Playbook) -> None:
    existing = _boot(content, _name("checked"))
    new_name = _name("never")
    common = {"image": content.image, "flavor": content.flavor}
    run = playbook.run(
        [
            _task("create", name=new_name, **common),
            _task("stop", name=existing["name"], state="stopped", **common),
            _task("reboot", name=existing["name"], state="rebooted"),
            _task("delete", name=existing["name"], state="absent"),
            _task("keep", name=existing["name"], state="started"),
        ],
        "--check",
    )
    for task in ("create", "stop", "reboot", "delete"):
        assert run.result(task).get("changed") is True, run.output()
        assert not run.result(task).get("failed"), run.output()
    assert run.result("keep").get("changed") is False, run.output()
    assert servers_named(content, new_name) == []
    shown = show_server(content, existing["id"]).json()["server"]
    assert shown["status"] == "ACTIVE" and shown["OS-EXT-STS:task_state"] is None
    assert _actions(content, existing["id"]) == ["create"]


def test_failures_say_what_failed_and_what_to_do(
    content: CloudContent, playbook: Playbook, identity_server: IdentityServer
) -> None:
    twin_name = _name("twin")
    twins = [_boot(content, twin_name), _boot(content, twin_name)]
    missing = "no-such-flavor-" + secrets.token_hex(2)
    wrong_auth = {**content.account_auth, "password": "not-the-password"}
    name = _name("fails")
    run = playbook.run(
        [
            _task("flavor", name=name, image=content.image, flavor=missing),
            _task("image", name=name, image="no-such-image", flavor=content.flavor),
            _task("no image", name=name, flavor=content.flavor),
            _task("cloud", name=name, cloud="nowhere", image=content.image, flavor=content.flavor),
            _task("password", name=name, auth=wrong_auth, state="absent"),
            _task("twins", name=twin_name, state="started"),
        ]
    )
    compute = content.compute_url
    flavor = run.result("flavor")
    assert flavor["failed"], run.output()
    assert flavor["msg"] == (
        f"flavor '{missing}' not found in the compute service at {compute} (neither a name "
        "nor an id of a flavor this user may use); list them with `openstack flavor list "
        "--all`, or create it (`openstack flavor create`)"
    )
    image = run.result("image")
    assert image["failed"]
    assert "image 'no-such-image' not found in the image service at http://" in image["msg"]
    assert "`openstack image list`" in image["msg"]
    assert run.result("no image")["msg"] == (
        f"server '{name}' does not exist, and creating it needs image; add image to the task"
    )
    cloud = run.result("cloud")["msg"]
    assert f"cloud 'nowhere' is not in {content.clouds_file} (its clouds: cirrus" in cloud
    password = run.result("password")["msg"]
    assert password.startswith(
        f"log in to the identity service as the `auth` option failed: POST "
        f"{identity_server.url}/auth/tokens answered 401"
    )
    assert "Check username, password, project and domains of the `auth` option" in password
    assert "not-the-password" not in run.shown()
    twins_failure = run.result("twins")
    assert twins_failure["failed"]
    for twin in twins:
        assert twin["id"] in twins_failure["msg"]
    assert "delete or rename the extra ones" in twins_failure["msg"]
    assert servers_named(content, name) == []


def test_a_server_that_goes_error_fails_with_its_fault(
    content: CloudContent, playbook: Playbook
) -> None:
    name = _name("broken")
    boot_task = _task(
        "boot",
        auth=content.account_auth,  # credentials in the task instead of clouds.yaml
        region_name="RegionOne",
        name=name,
        image=content.image,
        flavor=content.huge_flavor,
    )
    run = playbook.run([boot_task])
    boot = run.result("boot")
    assert boot.get("failed"), run.output()
    (server,) = servers_named(content, name)
    assert server["status"] == "ERROR"
    fault = server["fault"]["message"]
    assert "No valid host was found" in fault
    assert boot["msg"] == (
        f"server '{name}' ({server['id']}) is in ERROR: {fault.rstrip('.')}. Fix the cause, "
        "then delete it (state=absent) and run the task again"
    )
    assert boot["server"]["fault"]["message"] == fault

    again = playbook.run([_task("boot again", name=name, state="present")])
    assert again.result("boot again")["msg"] == boot["msg"]
    removed = playbook.run([_task("remove", name=name, state="absent")])
    assert removed.result("remove")["changed"] is True, removed.output()
    assert show_server(content, server["id"]).status_code == 404


def test_without_waiting_and_a_soft_reboot_of_a_stopped_server(
    content: CloudContent, playbook: Playbook
) -> None:
    name = _name("nowait")
    common = {"name": name, "image": content.image, "flavor": content.flavor}
    run = playbook.run(
        [
            _task("create", wait=False, **common),
            _task("stop", state="stopped", **common),
            _task("soft reboot", state="rebooted", **common),
        ]
    )
    for task in ("create", "stop", "soft reboot"):
        assert run.result(task).get("changed") is True, run.output()
    assert run.result("create")["server"]["status"] in ("BUILD", "ACTIVE")
    assert run.result("stop")["server"]["status"] == "SHUTOFF"
    # A stopped server cannot be soft rebooted: the module starts it instead.
    assert run.result("soft reboot")["server"]["status"] == "ACTIVE"
    server_id = run.result("create")["id"]
    assert _actions(content, server_id) == ["create", "start", "stop"]
