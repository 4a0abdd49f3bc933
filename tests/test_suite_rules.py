"""The rules tests/conftest.py sets for this suite, checked on small suites of their own.

Each inner suite runs in a subprocess with tests/conftest.py as a plugin and
a real-time limit, so a rule that stopped working fails here instead of
hanging.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Up to two inner runs of 30 s each: let their own limit speak first.
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester whose subprocess runs can load ``tests.conftest``."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    # As pyproject's addopts: tests.conftest opts in to the plugin; the entry point stays out.
    pytester.makeini("[pytest]\ntrio_mode = true\naddopts = -p no:trio_streams\n")
    return pytester


def run(suite: pytest.Pytester, *args: str) -> pytest.RunResult:
    return suite.runpytest_subprocess(
        "-q", "-p", "no:timeout", "-p", "no:cacheprovider", "-p", "tests.conftest", *args, timeout=30
    )


def test_our_own_mock_clock_tests_fail_fast_on_a_lost_wake_up(suite: pytest.Pytester) -> None:
    """tests/conftest.py gives every mock-clock test of this suite (not only
    ``stream_hub`` users) a deadline of trio time; a test error still shows as itself."""
    suite.makepyfile(
        """
        from trio_streams import open_hub
        from trio_streams.testing import Gate, Script

        async def test_waits_for_a_run_that_never_ends(autojump_clock):
            async with open_hub() as hub:
                run = await hub.start(Script().wait(Gate()))
                await run.wait()

        async def test_a_plain_failure(autojump_clock):
            assert 1 + 1 == 3
        """
    )
    result = run(suite)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*trio.TooSlowError: still running after 86400.0 s of trio time: a lost wake-up?*",
            "*in test_waits_for_a_run_that_never_ends",
            "*await run.wait()",
            "*_ test_a_plain_failure _*",
            "*AssertionError: assert (1 + 1) == 3",
        ]
    )


@pytest.mark.redis  # its inner suite starts a real redis-server
def test_only_tests_marked_redis_can_start_a_redis_server(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import pytest
        from trio_streams.log.redis._server import find_redis_binary

        def test_unmarked():
            find_redis_binary()

        @pytest.mark.redis
        def test_marked():
            find_redis_binary()

        def test_marked_by_its_fixture(redis_url):
            assert redis_url.startswith("redis://127.0.0.1:")
        """
    )
    result = run(suite)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "E*FileNotFoundError: TRIO_STREAMS_REDIS_SERVER=*/mark-it-with-pytest.mark.redis/*",
            "*FAILED*::test_unmarked*",
        ]
    )
    selected = run(suite, "-m", "redis")
    selected.assert_outcomes(passed=2, deselected=1)
