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
