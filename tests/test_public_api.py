"""The public API is exactly ``__all__``, each name documented; one version source."""

from __future__ import annotations

import re
import tomllib
import types
from pathlib import Path

import trio_streams
from trio_streams import _version

ROOT = Path(__file__).resolve().parent.parent


def test_star_import_gives_exactly_all():
    namespace: dict[str, object] = {}
    exec("from trio_streams import *", namespace)
    namespace.pop("__builtins__")
    assert sorted(namespace) == sorted(trio_streams.__all__)
    assert len(set(trio_streams.__all__)) == len(trio_streams.__all__)


def test_all_is_every_public_name():
    public = {
        name
        for name, value in vars(trio_streams).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public | {"__version__"} == set(trio_streams.__all__)


def test_every_public_name_is_documented():
    listed = set(re.findall(r"^- `([A-Za-z_]+)`", (ROOT / "docs" / "api.md").read_text(), re.MULTILINE))
    assert set(trio_streams.__all__) <= listed, sorted(set(trio_streams.__all__) - listed)
    for name in trio_streams.__all__:
        value = getattr(trio_streams, name)
        if isinstance(value, (type, types.FunctionType)):
            assert (value.__doc__ or "").strip(), f"{name} has no docstring"


def test_one_version_source():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    attr = project["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "trio_streams._version.__version__"
    assert trio_streams.__version__ is _version.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]\d+|rc\d+|\.dev\d+)?", trio_streams.__version__)
    assigned = [
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "trio_streams").rglob("*.py")
        if re.search(r"^__version__\s*=", path.read_text(), re.MULTILINE)
    ]
    assert assigned == ["trio_streams/_version.py"]


def test_classifiers_name_the_supported_python():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    classifiers = project["classifiers"]
    assert "Typing :: Typed" in classifiers
    assert "Framework :: Trio" in classifiers
    python = re.search(r">=3\.(\d+)", project["requires-python"])
    assert python
    assert f"Programming Language :: Python :: 3.{python.group(1)}" in classifiers
