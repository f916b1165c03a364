"""A forked child that computes one value and hands it back pickled: the one way goldsmith
runs work beside itself (the tree-walk prefetch, the second half of the checks, the check
worker of ``goldsmith scan``).

The child starts from a copy of this process (``os.fork``: nothing is imported or loaded
again), puts SIGINT/SIGTERM/SIGHUP back to their defaults, runs ``work()``, writes the pickled
result as one length-prefixed message to a pipe and leaves with ``os._exit``, so it never
runs this process's atexit handlers nor flushes its buffers. Any exception in ``work`` is an
exit without an answer. The parent's :meth:`Forked.result` reads the one message (not until
EOF: a grandchild may still hold the pipe) and reaps the child; anything but a complete
answer from a child that exited 0 is ``None``, and every caller then does the work itself, so
a child can make goldsmith faster and never change what it finds. A child not waited for is
killed at exit.

Only for work that reads: a write made in the child is not seen by the parent's memo.
Fork only a single-threaded process (the callers check): a lock held by another thread at the
fork stays held in the child.

This module imports nothing heavy: the console script uses it before anything else.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import signal
import struct
from collections.abc import Callable

_LEN = struct.Struct("<Q")


class Forked:
    """The parent's handle on one forked child (see the module doc)."""

    def __init__(self, work: Callable[[], object]) -> None:
        read_fd, write_fd = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(read_fd)
            os.close(write_fd)
            raise
        if pid == 0:  # pragma: no cover - the child (coverage does not follow it)
            os.close(read_fd)
            _answer(write_fd, work)
        os.close(write_fd)
        self._pid: int | None = pid
        self._read: int | None = read_fd
        atexit.register(self.cancel)

    @property
    def pid(self) -> int | None:
        """The child's pid while it has not been reaped."""
        return self._pid

    def result(self) -> object | None:
        """The child's value, waiting for it; ``None`` if it has none."""
        if self._read is None:
            return None
        try:
            got = read_message(self._read)
        finally:
            os.close(self._read)
            self._read = None
        if not self._reap():
            return None
        return got

    def cancel(self) -> None:
        """Kill the child if it still runs and reap it (idempotent)."""
        if self._pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
        self._reap()
        if self._read is not None:
            os.close(self._read)
            self._read = None

    def _reap(self) -> bool:
        if self._pid is None:
            return False
        try:
            _, status = os.waitpid(self._pid, 0)
        except ChildProcessError:
            status = -1
        self._pid = None
        atexit.unregister(self.cancel)
        return status == 0


def _answer(write_fd: int, work: Callable[[], object]) -> None:  # pragma: no cover - child
    code = 1
    try:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        write_message(write_fd, work())
        code = 0
    except BaseException:  # no answer: the parent does the work itself
        code = 1
    finally:
        os._exit(code)


def write_message(fd: int, obj: object) -> None:
    """One length-prefixed pickle into a pipe."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_LEN.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def read_message(fd: int) -> object | None:
    """One length-prefixed pickle from a pipe of ours; ``None`` on EOF or a bad message."""
    head = _read_exact(fd, _LEN.size)
    if head is None:
        return None
    body = _read_exact(fd, _LEN.unpack(head)[0])
    if body is None:
        return None
    try:
        got: object = pickle.loads(body)  # noqa: S301 - written by a process forked from us
    except Exception:
        return None
    return got


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks: list[bytes] = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)
