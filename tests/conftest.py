"""Test configuration shared by the whole suite."""

from __future__ import annotations

from hypothesis import settings

# `pytest --hypothesis-profile=thorough` searches much harder (minutes).
settings.register_profile("default", max_examples=150)
settings.register_profile("thorough", max_examples=3000)
settings.load_profile("default")

pytest_plugins = ["pytester"]
