"""The long-running commands as an operator starts them: a configuration mistake is one line that
names the file, section and option, with exit status 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    ("command", "missing"),
    [
        ("cirrus-scheduler", "[database] connection"),
        ("cirrus-conductor", "[database] connection"),
        ("cirrus-compute-agent", "[rpc] transport_url"),
    ],
)
def test_a_missing_setting_is_named(command: str, missing: str, tmp_path: Path) -> None:
    conf = tmp_path / "service.conf"
    conf.write_text("[DEFAULT]\nhost = test\n")
    result = subprocess.run(
        [str(BIN / command), "--config-file", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert f"{command}: {conf}: {missing} is required but not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "cirrus-conductor"), "--config-file", str(tmp_path / "absent.conf")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "absent.conf: configuration file for compute not found" in result.stderr
