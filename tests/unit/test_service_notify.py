"""A long-running process tells systemd it is ready (``Type=notify`` units) only once started."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from control.common import service


def test_notify_ready_sends_ready_to_the_notify_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert service.notify_ready() is True
        assert listener.recv(64) == b"READY=1"


def test_notify_ready_without_systemd_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert service.notify_ready() is False


def test_ready_is_sent_after_start_and_before_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "notify"
    events: list[str] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        listener.settimeout(10)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        done = threading.Event()

        def start() -> None:
            events.append("start")

        def stop() -> None:
            events.append("stop")

        runner = threading.Thread(target=service.run_until_signalled, args=(start, stop))
        # The event run_until_signalled waits on is ours (patched after the Thread made its own),
        # and signal.signal only works in the main thread.
        monkeypatch.setattr(threading, "Event", lambda: done)
        monkeypatch.setattr(service.signal, "signal", lambda *_: None)
        runner.start()
        assert listener.recv(64) == b"READY=1"
        events.append("ready")
        done.set()
        runner.join(10)
    assert events == ["start", "ready", "stop"]
