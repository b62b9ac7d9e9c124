from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.identity_env import IdentityEnv, build


@pytest.fixture(scope="session")
def identity(mariadb: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityEnv]:
    """One identity app for the session; tests create uniquely named resources."""
    env = build(mariadb, tmp_path_factory.mktemp("identity"))
    yield env
    env.app.extensions["cirrus.db"].dispose()


@pytest.fixture(scope="session")
def network(
    mariadb: Any, identity_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """One network app for the session (tests/api/network_env.py); tests make their own
    uniquely named resources."""
    from tests.api import network_env

    yield from network_env.env_fixture(mariadb, identity_server, tmp_path_factory)
