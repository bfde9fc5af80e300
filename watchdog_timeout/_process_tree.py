"""Killing a child process's whole tree: the child, its descendants, their groups.

Design notes
------------
At the deadline the child and everything it started must be gone, wherever the
descendants went: into process groups or sessions of their own, or into the
children of a nested ``isolation="process"`` call.

Things that don't work:

- Killing the child's process group alone: a nested call's child makes a group
  of its own, so the outer kill misses it and whatever it started.
- ``/proc/<pid>/task/<tid>/children``: it needs CONFIG_PROC_CHILDREN, which some
  kernels (this project's VMs) lack.
- Signalling the tree while it runs: a process can fork between the scan that
  finds it and the signal, and its new child escapes to init.
- Following parent pids alone: a process whose parent exits (a daemon's double
  fork, ``setsid cmd &`` from a shell that exits) is reparented to init, and
  the scan no longer finds it.

Solution: SIGSTOP the child, then scan ``/proc/*/stat`` (~1 ms for 70
processes) for its descendants and their groups, stopping each, until no new
one appears (a stopped process cannot fork, and nobody dies meanwhile, so
nobody escapes to init); then SIGTERM and SIGCONT to all, a bounded wait
(``grace``) for the child, SIGKILL to what is left (checked by start time
against pid reuse), and a bounded reap. This reaches nested calls' children in
their own groups and grandchildren that called ``setsid``; never our own group.
On Linux the child is a subreaper (``_process_child``), so orphans of its
descendants are reparented to it and found as its children; ``reap_adopted``
reaps those that end between calls.
The child is reported stopped unless it outlived SIGKILL (D state). Without
``/proc`` (macOS) only the child and its group are signalled.
"""

from __future__ import annotations

import contextlib
import multiprocessing.process
import os
import signal
import time
from typing import Any

from ._seconds import clock

__all__ = ("reap_adopted", "stop_tree", "wait_dead")

_MIN_REAP = 0.5
_FREEZE_ROUNDS = 8
#: The fewest seconds between two scans for adopted orphans to reap.
_REAP_INTERVAL = 1.0
_last_reap = -_REAP_INTERVAL

#: pid -> (ppid, pgid, start time), from /proc.
ProcessTable = dict[int, tuple[int, int, bytes]]


def stop_tree(process: Any, grace: float) -> bool:
    """Stop, terminate, then kill the child, its descendants and its group.

    Args:
        process: The child, a started ``multiprocessing`` process (not closed).
        grace: How long to wait for the child to end after SIGTERM, and again
            (at least ``_MIN_REAP``) after SIGKILL.

    Returns:
        Whether the child ended and was reaped: False only if it outlived SIGKILL.
    """
    root = int(process.pid)
    alive = process.is_alive()
    victims, groups = _freeze(root if alive else None, root)
    _send(signal.SIGTERM, victims, groups)
    _send(signal.SIGCONT, victims, groups)
    if alive:
        wait_dead(process, grace)
    _send(signal.SIGKILL, _still_there(victims, groups), groups)
    return wait_dead(process, max(grace, _MIN_REAP))  # SIGKILL is certain, unless in D state


def wait_dead(process: Any, timeout: float) -> bool:
    """Wait up to ``timeout`` for ``process`` to end (and reap it); whether it did."""
    end = clock() + timeout
    pause = 0.0005
    while process.is_alive():
        left = end - clock()
        if left <= 0:
            return False
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.02)
    return True


def reap_adopted() -> None:
    """In a child that is a subreaper: reap the ended orphans it adopted.

    Only ended children in another process group (daemons call setsid) and not
    started by ``multiprocessing``: a child the function started itself and
    still means to wait for stays in our group. Cheap when there is nothing to
    reap (one ``waitid``); the ``/proc`` scan runs at most once per
    ``_REAP_INTERVAL``.
    """
    global _last_reap
    try:
        ended = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except (ChildProcessError, AttributeError):  # no children; no waitid (macOS)
        return
    if ended is None or clock() - _last_reap < _REAP_INTERVAL:
        return
    _last_reap = clock()
    table = _process_table()
    if table is None:
        return
    me, group = os.getpid(), os.getpgrp()
    children = getattr(multiprocessing.process, "_children", ())
    known = {getattr(child, "pid", None) for child in children}
    for pid, (ppid, pgid, _start) in table.items():
        if ppid == me and pgid != group and pid not in known:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reaps it if it ended, else nothing


def _freeze(root: int | None, group: int) -> tuple[dict[int, bytes], set[int]]:
    """SIGSTOP ``root``, its descendants and its group, until no new process appears.

    Returns the processes (pid -> start time) and the process groups found.
    """
    own = os.getpgrp()
    groups = {group} - {own}
    victims: dict[int, bytes] = {}
    _send(signal.SIGSTOP, [] if root is None else [root], groups)
    for _round in range(_FREEZE_ROUNDS):
        table = _process_table()
        if table is None:  # no /proc: the child and its group only
            if root is not None:
                victims[root] = b""
            break
        roots = [*victims, *([root] if root is not None and root in table else [])]
        new = [pid for pid in _tree(table, roots, groups) if pid not in victims]
        if not new:
            break
        new_groups = {table[pid][1] for pid in new} - groups - {own}
        for pid in new:
            victims[pid] = table[pid][2]
        groups |= new_groups
        _send(signal.SIGSTOP, new, new_groups)
    return victims, groups


def _still_there(victims: dict[int, bytes], groups: set[int]) -> list[int]:
    """The recorded processes that still exist (same start time) and their new descendants."""
    table = _process_table()
    if table is None:
        return list(victims)
    same = [pid for pid, start in victims.items() if pid in table and table[pid][2] == start]
    return _tree(table, same, groups)


def _tree(table: ProcessTable, roots: list[int], groups: set[int]) -> list[int]:
    """``roots``, the members of ``groups`` and all their descendants, parents first."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _pgid, _start) in table.items():
        children.setdefault(ppid, []).append(pid)
    found = dict.fromkeys(roots)
    found.update(dict.fromkeys(pid for pid, entry in table.items() if entry[1] in groups))
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found[child] = None
                todo.append(child)
    found.pop(os.getpid(), None)
    return list(found)


def _process_table() -> ProcessTable | None:
    """Every process's parent, group and start time, from /proc; None without /proc."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    table: ProcessTable = {}
    for entry in names:
        if not entry.isdigit():
            continue
        try:
            fd = os.open(f"/proc/{entry}/stat", os.O_RDONLY)
        except OSError:
            continue  # it just ended
        try:
            data = os.read(fd, 1024)
        except OSError:
            continue
        finally:
            os.close(fd)
        fields = data[data.rindex(b")") + 2 :].split()
        table[int(entry)] = (int(fields[1]), int(fields[2]), fields[19])
    return table or None


def _send(sig: int, pids: Any, groups: set[int]) -> None:
    for group in groups:
        with contextlib.suppress(OSError):
            os.killpg(group, sig)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)
