"""Token sources: ``--token``, ``--token-file`` and both, parsed by one grammar.

The parser is pure (unit tests first); then the plan ``serve`` builds from its
flags (every combination); then the CLI's one-line start-up errors, and a real
server that refuses a commented-out token.
"""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest
import trio

from trio_streams.cli._main import build_parser
from trio_streams.cli._plan import ServeConfigError, ServePlan
from trio_streams.web import ApiError, TokenAuth, TokenSourceError
from trio_streams.web._token_sources import (
    MAX_TOKEN_FILE_BYTES,
    collect_tokens,
    parse_token_spec,
    read_token_file,
    specs_from_file,
)

from .server_support import running_server

SERVE = [sys.executable, "-m", "trio_streams", "serve"]

# A realistic file: a comment, a commented-out (revoked) token, a blank line,
# indentation and a CRLF line end.
TOKEN_FILE = "# team tokens\n#carol:old-secret\n\n  alice:a-file-secret  \r\nbob:b-secret\n"


def users(auth: TokenAuth | None, *secrets: str) -> list[str | None]:
    """The user each secret authenticates as (None: refused with 401)."""
    assert auth is not None
    found: list[str | None] = []
    for secret in secrets:
        try:
            found.append(auth.user_for(f"Bearer {secret}"))
        except ApiError as exc:
            found.append(None if exc.status == 401 else f"status {exc.status}")
    return found


# -- the grammar of one spec --------------------------------------------------


def test_a_spec_is_user_colon_secret_and_the_secret_may_hold_colons():
    assert parse_token_spec("alice:s3cret") == ("alice", "s3cret")
    assert parse_token_spec("alice:a:b:c") == ("alice", "a:b:c")
    assert parse_token_spec("zoë:x~!") == ("zoë", "x~!")


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("no-colon-here", "must look like USER:SECRET"),
        ("", "must look like USER:SECRET"),
        (":hunter2", "the user before ':' is empty"),
        ("alice:", "the secret after ':' is empty"),
        ("al ice:hunter2", "the user has whitespace"),
        (" alice:hunter2", "the user has whitespace"),
        ("alice:hunter2 ", "the secret has whitespace"),
        ("alice: hunter2", "the secret has whitespace"),
        ("alice:hun\tter2", "the secret has whitespace"),
        ("alice:hünter2", "not printable ASCII"),
        ("al\x00ice:hunter2", "control character"),
        ("#carol:hunter2", "cannot start with '#'"),
    ],
)
def test_a_bad_spec_names_the_reason_and_never_the_secret(spec, reason):
    with pytest.raises(TokenSourceError) as caught:
        parse_token_spec(spec)
    assert reason in str(caught.value)
    assert "hunter2" not in str(caught.value)
    assert "hun" not in str(caught.value)


# -- a token file ---------------------------------------------------------------


def test_a_file_skips_blank_lines_and_comments_and_strips_whitespace():
    specs = specs_from_file(TOKEN_FILE.encode(), "tokens.txt")
    assert [(s.user, s.secret, s.where) for s in specs] == [
        ("alice", "a-file-secret", "tokens.txt:4"),
        ("bob", "b-secret", "tokens.txt:5"),
    ]


def test_a_file_may_start_with_a_byte_order_mark():
    specs = specs_from_file("\ufeffalice:pw\n".encode(), "t")
    assert [(s.user, s.secret) for s in specs] == [("alice", "pw")]


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        ("alice:pw\nhunter2\n", "tokens.txt:2:", "must look like USER:SECRET"),
        ("# c\n:hunter2\n", "tokens.txt:2:", "the user before ':' is empty"),
        ("alice:\n", "tokens.txt:1:", "the secret after ':' is empty"),
        ("alice:hunter2 # old\n", "tokens.txt:1:", "the secret has whitespace"),
        ("alice smith:hunter2\n", "tokens.txt:1:", "the user has whitespace"),
        ("\n\n# only comments\n   \n", "tokens.txt:", "no tokens in it"),
        ("", "tokens.txt:", "no tokens in it"),
    ],
)
def test_a_bad_file_names_the_file_and_line_and_never_the_secret(text, where, reason):
    with pytest.raises(TokenSourceError) as caught:
        specs_from_file(text.encode(), "tokens.txt")
    message = str(caught.value)
    assert message.startswith(where)
    assert reason in message
    assert "hunter2" not in message
    assert "\n" not in message


def test_a_file_that_is_not_utf8_names_the_line():
    with pytest.raises(TokenSourceError, match=r"^t\.txt:2: not UTF-8 text$"):
        specs_from_file(b"alice:pw\nbob:\xff\xfe\n", "t.txt")


# -- merging the sources ----------------------------------------------------------


def test_flag_only():
    assert collect_tokens(["alice:a1", "bob:b1"]) == {"a1": "alice", "b1": "bob"}


def test_file_only():
    assert collect_tokens([], ("t", TOKEN_FILE.encode())) == {"a-file-secret": "alice", "b-secret": "bob"}


def test_flag_and_file_combine_and_the_file_still_skips_comments():
    tokens = collect_tokens(["dave:d1"], ("t", TOKEN_FILE.encode()))
    assert tokens == {"d1": "dave", "a-file-secret": "alice", "b-secret": "bob"}
    assert "old-secret" not in tokens
    assert "#carol" not in tokens.values()


def test_a_user_may_hold_several_secrets_across_sources():
    tokens = collect_tokens(["alice:new"], ("t", b"alice:old\nalice:older\n"))
    assert tokens == {"new": "alice", "old": "alice", "older": "alice"}


def test_the_same_token_given_twice_counts_once():
    assert collect_tokens(["alice:pw", "alice:pw"], ("t", b"alice:pw\n")) == {"pw": "alice"}


@pytest.mark.parametrize(
    ("values", "text", "first", "second"),
    [
        (["alice:hunter2", "bob:hunter2"], None, "'alice' (--token)", "'bob' (--token)"),
        (["alice:hunter2"], "bob:hunter2\n", "'alice' (--token)", "'bob' (t:1)"),
        ([], "# c\nalice:hunter2\nbob:hunter2\n", "'alice' (t:2)", "'bob' (t:3)"),
    ],
)
def test_one_secret_for_two_users_is_an_error_naming_both(values, text, first, second):
    file = None if text is None else ("t", text.encode())
    with pytest.raises(TokenSourceError) as caught:
        collect_tokens(values, file)
    message = str(caught.value)
    assert message.startswith("one secret is given to two users: ")
    assert first in message
    assert second in message
    assert "hunter2" not in message


def test_token_auth_constructors_use_the_same_rules(tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text(TOKEN_FILE)
    assert users(TokenAuth.from_file(path), "a-file-secret", "old-secret") == ["alice", None]
    assert users(TokenAuth.from_specs(["alice:1", "alice:2"]), "1", "2") == ["alice", "alice"]
    with pytest.raises(ValueError, match="two users"):
        TokenAuth.from_specs(["alice:1", "bob:1"])
    with pytest.raises(OSError, match="No such file"):
        TokenAuth.from_file(tmp_path / "missing.txt")


def test_reading_a_token_file_is_bounded(tmp_path):
    path = tmp_path / "big.txt"
    path.write_bytes(b"a" * (MAX_TOKEN_FILE_BYTES + 1))
    with pytest.raises(TokenSourceError, match="larger than 1024 KiB"):
        read_token_file(path)
    path.write_bytes(b"a" * MAX_TOKEN_FILE_BYTES)
    assert len(read_token_file(path)) == MAX_TOKEN_FILE_BYTES


# -- what serve builds from its flags ------------------------------------------------


def plan(*argv: str) -> ServePlan:
    args = build_parser().parse_args(["serve", *argv])
    return ServePlan.from_args(args)


def test_plan_without_token_sources_has_no_auth():
    assert plan().options["auth"] is None


def test_plan_from_flags_only():
    auth = plan("--token", "alice:a1", "--token", "alice:a2", "--token", "bob:b1").options["auth"]
    assert users(auth, "a1", "a2", "b1", "nope") == ["alice", "alice", "bob", None]


def test_plan_from_file_only(tmp_path):
    (tmp_path / "t").write_text(TOKEN_FILE)
    auth = plan("--token-file", str(tmp_path / "t")).options["auth"]
    assert users(auth, "a-file-secret", "b-secret", "old-secret") == ["alice", "bob", None]


def test_plan_from_flags_and_file_ignores_the_files_comments(tmp_path):
    # The reported bug: with both, '#carol:old-secret' was accepted as user '#carol'.
    (tmp_path / "t").write_text(TOKEN_FILE)
    auth = plan("--token", "dave:d1", "--token-file", str(tmp_path / "t")).options["auth"]
    assert users(auth, "d1", "a-file-secret", "b-secret", "old-secret") == ["dave", "alice", "bob", None]
    assert len(auth) == 3


def test_plan_refuses_a_secret_shared_by_a_flag_and_the_file(tmp_path):
    (tmp_path / "t").write_text("bob:hunter2\n")
    with pytest.raises(ServeConfigError) as caught:
        plan("--token", "alice:hunter2", "--token-file", str(tmp_path / "t"))
    message = str(caught.value)
    assert f"'bob' (--token-file {tmp_path / 't'}:1)" in message
    assert "hunter2" not in message


@pytest.mark.parametrize("with_flag", [False, True])
def test_plan_reports_an_unreadable_file_by_name(tmp_path, with_flag):
    flags = ["--token", "alice:a1"] if with_flag else []
    with pytest.raises(ServeConfigError, match=r"--token-file .*missing\.txt: cannot read it: No such file"):
        plan(*flags, "--token-file", str(tmp_path / "missing.txt"))
    with pytest.raises(ServeConfigError, match="cannot read it: Is a directory"):
        plan(*flags, "--token-file", str(tmp_path))


# -- the command line ----------------------------------------------------------------------


def one_line_error(*argv: str, status: int) -> str:
    result = subprocess.run([*SERVE, *argv], capture_output=True, text=True, timeout=60)
    assert result.returncode == status, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    return lines[0]


@pytest.mark.parametrize(
    ("contents", "start", "reason"),
    [
        ("alice:pw\nhunter2\n", "{file}:2: ", "must look like USER:SECRET"),
        ("alice:\n", "{file}:1: ", "the secret after ':' is empty"),
        ("alice: hunter2\n", "{file}:1: ", "whitespace"),
        ("# nothing\n", "{file}: ", "no tokens in it"),
        (
            "alice:hunter2\nbob:hunter2\n",
            "one secret",
            "to two users: 'alice' ({file}:1) and 'bob' ({file}:2)",
        ),
    ],
)
def test_a_bad_token_file_is_a_one_line_bad_argument(tmp_path, contents, start, reason):
    path = tmp_path / "tokens.txt"
    path.write_text(contents)
    line = one_line_error("--token", "zed:z1", "--token-file", str(path), status=2)
    file = f"--token-file {path}"
    assert line.startswith("trio-streams serve: error: " + start.format(file=file))
    assert reason.format(file=file) in line
    assert "hunter2" not in line


def test_a_missing_token_file_is_a_one_line_bad_argument(tmp_path):
    line = one_line_error("--token-file", str(tmp_path / "nope.txt"), status=2)
    path = tmp_path / "nope.txt"
    assert (
        line == f"trio-streams serve: error: --token-file {path}: cannot read it: No such file or directory"
    )


def test_a_bad_token_flag_is_a_bad_argument():
    line = one_line_error("--token", "alice:hunter2 ", status=2)
    assert "argument --token: the secret has whitespace" in line
    assert "'alice:***'" in line
    assert "hunter2" not in line


def test_two_flags_giving_one_secret_to_two_users_do_not_start():
    line = one_line_error("--token", "alice:hunter2", "--token", "bob:hunter2", status=2)
    assert "one secret is given to two users: 'alice' (--token) and 'bob' (--token)" in line
    assert "hunter2" not in line


async def test_a_real_server_refuses_a_commented_out_token(tmp_path):
    (tmp_path / "t").write_text(TOKEN_FILE)
    app, _streams = plan("--token", "dave:d1", "--token-file", str(tmp_path / "t")).build_app()
    with trio.fail_after(30):
        async with running_server(app) as server, httpx.AsyncClient(base_url=server.url) as client:
            for secret, status in [("old-secret", 401), ("a-file-secret", 200), ("d1", 200)]:
                response = await client.get("/v1/runs", headers={"Authorization": f"Bearer {secret}"})
                assert response.status_code == status, secret
