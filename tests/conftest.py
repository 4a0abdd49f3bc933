"""Test configuration shared by the whole suite.

- Every test has a timeout (pytest-timeout, ``timeout`` in pyproject.toml);
  hypothesis tests get more in proportion to the profile's examples.
- Every mock-clock test also has a deadline of trio time (the plugin's
  ``virtual_deadline``, one day), so a lost wake-up fails in milliseconds,
  saying where each task was waiting.
- Every test that runs a real ``redis-server`` carries the ``redis`` marker
  (.ci/run runs those again against another Redis version): tests that use the
  Redis fixtures get it here; the others must say so. A test without it that
  starts a redis-server fails: ``TRIO_STREAMS_REDIS_SERVER`` names no binary there.
"""

from __future__ import annotations

import functools
import subprocess
from typing import TYPE_CHECKING, Any

import pytest
import trio.testing
from hypothesis import settings

from trio_streams.log.redis._server import REDIS_CLI_ENV, REDIS_SERVER_ENV, find_redis_binary
from trio_streams.testing import virtual_deadline

from .redis_support import SyncCluster, SyncRedis, session_redis, unique_prefix

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Generator

# The default profile is what a developer runs; CI runs `ci` (.ci/run);
# `pytest --hypothesis-profile=thorough` searches much harder (minutes).
DEFAULT_EXAMPLES = 150
settings.register_profile("default", max_examples=DEFAULT_EXAMPLES)
settings.register_profile("ci", max_examples=1000)
settings.register_profile("thorough", max_examples=3000)
settings.load_profile("default")

# Our own plugin, opted in the way users do (README, "Test your app's abort paths").
pytest_plugins = ["pytester", "trio_streams.testing"]

#: Fixtures that give a test a real redis-server: their users are `redis` tests.
REDIS_FIXTURES = frozenset({"redis_server", "redis_url", "redis_cluster"})
#: What an unmarked test finds in TRIO_STREAMS_REDIS_SERVER: no binary, and why.
UNMARKED = "/not-a-redis-test/mark-it-with-pytest.mark.redis/redis-server"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "redis: runs a real redis-server (.ci/run runs these again against another Redis version)"
    )


def pytest_report_header(config: pytest.Config) -> str:
    try:
        path = find_redis_binary()
    except FileNotFoundError as exc:
        return f"redis-server: none ({exc})"
    version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    return f"redis-server: {path} ({version.strip()})"


def _is_hypothesis_test(item: pytest.Item) -> bool:
    function = getattr(item, "obj", None)
    if hasattr(function, "hypothesis"):
        return True
    # A RuleBasedStateMachine's TestCase carries hypothesis settings.
    return isinstance(getattr(getattr(item, "cls", None), "settings", None), settings)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    scale = max(1.0, settings().max_examples / DEFAULT_EXAMPLES)
    timeout = 0.0
    if config.pluginmanager.hasplugin("timeout"):
        timeout = float(config.getoption("timeout", None) or config.getini("timeout") or 0)
    for item in items:
        if REDIS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.redis)
        if timeout and scale > 1 and item.get_closest_marker("timeout") is None and _is_hypothesis_test(item):
            item.add_marker(pytest.mark.timeout(timeout * scale))


@pytest.fixture(autouse=True)
def _redis_only_in_redis_tests(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Enforce the ``redis`` marker: an unmarked test cannot start redis-server
    (in this process or in a child: the variable is inherited)."""
    if request.node.get_closest_marker("redis") is None:
        monkeypatch.setenv(REDIS_SERVER_ENV, UNMARKED)
        monkeypatch.setenv(REDIS_CLI_ENV, UNMARKED)


def with_virtual_deadline(
    test: Callable[..., Coroutine[Any, Any, None]],
) -> Callable[..., Coroutine[Any, Any, None]]:
    """``test`` with its body inside ``virtual_deadline()`` (idempotent)."""
    if getattr(test, "_virtual_deadline", False):
        return test

    @functools.wraps(test)
    async def wrapper(**kwargs: Any) -> None:
        async with virtual_deadline():
            await test(**kwargs)

    wrapper._virtual_deadline = True  # type: ignore[attr-defined]
    return wrapper


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Before pytest-trio wraps it: a mock-clock test's body runs under a
    deadline of trio time (``stream_hub`` tests have the fixture's own)."""
    funcargs = getattr(item, "funcargs", {})
    mock_clock = any(isinstance(value, trio.testing.MockClock) for value in funcargs.values())
    if mock_clock and "stream_hub" not in funcargs and item.get_closest_marker("trio") is not None:
        assert isinstance(item, pytest.Function)
        hypothesis = getattr(item.obj, "hypothesis", None)
        if hypothesis is not None:
            inner = hypothesis.inner_test
            if not getattr(inner, "_trio_test_runner_wrapped", False):
                hypothesis.inner_test = with_virtual_deadline(inner)
        else:
            item.obj = with_virtual_deadline(item.obj)
    return (yield)


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
