"""One ``/metrics`` across ``serve --workers N``: each worker's exposition, merged.

The contract with the supervisor: each worker's environment has
``TRIO_STREAMS_WORKER_ID`` (``0`` .. ``N-1``) and ``TRIO_STREAMS_WORKERS_DIR``
(a private, ``0700`` directory the workers share). With both set, each
worker serves its own local exposition on the unix socket
``<dir>/metrics-<id>.sock`` (:func:`serve_worker_metrics`: a task in the
extension's nursery; the socket is removed when it ends), and a scrape of
``/metrics`` on any worker (:func:`scrape_workers`) reads every worker's
socket — at most :data:`SCRAPE_TIMEOUT` seconds and :data:`MAX_EXPOSITION`
bytes each; a socket nobody answers on (a worker that died) is skipped and
counted — and merges them into one document: every series gains a
``worker`` label, and each family appears once (one HELP, one TYPE).

No pre-summed totals: ``sum without (worker) (rate(...))`` is one PromQL
step, and a summed series beside the per-worker ones would be counted twice
by every ``sum()`` over the family.

The socket protocol is the smallest there is: connect, read the exposition
until the worker closes. The directory's ``0700`` is the access control.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket as stdlib_socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import trio
from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from ._metrics_stats import PREFIX

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping

logger = logging.getLogger("trio_streams.web")

WORKER_ID_ENV = "TRIO_STREAMS_WORKER_ID"
WORKERS_DIR_ENV = "TRIO_STREAMS_WORKERS_DIR"

#: How long a scrape waits for one worker's exposition (connect and read).
SCRAPE_TIMEOUT = 2.0
#: The most bytes of one worker's exposition a scrape reads (beyond: that worker is skipped).
MAX_EXPOSITION = 16 * 1024 * 1024
#: How long a worker gives a reader of its socket to take the exposition.
SEND_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class WorkerMetrics:
    """This worker's place among the workers (see the module docstring)."""

    worker_id: str
    directory: Path

    @property
    def socket_path(self) -> Path:
        return self.directory / f"metrics-{self.worker_id}.sock"

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> WorkerMetrics | None:
        """The supervisor's ``TRIO_STREAMS_WORKER_ID``/``_WORKERS_DIR``; ``None`` unless both are set.

        Raises:
            ValueError: the id is not a non-negative integer, or the directory does not exist.
        """
        worker_id, directory = environ.get(WORKER_ID_ENV), environ.get(WORKERS_DIR_ENV)
        if worker_id is None or directory is None:
            return None
        if not worker_id.isdigit() or not worker_id.isascii():
            raise ValueError(f"{WORKER_ID_ENV} must be a non-negative integer, not {worker_id!r}")
        if not Path(directory).is_dir():
            raise ValueError(f"{WORKERS_DIR_ENV} {directory!r} is not a directory")
        return cls(str(int(worker_id)), Path(directory))


async def serve_worker_metrics(
    worker: WorkerMetrics,
    exposition: Callable[[], bytes],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``exposition()`` on the worker's socket until cancelled; started once it listens.

    A socket file left by an earlier worker of the same id is replaced. Each
    reader gets the exposition as it is when it connects, then the
    connection closes (within :data:`SEND_TIMEOUT`).

    Cancellation: stops listening and removes the socket file (if it is
    still this worker's), without a checkpoint.
    """
    path = worker.socket_path
    sock = trio.socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
    try:
        path.unlink(missing_ok=True)
        await sock.bind(os.fspath(path))
        bound = path.stat().st_ino
        sock.listen()
    except BaseException:
        sock.close()
        raise

    async def answer(stream: trio.SocketStream) -> None:
        with trio.move_on_after(SEND_TIMEOUT):
            # (A reader that gave up, at its own deadline, is told nothing.)
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.send_all(exposition())
        await trio.aclose_forcefully(stream)

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, answer, [trio.SocketListener(sock)])
            task_status.started()
    finally:
        sock.close()
        # (A newer worker of this id may have replaced it: leave that one.)
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_ino == bound:
                path.unlink()


async def read_worker(path: Path) -> bytes | None:
    """One worker's exposition; ``None`` if it does not answer in time, in full, or at all.

    Cancellation: propagates (the connection is closed).
    """
    with trio.move_on_after(SCRAPE_TIMEOUT):
        try:
            stream = await trio.open_unix_socket(os.fspath(path))
        except OSError as exc:
            # Refused: a worker that died (or is not listening yet); any other
            # error is this worker's to skip too, never the whole scrape's.
            if exc.errno != errno.ECONNREFUSED:
                logger.warning("metrics: cannot reach %s: %s", path.name, exc)
            return None
        async with stream:
            chunks: list[bytes] = []
            size = 0
            try:
                while chunk := await stream.receive_some(65536):
                    size += len(chunk)
                    if size > MAX_EXPOSITION:
                        logger.warning("metrics: %s sent more than %d bytes", path.name, MAX_EXPOSITION)
                        return None
                    chunks.append(chunk)
            except trio.BrokenResourceError:
                return None  # it died while answering
            return b"".join(chunks)
    logger.warning("metrics: %s did not answer within %gs", path.name, SCRAPE_TIMEOUT)
    return None


async def scrape_workers(worker: WorkerMetrics, local: bytes) -> bytes:
    """Every live worker's exposition (``local`` is this worker's own), merged.

    Reads the other workers' sockets concurrently, each bounded (see the
    module docstring); adds ``trio_streams_metrics_workers{state=...}``:
    how many workers this scrape read and how many it skipped.

    Cancellation: propagates; every connection is closed.
    """
    others = sorted(
        (path for path in worker.directory.glob("metrics-*.sock") if path != worker.socket_path),
        key=lambda path: path.name,
    )
    texts: dict[str, bytes | None] = {worker.worker_id: local}

    async def read(path: Path) -> None:
        texts[path.name.removeprefix("metrics-").removesuffix(".sock")] = await read_worker(path)

    async with trio.open_nursery() as nursery:
        for path in others:
            nursery.start_soon(read, path)
    read_ok = {name: text for name, text in texts.items() if text is not None}
    skipped = len(texts) - len(read_ok)
    scrape = GaugeMetricFamily(
        PREFIX + "metrics_workers",
        "Workers this scrape read (scraped) and skipped (unreachable: died, or too slow).",
        labels=["state", "worker"],
    )
    scrape.add_metric(["scraped", worker.worker_id], len(read_ok))
    scrape.add_metric(["unreachable", worker.worker_id], skipped)
    return generate_latest(_Merged(merge_expositions(read_ok), scrape))


def merge_expositions(texts: dict[str, bytes]) -> list[Metric]:
    """The families of every worker's exposition, one family per name, each sample labelled ``worker``.

    Families keep the first worker's (in id order) help and type; a worker
    whose family of that name has another type (a mixed-version
    deployment) has that family left out rather than mislabelled.
    """
    merged: dict[str, Metric] = {}
    for worker_id in sorted(texts, key=_id_order):
        for family in _parse(texts[worker_id]):
            into = merged.get(family.name)
            if into is None:
                into = merged[family.name] = Metric(family.name, family.documentation, family.type)
            elif into.type != family.type:
                continue
            for sample in family.samples:
                into.samples.append(sample._replace(labels={**sample.labels, "worker": worker_id}))
    return list(merged.values())


def _parse(text: bytes) -> Iterable[Metric]:
    try:
        return list(text_string_to_metric_families(text.decode()))
    except (ValueError, UnicodeDecodeError):
        return []  # not an exposition (a half-written one cannot come: reads are whole)


def _id_order(worker_id: str) -> tuple[int, str]:
    return (int(worker_id), worker_id) if worker_id.isdigit() else (-1, worker_id)


class _Merged(Collector):
    def __init__(self, families: list[Metric], *extra: Metric) -> None:
        self._families = [*families, *extra]

    def collect(self) -> Iterator[Metric]:
        yield from self._families
