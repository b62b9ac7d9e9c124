"""``cirrus-volume-agent``'s settings: defaults, the fake backend, and errors that name the file,
section and option (exit status 2, one line, no traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.volume import fake, file, service
from control.common import config, log


def load(tmp_path: Path, volume: str, rpc: bool = True) -> config.Config:
    path = tmp_path / "volume-agent.conf"
    text = "[DEFAULT]\nhost = store1\n"
    if rpc:
        text += "[rpc]\ntransport_url = amqp://u:p@127.0.0.1:1/cirrus\n"
    path.write_text(text + "[volume]\n" + volume)
    return config.load("volume-agent", path, required=True)


def test_file_backend_from_settings(tmp_path: Path) -> None:
    conf = load(
        tmp_path,
        f"volumes_dir = {tmp_path}/v\nstate_dir = {tmp_path}/s\nvolume_format = qcow2\n"
        "export_address = 192.0.2.10\nexport_port_min = 11000\nexport_port_max = 11010\n"
        "backend_name = fast\navailability_zone = az2\nreport_interval = 3\n",
    )
    agent = service.build(conf)
    try:
        manager = agent.manager
        assert isinstance(manager.driver, file.FileDriver)
        assert manager.driver.volume_format == "qcow2"
        assert manager.driver.dir == tmp_path / "v"
        exports = manager.driver.exports
        assert exports is not None
        assert (exports.address, exports.port_min, exports.port_max) == ("192.0.2.10", 11000, 11010)
        assert (tmp_path / "s").is_dir()
        assert (manager.host, manager.backend_name, manager.availability_zone) == (
            "store1",
            "fast",
            "az2",
        )
        assert manager.report_interval == 3.0
        assert agent.server.topic == "volume.store1"
        assert agent.server.executor_threads == 4
    finally:
        agent.transport.close()


def test_fake_backend(tmp_path: Path) -> None:
    agent = service.build(load(tmp_path, "backend = fake\n"))
    try:
        assert isinstance(agent.manager.driver, fake.FakeDriver)
        assert isinstance(agent.manager.images, fake.FakeImageFetcher)
        assert agent.manager.backend_name == "fake"
    finally:
        agent.transport.close()


@pytest.mark.parametrize(
    ("volume", "message"),
    [
        ("backend = lvm\n", r"\[volume\] backend must be file or fake, got 'lvm'"),
        ("volume_format = vmdk\n", r"\[volume\] volume_format must be raw or qcow2"),
        ("export_address = storage1\n", r"\[volume\] export_address must be an IP address"),
        ("export_port_min = x\n", r"\[volume\] export_port_min must be a whole number"),
        ("export_port_min = 0\n", r"\[volume\] export_port_min must be a port"),
        (
            "export_port_min = 2000\nexport_port_max = 1000\n",
            r"\[volume\] export_port_max must be a port >= export_port_min",
        ),
        ("report_interval = 0\n", r"\[volume\] report_interval must be more than 0"),
        ("volumes_dir = relative\n", r"\[volume\] volumes_dir must be an absolute path"),
        ("volumes_dir = /proc/cirrus\n", r"\[volume\] volumes_dir = /proc/cirrus: cannot create"),
    ],
)
def test_errors_name_file_section_option(tmp_path: Path, volume: str, message: str) -> None:
    conf = load(tmp_path, f"state_dir = {tmp_path}/s\n" + volume)
    with pytest.raises(config.ConfigError, match=r"volume-agent.conf: " + message):
        service.build(conf)


def test_missing_transport_url(tmp_path: Path) -> None:
    conf = load(tmp_path, "backend = fake\n", rpc=False)
    with pytest.raises(config.ConfigError, match=r"\[rpc\] transport_url is required"):
        service.build(conf)


def test_main_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(log, "setup", lambda *args, **kwargs: None)  # no handler on capture
    path = tmp_path / "volume-agent.conf"
    path.write_text("[volume]\nbackend = tape\n")
    assert service.main(["--config-file", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cirrus-volume-agent: ") and "[volume] backend" in err
    assert "\n" not in err
    assert service.main(["--config-file", str(tmp_path / "absent.conf")]) == 2
