"""``serve`` on an address it cannot listen on: one line naming it and the fix, exit 1.

Real sockets: the port is occupied by a socket this test binds.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
from contextlib import closing

import pytest

from trio_streams.cli._hypercorn import format_address, listen, listen_error

SERVE = [sys.executable, "-m", "trio_streams", "serve"]


def occupy(host: str, *, listening: bool = True) -> socket.socket:
    """A socket on a free port of ``host``: another server, or one only bound."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    if listening:
        sock.listen()
    return sock


@pytest.mark.parametrize(
    ("occupied", "bind_host", "listening"),
    [
        ("127.0.0.1", "127.0.0.1", True),
        ("127.0.0.1", "127.0.0.1", False),
        ("127.0.0.1", "localhost", True),
        ("::1", "::1", True),
    ],
)
def test_an_address_in_use_is_one_line_naming_it_and_the_fix(occupied, bind_host, listening):
    with closing(occupy(occupied, listening=listening)) as occupier:
        port = occupier.getsockname()[1]
        address = format_address(bind_host, port)
        # The default log level (info): nothing else may be printed, not even
        # the hub starting and stopping: the address is taken before the app starts.
        result = subprocess.run([*SERVE, "--bind", address], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr == (
        f"trio-streams serve: error: cannot listen on {address}: the address is already in use "
        "(another server is listening there); stop it, or give --bind another port "
        "(port 0 picks a free one)\n"
    )


def test_a_host_that_does_not_resolve_is_one_line():
    result = subprocess.run(
        [*SERVE, "--bind", "no-such-host.invalid:8000", "--token", "a:b"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(
        "trio-streams serve: error: cannot listen on no-such-host.invalid:8000: "
        "cannot resolve 'no-such-host.invalid'"
    )
    assert "give --bind an IP address" in result.stderr


def test_listen_leaves_no_socket_open_when_it_fails():
    with closing(occupy("127.0.0.1")) as occupier:
        port = occupier.getsockname()[1]
        before = _open_fds()
        with pytest.raises(OSError) as caught:
            listen("127.0.0.1", port, backlog=10)
        assert caught.value.errno == errno.EADDRINUSE
        assert _open_fds() == before


def test_listen_takes_a_free_port_and_listens():
    sockets = listen("127.0.0.1", 0, backlog=10)
    (sock,) = sockets.insecure_sockets
    with closing(sock):
        host, port = sock.getsockname()
        assert (host, port > 0) == ("127.0.0.1", True)
        with closing(socket.create_connection((host, port), timeout=10)):
            pass  # accepted into the backlog: it listens


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            OSError(errno.EACCES, "Permission denied"),
            "cannot listen on 0.0.0.0:80: permission denied (ports below 1024 need privileges); "
            "give --bind a port from 1024",
        ),
        (
            OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address"),
            "cannot listen on 0.0.0.0:80: no network interface of this machine has that address; "
            "give --bind one of its addresses (0.0.0.0 for all)",
        ),
        (
            OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol"),
            "cannot listen on 0.0.0.0:80: Address family not supported by protocol; check --bind",
        ),
    ],
)
def test_listen_error_explains_each_cause(exc, expected):
    assert listen_error("0.0.0.0", 80, exc) == expected


def test_format_address_brackets_ipv6():
    assert format_address("::1", 8000) == "[::1]:8000"
    assert format_address("localhost", 8000) == "localhost:8000"


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))
