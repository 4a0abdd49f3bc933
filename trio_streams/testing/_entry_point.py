"""The ``pytest11`` entry point of earlier installs (their metadata names this module).

The shim is :mod:`trio_streams._pytest_entry_point` now, outside this package
(see there why); an install whose metadata predates the move still loads it
through here.
"""

from __future__ import annotations

from .._pytest_entry_point import pytest_configure as pytest_configure
