"""What the ``pytest11`` entry point loads: a shim, deprecated, for one release.

Installing trio_streams used to load its fixtures into every pytest session.
The plugin is opt-in now (``pytest_plugins = ["trio_streams.testing"]`` or
``-p trio_streams.testing``); this shim does nothing in a session that opted
in, and otherwise registers :mod:`trio_streams.testing._deprecated` -- the
same fixtures, each warning (``DeprecationWarning``) when a test uses it, so
suites that relied on the automatic loading keep working for this release and
are told how to opt in. A session that never uses the fixtures sees nothing.
``-p no:trio_streams`` turns the shim off.

It lives outside ``trio_streams.testing`` and imports nothing of it until
``pytest_configure``: entry points load before conftest files, and a
``trio_streams.testing`` already imported when the conftest names it cannot
have its asserts rewritten -- pytest's ``PytestAssertRewriteWarning``, an error
at startup under ``filterwarnings = ["error"]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

#: The name the plugin is registered under once a session opts in.
PLUGIN = "trio_streams.testing"


def pytest_configure(config: pytest.Config) -> None:
    # Opting in happens before configure (-p, or pytest_plugins in the
    # top-level conftest.py); a later opt-in from a test module wins at use
    # time, and the deprecated fixtures then stay silent (warn_once).
    if not config.pluginmanager.has_plugin(PLUGIN):
        from .testing import _deprecated

        config.pluginmanager.register(_deprecated, "trio_streams.testing._deprecated")
