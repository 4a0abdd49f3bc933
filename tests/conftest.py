"""Test configuration shared by the whole suite."""

from __future__ import annotations

import pytest
from hypothesis import settings

from .redis_support import SyncCluster, SyncRedis, session_redis, unique_prefix

# `pytest --hypothesis-profile=thorough` searches much harder (minutes).
settings.register_profile("default", max_examples=150)
settings.register_profile("thorough", max_examples=3000)
settings.load_profile("default")

pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def redis_server():
    """One real redis-server (no persistence) for the session."""
    yield from session_redis()


@pytest.fixture
def redis_url(redis_server: SyncRedis) -> str:
    return redis_server.url


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test's own: tests on the shared Redis never meet."""
    return unique_prefix()


@pytest.fixture(scope="session")
def redis_cluster():
    """A real 3-master Redis Cluster for the session (redis-cli --cluster create)."""
    cluster = SyncCluster()
    try:
        yield cluster
    finally:
        cluster.close()
