"""How the pytest plugin loads: opt-in, and the deprecated entry point for one release.

``pytest_plugins = ["trio_streams.testing"]`` (or ``-p trio_streams.testing``)
loads the fixtures; the ``pytest11`` entry point loads only a shim that, in a
session that did not opt in, still gives the fixtures but warns when a test
uses one. Each session here says what loads (see ``ENTRY_POINT``).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

from .test_testing_plugin import ENTRY_POINT, NO_ENTRY_POINT

if TYPE_CHECKING:
    import pytest

USES_THE_HUB = """
    import trio
    from trio_streams.testing import Script

    async def test_uses_the_hub(stream_hub, autojump_clock):
        run = await stream_hub.start(Script().emit(at=2.0))
        assert (await stream_hub.wait(run.id)).status == "done"
        assert trio.current_time() == 2.0

    def test_uses_nothing():
        pass
"""
OPT_IN = 'pytest_plugins = ["trio_streams.testing"]'
#: OPT_IN as an fnmatch pattern (brackets are a character class there).
OPT_IN_SAID = '*pytest_plugins = [[]"trio_streams.testing"[]]*'


def _project(pytester: pytest.Pytester, *, conftest: str | None = None) -> None:
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    if conftest is not None:
        pytester.makeconftest(conftest)
    pytester.makepyfile(USES_THE_HUB)


def test_the_entry_point_is_the_shim():
    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    assert pyproject["project"]["entry-points"]["pytest11"] == {
        "trio_streams": "trio_streams._pytest_entry_point"
    }


def test_opted_in_with_pytest_plugins_no_warning(pytester: pytest.Pytester) -> None:
    _project(pytester, conftest=OPT_IN)
    result = pytester.runpytest("-q", *ENTRY_POINT, "-W", "error::DeprecationWarning")
    result.assert_outcomes(passed=2)


def test_opted_in_with_pytest_plugins_a_strict_suite_starts(pytester: pytest.Pytester) -> None:
    """The README's opt-in under filterwarnings=error: loading the shim imported
    trio_streams.testing before the conftest named it, so pytest could not
    rewrite its asserts (PytestAssertRewriteWarning, an error at startup). In
    a subprocess: this session has imported trio_streams.testing already."""
    _project(pytester, conftest=OPT_IN)
    result = pytester.runpytest_subprocess("-q", *ENTRY_POINT, "-W", "error")
    result.assert_outcomes(passed=2)
    assert "PytestAssertRewriteWarning" not in result.stdout.str() + result.stderr.str()


def test_opted_in_with_dash_p_no_warning(pytester: pytest.Pytester) -> None:
    _project(pytester)
    result = pytester.runpytest(
        "-q", *ENTRY_POINT, "-p", "trio_streams.testing", "-W", "error::DeprecationWarning"
    )
    result.assert_outcomes(passed=2)


def test_not_opted_in_the_fixtures_work_and_warn_once(pytester: pytest.Pytester) -> None:
    _project(pytester)
    result = pytester.runpytest("-q", *ENTRY_POINT, "-W", "always::DeprecationWarning")
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*test_uses_the_hub*",
            "*DeprecationWarning: trio_streams' pytest fixtures*pytest11 entry point*"
            + OPT_IN_SAID
            + "*-p trio_streams.testing*",
        ]
    )
    assert "test_uses_nothing" not in result.stdout.str().split("warnings summary")[1]


def test_not_opted_in_a_strict_suite_fails_saying_how(pytester: pytest.Pytester) -> None:
    """Under filterwarnings=error (ours, and many suites') the warning is an error
    at setup: the message is what the user reads."""
    _project(pytester)
    result = pytester.runpytest("-q", *ENTRY_POINT, "-W", "error::DeprecationWarning")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*DeprecationWarning*" + OPT_IN_SAID])


def test_without_the_entry_point_nothing_loads(pytester: pytest.Pytester) -> None:
    """Opt-in means it: with the shim gone (the next release), no fixtures."""
    _project(pytester)
    result = pytester.runpytest("-q", *NO_ENTRY_POINT)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*fixture 'stream_hub' not found*"])
