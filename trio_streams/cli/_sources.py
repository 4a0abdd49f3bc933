"""``serve``'s flags from the environment and a TOML file, flags winning.

Every flag ``--some-flag`` can also be given as ``TRIO_STREAMS_SOME_FLAG`` in
the environment, or as ``some_flag = ...`` in the file named by ``--config``
(or ``TRIO_STREAMS_CONFIG``). Precedence: flags > environment > file >
defaults. The values are turned into flags placed before the command line's
own, so argparse checks them as it checks flags (a later flag wins) -- but
each is first checked here, so that a bad one is reported naming where it
came from (``TRIO_STREAMS_HEARTBEAT: ...``, ``serve.toml:heartbeat: ...``).

Tokens: ``TRIO_STREAMS_TOKEN`` holds whitespace-separated ``USER:SECRET``
pairs (neither part can contain whitespace). The environment is readable
only by the process's own user (and root), while a command line is visible
to every user through ``ps``: it is the safer of the two places. A config
file that holds tokens must be readable by its owner alone (mode 0600), or
``serve`` refuses it; ``token_file`` (a path) is the alternative.
"""

from __future__ import annotations

import argparse
import difflib
import os
import stat
import tomllib
from typing import TYPE_CHECKING

from ._plan import ServeConfigError, parse_bind

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

ENV_PREFIX = "TRIO_STREAMS_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def env_name(dest: str) -> str:
    """The environment variable of a flag's destination: ``redis_url`` -> ``TRIO_STREAMS_REDIS_URL``."""
    return ENV_PREFIX + dest.upper()


def flags_from_sources(
    parser: argparse.ArgumentParser, flags: Sequence[str], environ: Mapping[str, str]
) -> list[str]:
    """``flags`` with the environment's and the config file's settings put before them.

    Raises:
        ServeConfigError: an unknown key in the file, a value that does not
            fit its flag, or an unreadable file (one line naming the source).
    """
    actions = _settable(parser)
    chosen: dict[str, tuple[str, object]] = {}  # dest -> (source, value)
    config = _config_path(flags) or environ.get(CONFIG_ENV)
    if config:
        for key, value in _read_toml(config).items():
            if key not in actions:
                known = "a flag name with _ (e.g. redis_url)"
                raise ServeConfigError(f"{config}:{key}: unknown key; each key is {known}")
            chosen[key] = (f"{config}:{key}", value)
        if "token" in chosen:
            _check_private(config)
    for dest in actions:
        name = env_name(dest)
        if name in environ:
            chosen[dest] = (name, environ[name])
    given = _given_dests(actions, flags)
    prefix: list[str] = []
    for dest, (source, value) in chosen.items():
        if dest in given:
            continue  # the command line wins (for a repeatable flag, entirely)
        prefix.extend(_as_flags(actions[dest], source, value))
    return [*prefix, *flags]


#: ``TRIO_STREAMS_*`` variables that are not flags, read elsewhere: the redis binaries
#: (log/redis/_server.py), the workers' own (cli/_supervisor.py), the fast paths' switch
#: (cli/_plan.py), and the test suite's and benchmarks' own.
NOT_FLAGS = frozenset(
    ENV_PREFIX + name
    for name in (
        "CONFIG",
        "REDIS_SERVER",
        "REDIS_CLI",
        "WORKER_ID",
        "WORKERS_DIR",
        "FAST_PATHS",
        "PAGE_SCREENSHOTS",
        "BENCH_GC_DIR",
    )
)


def unknown_variables(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> list[str]:
    """One warning per ``TRIO_STREAMS_*`` variable of ``environ`` that sets nothing.

    A typo (``TRIO_STREAMS_HEARTBAET``) or a name only an app's config knows
    (``TRIO_STREAMS_RETRY_MS``) would otherwise be ignored without a word;
    the warning names it, and the flag it may have meant.
    """
    known = {env_name(dest) for dest in _settable(parser)} | NOT_FLAGS
    warnings = []
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in known:
            suffixes = sorted(known_name.removeprefix(ENV_PREFIX) for known_name in known)
            close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), suffixes, n=1, cutoff=0.8)
            hint = f"; did you mean {ENV_PREFIX}{close[0]}?" if close else " (see trio-streams serve --help)"
            warnings.append(f"{name} is not a setting of serve, ignored{hint}")
    return warnings


def _settable(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The flags a source may set, by destination (not --help, not --config itself)."""
    return {
        action.dest: action
        for action in parser._actions
        if action.option_strings and action.dest not in ("help", "config")
    }


def _config_path(flags: Sequence[str]) -> str | None:
    path = None
    for i, flag in enumerate(flags):
        if flag == "--config" and i + 1 < len(flags):
            path = flags[i + 1]
        elif flag.startswith("--config="):
            path = flag.partition("=")[2]
    return path


def _read_toml(path: str) -> dict[str, object]:
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise ServeConfigError(f"--config {path}: cannot read it: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ServeConfigError(f"--config {path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8; tomllib does not say so in its own error
        raise ServeConfigError(f"--config {path}: not valid TOML: not UTF-8 (byte {exc.start})") from None


def _check_private(path: str) -> None:
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ServeConfigError(
            f"{path}:token: the file holds secrets but others can read it "
            f"(mode {stat.S_IMODE(mode):04o}); chmod 600 it, or name a token_file"
        )


def _given_dests(actions: dict[str, argparse.Action], flags: Sequence[str]) -> set[str]:
    by_option = {option: dest for dest, action in actions.items() for option in action.option_strings}
    given = set()
    for flag in flags:
        if flag == "--":
            break
        dest = by_option.get(flag.partition("=")[0])
        if dest is not None:
            given.add(dest)
    return given


def _as_flags(action: argparse.Action, source: str, value: object) -> list[str]:
    """The flags that set ``value`` for ``action``, after checking it.

    Raises:
        ServeConfigError: ``source``: why the value does not fit.
    """
    option = action.option_strings[0]
    if isinstance(action, argparse._StoreTrueAction):
        on = _as_bool(source, value)
        return [option] if on else []
    if isinstance(action, argparse._AppendAction):
        if isinstance(value, str):
            items: list[object] = list(value.split())  # the environment: whitespace-separated
        elif isinstance(value, list):
            items = value
        else:
            raise ServeConfigError(f"{source}: expected a list of strings, not {type(value).__name__}")
        return [f"{option}={_checked(action, source, item)}" for item in items]
    return [f"{option}={_checked(action, source, value)}"]


def _as_bool(source: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ServeConfigError(f"{source}: expected true or false, not {value!r}")


def _checked(action: argparse.Action, source: str, value: object) -> str:
    """``value`` as the text of a flag, after its flag's own check.

    Raises:
        ServeConfigError: ``source``: the flag's message.
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ServeConfigError(f"{source}: expected a string or a number, not {type(value).__name__}")
    text = str(value)
    try:
        converted = action.type(text) if callable(action.type) else text
    except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
        raise ServeConfigError(f"{source}: {exc}") from None
    if action.choices is not None and converted not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise ServeConfigError(f"{source}: must be one of {choices}, not {text!r}")
    if action.dest == "bind":
        try:
            parse_bind(text)
        except ServeConfigError as exc:
            raise ServeConfigError(f"{source}: {exc}".replace("--bind ", "")) from None
    return text
