"""Where bearer tokens come from: ``USER:SECRET`` values and token files, as one grammar.

Theory of operation: every source is reduced to ``USER:SECRET`` specs, each
labelled with where it came from (the ``--token`` value, or a file and line
number), and checked by one function, :func:`parse_token_spec`, so a spec valid
on the command line is valid in a file and the other way round. A file's blank
lines and ``#`` comments are skipped before anything else, whichever sources
are combined. Then the specs are merged: a user may hold several secrets
(rotation), a secret belongs to exactly one user.

Pure: no I/O except :func:`read_token_file`, which only reads bytes. Error
messages say where the problem is and never quote a secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

#: The largest token file read: a file of user:secret lines is small; anything
#: bigger is the wrong file (or a device) and is refused rather than read.
MAX_TOKEN_FILE_BYTES = 1024 * 1024


class TokenSourceError(ValueError):
    """A token spec, file or combination that cannot be used.

    The message names the place (``--token 'alice:***'``, ``tokens.txt:3``)
    and never contains a secret.
    """


@dataclass(frozen=True, slots=True)
class TokenSpec:
    """One ``USER:SECRET`` and where it was given (for error messages)."""

    user: str
    secret: str
    where: str


def parse_token_spec(spec: str) -> tuple[str, str]:
    """``(user, secret)`` of one ``USER:SECRET``; the secret may contain colons.

    The user is non-empty, has no whitespace or control characters and does
    not start with ``#`` (a token file would read it as a comment). The
    secret is non-empty printable ASCII without spaces: what a client can put
    after ``Authorization: Bearer``.

    Raises:
        TokenSourceError: the reason alone ("the secret is empty"), without
            the spec; the caller adds where it came from.
    """
    user, sep, secret = spec.partition(":")
    if not sep:
        raise TokenSourceError("must look like USER:SECRET")
    if not user:
        raise TokenSourceError("the user before ':' is empty")
    if not secret:
        raise TokenSourceError("the secret after ':' is empty")
    if any(char.isspace() or not char.isprintable() for char in user):
        raise TokenSourceError("the user has whitespace or a control character in it")
    if user.startswith("#"):
        raise TokenSourceError("a user cannot start with '#' (token files read such lines as comments)")
    if not all("!" <= char <= "~" for char in secret):
        raise TokenSourceError(
            "the secret has whitespace or a character that is not printable ASCII "
            "(a bearer token cannot carry it)"
        )
    return user, secret


def specs_from_values(values: Iterable[str], *, flag: str = "--token") -> list[TokenSpec]:
    """Parse ``USER:SECRET`` values as given (no comments: a value is never one).

    Raises:
        TokenSourceError: ``"--token 'alice:***': the secret after ':' is empty"``.
    """
    specs = []
    for value in values:
        try:
            user, secret = parse_token_spec(value)
        except TokenSourceError as exc:
            raise TokenSourceError(f"{flag} {redact(value)!r}: {exc}") from None
        specs.append(TokenSpec(user, secret, flag))
    return specs


def specs_from_file(data: bytes, name: str) -> list[TokenSpec]:
    """Parse a token file's bytes: one ``USER:SECRET`` per line.

    UTF-8 (a leading byte-order mark is ignored); each line is stripped of
    surrounding whitespace; blank lines and lines starting with ``#`` are
    skipped. ``name`` labels the file in messages and in :attr:`TokenSpec.where`.

    Raises:
        TokenSourceError: ``"tokens.txt:3: the secret after ':' is empty"``,
            not UTF-8, or no token in the file. Lines are never quoted.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        number = data[: exc.start].count(b"\n") + 1
        raise TokenSourceError(f"{name}:{number}: not UTF-8 text") from None
    specs = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            user, secret = parse_token_spec(line)
        except TokenSourceError as exc:
            raise TokenSourceError(f"{name}:{number}: {exc}") from None
        specs.append(TokenSpec(user, secret, f"{name}:{number}"))
    if not specs:
        raise TokenSourceError(f"{name}: no tokens in it (only blank lines and # comments)")
    return specs


def merge_token_specs(specs: Iterable[TokenSpec]) -> dict[str, str]:
    """``{secret: user}`` of every spec, in order.

    A user may appear with several secrets (rotation: old and new both
    work); the same ``USER:SECRET`` given twice counts once.

    Raises:
        TokenSourceError: one secret given to two users (names both users
            and both places, not the secret). The last one never wins silently.
    """
    users: dict[str, TokenSpec] = {}
    for spec in specs:
        first = users.setdefault(spec.secret, spec)
        if first.user != spec.user:
            raise TokenSourceError(
                f"one secret is given to two users: {first.user!r} ({first.where}) and "
                f"{spec.user!r} ({spec.where}); give each user their own secret"
            )
    return {secret: spec.user for secret, spec in users.items()}


def collect_tokens(values: Iterable[str], file: tuple[str, bytes] | None = None) -> dict[str, str]:
    """``{secret: user}`` from ``--token`` values and, if given, a token file.

    Args:
        values: ``USER:SECRET`` strings (``--token``).
        file: ``(name, bytes)`` of a token file; ``name`` labels it in errors.

    Raises:
        TokenSourceError: a malformed value or line, or a secret given to two users.
    """
    specs = specs_from_values(values)
    if file is not None:
        specs += specs_from_file(file[1], file[0])
    return merge_token_specs(specs)


def read_token_file(path: Path) -> bytes:
    """The bytes of a token file, at most :data:`MAX_TOKEN_FILE_BYTES`.

    Raises:
        OSError: the file cannot be read (missing, a directory, no permission).
        TokenSourceError: the file is larger than the limit.
    """
    with path.open("rb") as file:
        data = file.read(MAX_TOKEN_FILE_BYTES + 1)
    if len(data) > MAX_TOKEN_FILE_BYTES:
        raise TokenSourceError(f"{path}: larger than {MAX_TOKEN_FILE_BYTES // 1024} KiB: not a token file")
    return data


def redact(spec: str) -> str:
    """``alice:***`` for ``alice:s3cret``; ``***`` when there is no colon to tell the user by."""
    user, sep, _ = spec.partition(":")
    return f"{user}:***" if sep else "***"
