"""``--server-pid``: CPU seconds and RSS of a local server *and its children*, from /proc.

``serve --workers N`` is a supervisor with N worker processes (and maybe an
embedded redis-server): the server is the whole process tree under the pid.
Each sample reads every ``/proc/<pid>/stat`` once, builds the tree from the
parent pids, and sums:

- CPU: ``utime + stime + cutime + cstime`` of every live process in the tree.
  A process's ``cutime``/``cstime`` hold the CPU of the children it has
  waited for, so a worker that exited and was reaped still counts, exactly
  once (in its parent). A descendant orphaned to init is lost: say so.
- RSS: the sum of the tree's resident sets (``/proc/<pid>/statm``); the peak
  is the largest sum seen (samples every 0.25 s).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio


class ServerGone(Exception):
    """The server process does not exist (or /proc cannot be read)."""


@dataclass(frozen=True, slots=True)
class ProcStat:
    """What one process contributes: its parent, CPU clock ticks (own and reaped children's), RSS bytes."""

    ppid: int
    ticks: int
    rss: int


def parse_stat(text: str) -> tuple[int, int]:
    """``(ppid, utime + stime + cutime + cstime)`` from a ``/proc/<pid>/stat`` line.

    The command name (field 2) may hold spaces and parentheses: fields are
    counted after its *last* ``)``.
    """
    fields = text.rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3): ppid is field 4, utime..cstime fields 14..17.
    return int(fields[1]), sum(int(x) for x in fields[11:15])


def tree(stats: dict[int, ProcStat], root: int) -> set[int]:
    """``root`` and all its live descendants in ``stats`` (``root`` must be in it)."""
    children: dict[int, list[int]] = {}
    for pid, stat in stats.items():
        children.setdefault(stat.ppid, []).append(pid)
    found = {root}
    pending = [root]
    while pending:
        for child in children.get(pending.pop(), ()):
            if child not in found:  # pid 0's "parent" loop guard
                found.add(child)
                pending.append(child)
    return found


def read_all(proc: Path = Path("/proc")) -> dict[int, ProcStat]:
    """Every process's :class:`ProcStat`; processes that vanish while read are skipped."""
    page = os.sysconf("SC_PAGE_SIZE")
    stats: dict[int, ProcStat] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid, ticks = parse_stat((entry / "stat").read_text())
            rss = int((entry / "statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue  # exited between listing and reading
        stats[int(entry.name)] = ProcStat(ppid, ticks, rss)
    return stats


@dataclass(frozen=True, slots=True)
class TreeSample:
    """One sample of the tree: its processes, CPU seconds so far, RSS bytes."""

    processes: int
    cpu_seconds: float
    rss: int


def sample_tree(stats: dict[int, ProcStat], root: int) -> TreeSample:
    """Sum the tree under ``root``; :class:`ServerGone` if ``root`` is not running."""
    if root not in stats:
        raise ServerGone(f"no process {root}")
    members = tree(stats, root)
    ticks = sum(stats[pid].ticks for pid in members)
    return TreeSample(len(members), ticks / os.sysconf("SC_CLK_TCK"), sum(stats[pid].rss for pid in members))


class ServerSampler:
    """CPU seconds and peak RSS of the process tree under ``pid`` during the load."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.error: str | None = None
        self._start: TreeSample | None = None
        self.peak_rss = 0
        self.peak_processes = 0

    def _sample(self) -> TreeSample:
        sample = sample_tree(read_all(), self.pid)
        self.peak_rss = max(self.peak_rss, sample.rss)
        self.peak_processes = max(self.peak_processes, sample.processes)
        return sample

    def begin(self) -> None:
        """The baseline; raises :class:`ServerGone` if there is no such process (a usage error)."""
        try:
            self._start = self._sample()
        except OSError as exc:
            raise ServerGone(f"cannot read /proc: {exc}") from exc

    async def sample_forever(self) -> None:
        """Track the peak RSS every 0.25 s until cancelled (or the server went away)."""
        while self.error is None:
            try:
                self._sample()
            except (ServerGone, OSError) as exc:
                self.error = f"server process {self.pid} went away: {exc}"
            await trio.sleep(0.25)

    def result(self) -> dict[str, Any]:
        """The ``server`` object of the result (``{pid, error}`` if it went away)."""
        if self.error is None and self._start is not None:
            try:
                end = self._sample()
            except (ServerGone, OSError) as exc:
                self.error = f"server process {self.pid} went away: {exc}"
        if self.error is not None or self._start is None:
            return {"pid": self.pid, "error": self.error or "not sampled"}
        return {
            "pid": self.pid,
            "processes": self.peak_processes,
            "cpu_seconds": round(max(0.0, end.cpu_seconds - self._start.cpu_seconds), 3),
            "start_rss_bytes": self._start.rss,
            "peak_rss_bytes": self.peak_rss,
        }
