"""``serve``'s settings from TRIO_STREAMS_* variables and a TOML file (flags > env > file >
defaults), and ``TrioStreams`` options from ``app.config``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from quart_trio import QuartTrio

from trio_streams import ServeConfigError, serve_plan
from trio_streams.web import TrioStreams

SERVE = [sys.executable, "-m", "trio_streams", "serve"]


@pytest.fixture
def config_file(tmp_path):
    def write(text: str | bytes, mode: int = 0o600) -> str:
        path = tmp_path / "serve.toml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        path.chmod(mode)
        return str(path)

    return write


def test_flags_win_over_the_environment_which_wins_over_the_file(config_file):
    path = config_file('bind = "127.0.0.1:7001"\nheartbeat = "5s"\naccess_log = true\nmax_runs = 7\n')
    from_file = serve_plan(["--config", path])
    assert (from_file.host, from_file.port) == ("127.0.0.1", 7001)
    assert from_file.options["heartbeat"] == 5.0
    assert from_file.options["max_runs"] == 7
    assert from_file.access_log is True
    env = {"TRIO_STREAMS_BIND": "127.0.0.1:7002", "TRIO_STREAMS_ACCESS_LOG": "false"}
    from_env = serve_plan(["--config", path], environ=env)
    assert from_env.port == 7002
    assert from_env.access_log is False
    assert from_env.options["heartbeat"] == 5.0  # the file still counts where env is silent
    from_flags = serve_plan(["--config", path, "--bind=127.0.0.1:7003"], environ=env)
    assert from_flags.port == 7003
    assert serve_plan([]).port == 8000  # the default, with neither


def test_the_config_file_can_come_from_the_environment(config_file):
    path = config_file('bind = "127.0.0.1:7004"\n')
    assert serve_plan([], environ={"TRIO_STREAMS_CONFIG": path}).port == 7004


def test_tokens_from_the_environment_and_flags_replace_them(config_file):
    env = {"TRIO_STREAMS_TOKEN": "alice:secret-a  bob:secret-b\n"}
    auth = serve_plan([], environ=env).options["auth"]
    assert len(auth) == 2
    assert (auth.user_for("Bearer secret-a"), auth.user_for("Bearer secret-b")) == ("alice", "bob")
    auth = serve_plan(["--token", "carol:secret-c"], environ=env).options["auth"]
    assert len(auth) == 1
    assert auth.user_for("Bearer secret-c") == "carol"


def test_a_config_file_with_tokens_must_be_private(config_file):
    shared = config_file('token = ["alice:secret-a"]\n', mode=0o644)
    with pytest.raises(ServeConfigError, match=r"serve.toml:token: the file holds secrets .*mode 0644"):
        serve_plan(["--config", shared])
    private = config_file('token = ["alice:secret-a"]\n', mode=0o600)
    assert serve_plan(["--config", private]).options["auth"].user_for("Bearer secret-a") == "alice"


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("no_such = 1\n", {}, r"serve.toml:no_such: unknown key"),
        ('heartbeat = "soon"\n', {}, r"serve.toml:heartbeat: not a duration: 'soon'"),
        ('store = "disk"\n', {}, r"serve.toml:store: must be one of memory, redis, not 'disk'"),
        ("access_log = 3\n", {}, r"serve.toml:access_log: expected true or false"),
        ('bind = "nowhere"\n', {}, r"serve.toml:bind: must be HOST:PORT"),
        ("", {"TRIO_STREAMS_MAX_RUNS": "0"}, r"TRIO_STREAMS_MAX_RUNS: must be at least 1"),
        ("", {"TRIO_STREAMS_ACCESS_LOG": "maybe"}, r"TRIO_STREAMS_ACCESS_LOG: expected true or false"),
        ("", {"TRIO_STREAMS_TOKEN": "nocolon"}, r"TRIO_STREAMS_TOKEN: must look like USER:SECRET"),
        ("heartbeat = [", {}, r"not valid TOML"),
        (b"\xff\xfeheartbeat = 1\n", {}, r"not valid TOML: .*not UTF-8"),
        # An empty path was the current directory: an embedded Redis wrote its files there.
        ("", {"TRIO_STREAMS_DATA_DIR": ""}, r"^TRIO_STREAMS_DATA_DIR: an empty path"),
        ("", {"TRIO_STREAMS_TOKEN_FILE": " "}, r"^TRIO_STREAMS_TOKEN_FILE: an empty path"),
        ('certfile = ""\nkeyfile = "k.pem"\n', {}, r"serve.toml:certfile: an empty path"),
    ],
)
def test_a_bad_setting_names_its_source(config_file, text, env, message):
    path = config_file(text)
    with pytest.raises(ServeConfigError, match=message):
        serve_plan(["--config", path], environ=env)


def test_the_command_exits_2_with_one_line_naming_the_variable(config_file):
    env = {**os.environ, "TRIO_STREAMS_HEARTBEAT": "abc"}
    result = subprocess.run(SERVE, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2
    assert result.stderr == (
        "trio-streams serve: error: TRIO_STREAMS_HEARTBEAT: not a duration: 'abc' "
        "(use e.g. 15s, 500ms, 2m, 1h, 7d)\n"
    )
    path = config_file("bogus = true\n")
    result = subprocess.run([*SERVE, "--config", path], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert f"{path}:bogus: unknown key" in result.stderr


def test_an_unknown_variable_is_named_in_a_warning():
    """A typo was ignored without a word: the server ran with the default."""
    env = {
        **os.environ,
        "TRIO_STREAMS_HEARTBAET": "5s",
        "TRIO_STREAMS_RETRY_MS": "100",  # an app.config key, not a flag
        "TRIO_STREAMS_REDIS_SERVER": "/usr/bin/redis-server",  # read elsewhere: no warning
        "TRIO_STREAMS_WORKER_ID": "0",
    }
    result = subprocess.run([*SERVE, "--max-runs", "0"], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2
    assert result.stderr.splitlines()[:2] == [
        "trio-streams serve: warning: TRIO_STREAMS_HEARTBAET is not a setting of serve, ignored; "
        "did you mean TRIO_STREAMS_HEARTBEAT?",
        "trio-streams serve: warning: TRIO_STREAMS_RETRY_MS is not a setting of serve, ignored "
        "(see trio-streams serve --help)",
    ]
    assert "--max-runs" in result.stderr.splitlines()[2]


def test_help_says_where_settings_come_from():
    result = subprocess.run([*SERVE, "--help"], capture_output=True, text=True, timeout=60, check=True)
    assert "--config FILE" in result.stdout
    assert "TRIO_STREAMS_<FLAG>" in result.stdout
    assert "Flags win over the\nenvironment, which wins over the file" in result.stdout


def test_init_app_reads_app_config_where_no_argument_was_given():
    app = QuartTrio(__name__)
    app.config.update(
        TRIO_STREAMS_HEARTBEAT=2.5,
        TRIO_STREAMS_URL_PREFIX="/api/",
        TRIO_STREAMS_MAX_BODY=4096,
        TRIO_STREAMS_GRACE_PERIOD=3.0,
        TRIO_STREAMS_FINALIZE_TIMEOUT=4.0,
    )
    streams = TrioStreams(app, finalize_timeout=9.0)
    assert streams.heartbeat == 2.5
    assert streams.url_prefix == "/api"
    assert streams.max_body == 4096
    assert streams.hub_options["grace_period"] == 3.0
    assert streams.hub_options["finalize_timeout"] == 9.0  # the argument wins
    assert any(rule.rule == "/api/runs" for rule in app.url_map.iter_rules())

    given = QuartTrio(__name__)
    given.config["TRIO_STREAMS_HEARTBEAT"] = 2.5
    assert TrioStreams(given, heartbeat=7.0).heartbeat == 7.0
    later_app = QuartTrio(__name__)
    later_app.config["TRIO_STREAMS_HEARTBEAT"] = 2.5
    later = TrioStreams()
    later.init_app(later_app)
    assert later.heartbeat == 2.5


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("TRIO_STREAMS_HEARTBEAT", "15s", r"app.config\['TRIO_STREAMS_HEARTBEAT'\]: must be a number"),
        ("TRIO_STREAMS_HEARTBEAT", 0, r"TRIO_STREAMS_HEARTBEAT'\]: must be more than zero"),
        ("TRIO_STREAMS_MAX_BODY", 1.5, r"TRIO_STREAMS_MAX_BODY'\]: must be a positive integer"),
        ("TRIO_STREAMS_MAX_RUNS", 0, r"app.config\['TRIO_STREAMS_MAX_RUNS'\]: "),
        # A hub option of the wrong type said "'<' not supported between instances of 'str' and 'int'".
        ("TRIO_STREAMS_MAX_MEMORY", "1GiB", r"^app.config\['TRIO_STREAMS_MAX_MEMORY'\]: must be a number"),
        ("TRIO_STREAMS_GRACE_PERIOD", "3m", r"TRIO_STREAMS_GRACE_PERIOD'\]: must be a number, not '3m'$"),
        ("TRIO_STREAMS_MAX_AGE", [1], r"TRIO_STREAMS_MAX_AGE'\]: must be a number, not \[1\]$"),
    ],
)
def test_a_bad_app_config_value_names_the_key(key, value, message):
    app = QuartTrio(__name__)
    app.config[key] = value
    with pytest.raises(ValueError, match=message):
        TrioStreams(app)
