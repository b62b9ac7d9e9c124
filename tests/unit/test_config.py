from __future__ import annotations

from pathlib import Path

import pytest

from control.common import config


def test_file_values_overrides_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "svc.conf"
    path.write_text("[api]\nworkers = 4\ndebug = yes\n[database]\nconnection = mysql://x\n")
    conf = config.load("svc", path, overrides={"api": {"workers": 2}})
    assert conf.get_int("api", "workers") == 2
    assert conf.get_bool("api", "debug") is True
    assert conf.get("database", "connection") == "mysql://x"
    assert conf.get_int("api", "timeout", 30) == 30
    assert conf.get_list("api", "hosts", ["a"]) == ["a"]


def test_errors_name_the_file_section_and_option(tmp_path: Path) -> None:
    path = tmp_path / "svc.conf"
    path.write_text("[api]\nworkers = many\n")
    conf = config.load("svc", path)
    with pytest.raises(
        config.ConfigError, match=r"svc.conf: \[api\] workers must be a whole number"
    ):
        conf.get_int("api", "workers")
    with pytest.raises(config.ConfigError, match=r"\[database\] connection is required"):
        conf.get("database", "connection")


def test_missing_file_is_an_error_only_when_required(tmp_path: Path) -> None:
    assert config.load("svc", tmp_path / "absent.conf").get("a", "b", "c") == "c"
    with pytest.raises(config.ConfigError, match="not found"):
        config.load("svc", tmp_path / "absent.conf", required=True)


def test_environment_chooses_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIRRUS_CONFIG_DIR", str(tmp_path))
    (tmp_path / "identity.conf").write_text("[token]\nexpiration = 60\n")
    assert config.load("identity").get_int("token", "expiration") == 60
    other = tmp_path / "other.conf"
    other.write_text("[token]\nexpiration = 90\n")
    monkeypatch.setenv("CIRRUS_IDENTITY_CONFIG", str(other))
    assert config.load("identity").get_int("token", "expiration") == 90
