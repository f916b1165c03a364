"""The confined file-system walk the tree-scan rules share, and a prefetch that runs it in a
child process while the parent is still loading the profile and the catalogue.

The walk is ``os.scandir`` on directory handles opened one level at a time from the root
with ``O_NOFOLLOW | O_DIRECTORY`` (each handle's device and inode checked against the entry
it was opened for), so no symlink is ever followed and the walk cannot leave the root. It
enters only the devices it is given (the root's own; on a live system its local file
systems too) and never the ``skip`` trees.

This module imports nothing heavy on purpose: :func:`start_prefetch` forks before the CLI
imports pydantic, Jinja2 and the rule modules, so on two cores the walk (about a fifth of a
whole-catalogue scan) runs beside them instead of after them.
"""

# ruff: noqa: PTH116
# (os calls on purpose: dir_fd-relative and O_NOFOLLOW variants have no pathlib form)

from __future__ import annotations

import os
import stat
from collections.abc import Container, Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from goldsmith.errors import TargetError
from goldsmith.forked import Forked

#: file systems the live walk enters (CIS: "df --local"); pseudo and network ones are not
LOCAL_FS = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "vfat", "exfat", "f2fs", "jfs", "zfs", "tmpfs"}
)
DEFAULT_SKIP = ("/proc", "/sys", "/dev", "/run")


class Entry(NamedTuple):  # a tuple: tens of thousands are made per walk
    path: str
    mode: int  # full st_mode (type and permission bits)
    uid: int
    gid: int


def live_devices(root: Path, mounts: str, skip: tuple[str, ...]) -> set[int]:
    """Devices of the local file systems in ``mounts`` (/proc/self/mounts) outside ``skip``."""
    devs: set[int] = set()
    for line in mounts.splitlines():
        f = line.split()
        if len(f) < 3 or f[2] not in LOCAL_FS:
            continue
        point = f[1].replace("\\040", " ")
        if any(point == s or point.startswith(s.rstrip("/") + "/") for s in skip):
            continue
        try:
            devs.add(os.stat(root / point.lstrip("/")).st_dev)
        except OSError:
            continue
    return devs


def tree(
    root: Path, extra_devs: set[int], skip: tuple[str, ...]
) -> Iterator[tuple[str, list[tuple[str, os.stat_result]]]]:
    """Each directory below ``root``, depth first, confined: its path prefix ("" for the root)
    and its entries' names with their ``lstat``. A directory's entries come as one list, so
    the callers' per-entry loops stay tight (tens of thousands per walk)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        devs = {os.fstat(root_fd).st_dev} | extra_devs
        skipped = {s.rstrip("/") or "/" for s in skip}
        stack: list[tuple[int, str]] = [(root_fd, "")]
        root_fd = -1  # owned by the stack now
        isdir = stat.S_ISDIR
        while stack:
            fd, prefix = stack.pop()
            try:
                with os.scandir(fd) as it:
                    items = [(e.name, e.stat(follow_symlinks=False)) for e in it]
                yield prefix, items
                for name, st in items:
                    if not isdir(st.st_mode):
                        continue
                    child = prefix + "/" + name
                    if child in skipped or st.st_dev not in devs:
                        continue
                    try:
                        cfd = os.open(name, flags, dir_fd=fd)
                    except OSError as exc:
                        raise TargetError(f"scan {child}: {exc.strerror}") from exc
                    cst = os.fstat(cfd)
                    if (cst.st_dev, cst.st_ino) != (st.st_dev, st.st_ino):
                        os.close(cfd)
                        raise TargetError(f"scan {child}: changed while the scan ran")
                    stack.append((cfd, child))
            finally:
                os.close(fd)
    finally:
        if root_fd >= 0:
            os.close(root_fd)
        for fd, _ in stack:
            os.close(fd)


Walked = Iterable[tuple[str, list[tuple[str, os.stat_result]]]]


def notable(walked: Walked, uids: Container[int], gids: Container[int]) -> tuple[list[Entry], int]:
    """The entries of a walk any tree scan may report (world-write, setuid or setgid bits, or
    a uid not in ``uids`` or gid not in ``gids``) and how many entries were walked."""
    kept: list[Entry] = []
    n = 0
    for prefix, items in walked:
        n += len(items)
        for name, st in items:
            mode, uid, gid = st.st_mode, st.st_uid, st.st_gid
            if mode & 0o6002 or uid not in uids or gid not in gids:
                kept.append(Entry(prefix + "/" + name, mode, uid, gid))
    return kept, n


_ROOT_ONLY = frozenset({0})


def not_plain_root(
    root: Path, extra_devs: set[int], skip: tuple[str, ...]
) -> tuple[list[Entry], int]:
    """:func:`notable` as if root (0) were the only account: every entry not plain root:root.
    What the prefetch hands over, a few hundred entries rather than 20,000; a superset of
    what any account databases that know uid and gid 0 make notable."""
    return notable(tree(root, extra_devs, skip), _ROOT_ONLY, _ROOT_ONLY)


# prefetch -------------------------------------------------------------------------------------
class Prefetch:
    """:func:`not_plain_root` of one root and skip list, computed by a forked child
    (:class:`goldsmith.forked.Forked`).

    :meth:`result` takes the answer once. Any failure (the child died, the walk raised) gives
    ``None``, and the caller walks itself, so the prefetch can only make a scan faster, never
    change what it finds.
    """

    def __init__(self, root: Path, skip: tuple[str, ...], live: bool) -> None:
        self.root = root
        self.skip = skip
        self.live = live
        self._child = Forked(lambda: _walk(root, skip, live))

    def result(self) -> tuple[list[Entry], int] | None:
        """The child's answer, waiting for it; ``None`` if it has none (then walk yourself)."""
        got = self._child.result()
        if not isinstance(got, tuple) or len(got) != 2:
            return None
        entries, n = got
        return [Entry(*e) for e in entries], int(n)

    def cancel(self) -> None:
        """Stop the child if it still runs (the scan ended before it needed the walk)."""
        self._child.cancel()


def _walk(  # pragma: no cover - runs in the forked child
    root: Path, skip: tuple[str, ...], live: bool
) -> tuple[list[tuple[str, int, int, int]], int]:
    devs: set[int] = set()
    if live:
        mounts = Path("/proc/self/mounts").read_text(encoding="utf-8", errors="replace")
        devs = live_devices(root, mounts, skip)
    entries, n = not_plain_root(root, devs, skip)
    return [(e.path, e.mode, e.uid, e.gid) for e in entries], n


_prefetches: dict[tuple[str, tuple[str, ...]], Prefetch] = {}


def start_prefetch(root: Path, *, live: bool, skip: tuple[str, ...] = DEFAULT_SKIP) -> None:
    """Start walking ``root`` in a child process, for the first tree scan of it to take.

    Only for runs that read and never write (``goldsmith scan``): the answer is taken as it
    was when the child walked. Does nothing if ``root`` is not a directory or fork fails.
    """
    key = (os.path.realpath(root), skip)
    if key in _prefetches or not Path(key[0]).is_dir():
        return
    try:
        _prefetches[key] = Prefetch(Path(key[0]), skip, live)
    except OSError:
        return


def cancel_prefetches() -> None:
    """Stop every prefetch not taken yet (a walk of a tree no scan will ask for)."""
    while _prefetches:
        _prefetches.popitem()[1].cancel()


def take_prefetch(root: Path, skip: tuple[str, ...]) -> Prefetch | None:
    """The prefetch started for ``root`` and ``skip``, handed over once (then forgotten)."""
    return _prefetches.pop((os.path.realpath(root), skip), None)
