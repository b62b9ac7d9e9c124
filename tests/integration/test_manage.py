"""``cirrus-manage identity ...`` as an operator runs it: a real process, a real database."""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from control.common import db
from control.identity import models, passwords

pytestmark = pytest.mark.mariadb

MANAGE = str(Path(sys.executable).parent / "cirrus-manage")


def run(
    conf: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CIRRUS_")}
    full_env.update(env or {})
    return subprocess.run(
        [MANAGE, "--config-file", str(conf), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        check=False,
    )


@pytest.fixture
def conf(mariadb: Any, tmp_path: Path) -> Path:
    url = mariadb.create_database("manage")
    path = tmp_path / "identity.conf"
    path.write_text(
        f"[database]\nconnection = {url}\n[fernet_tokens]\nkey_repository = {tmp_path / 'keys'}\n"
    )
    return path


def test_db_sync_twice_reports_no_change_the_second_time(conf: Path) -> None:
    first = run(conf, "identity", "db-sync")
    assert first.returncode == 0, first.stderr
    assert "upgraded from empty; database at revision" in first.stdout
    second = run(conf, "identity", "db-sync")
    assert second.returncode == 0, second.stderr
    assert "no change" in second.stdout


def test_bootstrap_is_safe_to_run_again_and_keeps_the_password_private(conf: Path) -> None:
    assert run(conf, "identity", "db-sync").returncode == 0
    password = secrets.token_urlsafe(12)
    env = {"CIRRUS_BOOTSTRAP_PASSWORD": password}
    args = ("identity", "bootstrap", "--bootstrap-public-url", "http://ctl:5000/v3")
    first = run(conf, *args, env=env)
    assert first.returncode == 0, first.stderr
    assert "user admin" in first.stdout and "identity public endpoint" in first.stdout
    assert password not in first.stdout + first.stderr
    again = run(conf, *args, env=env)
    assert again.stdout.strip() == "bootstrap: nothing to change"

    url = conf.read_text().split("connection = ")[1].split("\n")[0]
    database = db.Database(url)
    try:
        with database.transaction() as sess:
            user = sess.query(models.User).filter_by(name="admin").one()
            assert user.password_hash and user.password_hash.startswith("$2b$12$")
            assert passwords.check_password(password, user.password_hash)
            assert {r.name for r in sess.query(models.Role)} >= {"admin", "member", "reader"}
    finally:
        database.dispose()

    changed = run(conf, *args, env={"CIRRUS_BOOTSTRAP_PASSWORD": password + "x"})
    assert "user admin password" in changed.stdout


def test_bootstrap_without_a_password_says_how_to_give_one(conf: Path) -> None:
    assert run(conf, "identity", "db-sync").returncode == 0
    result = run(conf, "identity", "bootstrap")
    assert result.returncode != 0
    assert "--bootstrap-password-file" in result.stderr


def test_register_service_creates_the_catalog_entry_and_service_user_once(conf: Path) -> None:
    assert run(conf, "identity", "db-sync").returncode == 0
    before = run(
        conf,
        "identity",
        "register-service",
        "--type",
        "image",
        "--name",
        "glance",
        "--public-url",
        "http://ctl:9292",
    )
    assert before.returncode == 1
    assert "run `cirrus-manage identity bootstrap`" in before.stderr
    boot = {"CIRRUS_BOOTSTRAP_PASSWORD": secrets.token_urlsafe(12)}
    assert run(conf, "identity", "bootstrap", env=boot).returncode == 0

    password = secrets.token_urlsafe(12)
    args = (
        "identity",
        "register-service",
        "--type",
        "image",
        "--name",
        "glance",
        "--public-url",
        "http://ctl:9292",
        "--internal-url",
        "http://ctl:9292",
        "--username",
        "glance",
    )
    first = run(conf, *args, env={"CIRRUS_SERVICE_PASSWORD": password})
    assert first.returncode == 0, first.stderr
    assert "service image" in first.stdout and "user glance" in first.stdout
    assert "service role of glance on project service" in first.stdout
    assert password not in first.stdout + first.stderr
    again = run(conf, *args, env={"CIRRUS_SERVICE_PASSWORD": password})
    assert again.stdout.strip() == "register-service image: nothing to change"
    moved = run(
        conf,
        *args[:-6],
        "--public-url",
        "http://new:9292",
        "--internal-url",
        "http://ctl:9292",
        "--username",
        "glance",
        env={"CIRRUS_SERVICE_PASSWORD": password},
    )
    assert "image public endpoint url" in moved.stdout

    url = conf.read_text().split("connection = ")[1].split("\n")[0]
    database = db.Database(url)
    try:
        with database.transaction() as sess:
            user = sess.query(models.User).filter_by(name="glance").one()
            assert passwords.check_password(password, user.password_hash)
            endpoints = {(e.interface, e.url) for e in sess.query(models.Endpoint)}
            assert ("public", "http://new:9292") in endpoints
    finally:
        database.dispose()

    missing = run(conf, *args)
    assert missing.returncode != 0 and "CIRRUS_SERVICE_PASSWORD" in missing.stderr


def test_fernet_setup_and_rotate(conf: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    assert run(conf, "identity", "fernet-setup").returncode == 0
    assert sorted(p.name for p in keys.iterdir()) == ["0", "1"]
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    result = run(conf, "identity", "fernet-rotate")
    assert result.returncode == 0, result.stderr
    assert "primary key is now 2" in result.stdout
    assert sorted(p.name for p in keys.iterdir()) == ["0", "1", "2"]


def test_a_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    result = run(tmp_path / "absent.conf", "identity", "db-sync")
    assert result.returncode == 2
    assert "absent.conf" in result.stderr and "not found" in result.stderr
