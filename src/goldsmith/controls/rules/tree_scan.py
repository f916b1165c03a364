"""tree-scan: one walk over the whole file system of the target, looking for entries of a kind.

* ``world-writable``: regular files writable by others (fix: remove o+w) and directories
  writable by others without the sticky bit (fix: add the sticky bit);
* ``unowned``: entries whose uid is not in /etc/passwd or gid not in /etc/group (check-only:
  who should own them is a human decision);
* ``suid-sgid``: setuid/setgid regular files not on the ``allow`` list (check-only).

The walk is ``os.scandir`` on directory handles opened one level at a time from the target's
root with ``O_NOFOLLOW | O_DIRECTORY`` (each handle's device and inode checked against the
entry it was opened for), so no symlink is ever followed and the walk cannot leave the
target. It does not cross into another file system on an offline image (``/proc``, ``/dev``,
``/run`` of a chroot session, anything mounted into it is not the image); on a live system it
crosses only into local file systems (``/proc/self/mounts``), never into ``skip``. About
25,000 entries of a trixie rootfs take well under a second.
"""

# ruff: noqa: PTH116
# (os calls on purpose: dir_fd-relative and O_NOFOLLOW variants have no pathlib form)

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from goldsmith.controls.base import Rule
from goldsmith.controls.fsutil import fmt_mode, read_group, read_optional, read_passwd
from goldsmith.controls.steps import Chmod, Step
from goldsmith.errors import TargetError
from goldsmith.model.records import Finding, Status
from goldsmith.targets.base import Target

#: file systems the live walk enters (CIS: "df --local"); pseudo and network ones are not
LOCAL_FS = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "vfat", "exfat", "f2fs", "jfs", "zfs", "tmpfs"}
)
DEFAULT_SKIP = ("/proc", "/sys", "/dev", "/run")


class ScanKind(StrEnum):
    WORLD_WRITABLE = "world-writable"
    UNOWNED = "unowned"
    SUID_SGID = "suid-sgid"


class Entry(NamedTuple):  # a tuple: tens of thousands are made per walk
    path: str
    mode: int  # full st_mode (type and permission bits)
    uid: int
    gid: int


def _join(base: str, name: str) -> str:
    return ("" if base == "/" else base) + "/" + name


def _live_devices(t: Target, skip: tuple[str, ...]) -> set[int]:
    """Devices of the live system's local file systems outside ``skip``."""
    devs: set[int] = set()
    for line in (read_optional(t, "/proc/self/mounts") or "").splitlines():
        f = line.split()
        if len(f) < 3 or f[2] not in LOCAL_FS:
            continue
        point = f[1].replace("\\040", " ")
        if any(point == s or point.startswith(s.rstrip("/") + "/") for s in skip):
            continue
        try:
            devs.add(os.stat(t.root / point.lstrip("/")).st_dev)
        except OSError:
            continue
    return devs


def walk(t: Target, skip: tuple[str, ...] = DEFAULT_SKIP) -> Iterator[Entry]:
    """Every entry below the target's root (not the root itself), depth first, confined."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    root_fd = os.open(t.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        devs = {os.fstat(root_fd).st_dev}
        if t.live:
            devs |= _live_devices(t, skip)
        skipped = {s.rstrip("/") or "/" for s in skip}
        stack: list[tuple[int, str]] = [(root_fd, "/")]
        root_fd = -1  # owned by the stack now
        while stack:
            fd, path = stack.pop()
            try:
                with os.scandir(fd) as it:
                    entries = list(it)
                for e in entries:
                    st = e.stat(follow_symlinks=False)
                    child = _join(path, e.name)
                    yield Entry(child, st.st_mode, st.st_uid, st.st_gid)
                    if not stat.S_ISDIR(st.st_mode) or child in skipped or st.st_dev not in devs:
                        continue
                    try:
                        cfd = os.open(e.name, flags, dir_fd=fd)
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


def _known_ids(t: Target) -> tuple[set[int], set[int]]:
    """The uids of /etc/passwd and the gids of /etc/group."""
    return {e.uid for e in read_passwd(t).values()}, {e.gid for e in read_group(t).values()}


def _notable(t: Target, skip: tuple[str, ...]) -> tuple[tuple[Entry, ...], int]:
    """One walk for all three scan kinds: the entries any of them may report (world-writable
    bits, setuid/setgid bits, an unknown uid or gid) and how many entries were walked. Only
    those are kept, so the memo stays small however large the tree is."""
    uids, gids = _known_ids(t)
    kept: list[Entry] = []
    n = 0
    for e in walk(t, skip):
        n += 1
        if e.mode & 0o6002 or e.uid not in uids or e.gid not in gids:
            kept.append(e)
    return tuple(kept), n


@dataclass(frozen=True)
class Hit:
    entry: Entry
    text: str
    new_mode: int | None  # the fix, if one is safe


@dataclass(frozen=True)
class TreeScanRule(Rule):
    type_name = "tree-scan"

    scan: ScanKind
    #: paths (fnmatch patterns, "*" crosses "/") that are expected and not reported
    allow: tuple[str, ...] = ()
    #: trees not scanned at all (pseudo and runtime file systems)
    skip: tuple[str, ...] = DEFAULT_SKIP
    #: world-writable only: apply removes o+w from files and adds the sticky bit to dirs
    fix: bool = True

    def __post_init__(self) -> None:
        if any(not p.startswith("/") for p in (*self.allow, *self.skip)):
            raise ValueError("allow and skip take absolute paths")

    def _allowed(self, path: str) -> bool:
        return any(fnmatch.fnmatchcase(path, p) for p in self.allow)

    def hits(self, t: Target) -> tuple[list[Hit], int]:
        """What the scan found (allow-listed entries left out) and how many entries it saw."""
        out: list[Hit] = []
        uids, gids = _known_ids(t)
        # one walk per target and skip list for all three scans (forgotten on any write)
        entries, n = t.memo(("tree-scan.walk", self.skip), lambda: _notable(t, self.skip))
        for e in self._candidates(entries, uids, gids):
            hit = self._hit(e, uids, gids)
            if hit is not None and not self._allowed(e.path):
                out.append(hit)
        out.sort(key=lambda h: h.entry.path)  # scandir order is the disk's, not stable
        return out, n

    def _candidates(self, entries: Iterable[Entry], uids: set[int], gids: set[int]) -> list[Entry]:
        """The entries :meth:`_hit` may report (a cheap first pass: most entries are not)."""
        if self.scan is ScanKind.WORLD_WRITABLE:
            return [e for e in entries if e.mode & 0o002]
        if self.scan is ScanKind.UNOWNED:
            return [e for e in entries if e.uid not in uids or e.gid not in gids]
        return [e for e in entries if e.mode & 0o6000]

    def _hit(self, e: Entry, uids: set[int], gids: set[int]) -> Hit | None:
        perm = stat.S_IMODE(e.mode)
        if self.scan is ScanKind.WORLD_WRITABLE:
            if stat.S_ISREG(e.mode) and perm & 0o002:
                return Hit(e, f"{e.path} file mode {fmt_mode(perm)}", perm & ~0o002)
            if stat.S_ISDIR(e.mode) and perm & 0o002 and not perm & 0o1000:
                return Hit(e, f"{e.path} dir mode {fmt_mode(perm)} (no sticky)", perm | 0o1000)
            return None
        if self.scan is ScanKind.UNOWNED:
            bad = []
            if e.uid not in uids:
                bad.append(f"uid {e.uid}")
            if e.gid not in gids:
                bad.append(f"gid {e.gid}")
            return Hit(e, f"{e.path} {' and '.join(bad)} unknown", None) if bad else None
        if stat.S_ISREG(e.mode) and perm & 0o6000:
            return Hit(e, f"{e.path} mode {fmt_mode(perm)}", None)
        return None

    def _expected(self) -> str:
        allow = f" (allowed: {', '.join(self.allow)})" if self.allow else ""
        return {
            ScanKind.WORLD_WRITABLE: "no world-writable file; every world-writable directory "
            "has the sticky bit",
            ScanKind.UNOWNED: "every file's uid and gid exist in /etc/passwd and /etc/group",
            ScanKind.SUID_SGID: "no setuid/setgid file outside the reviewed list",
        }[self.scan] + allow

    def check(self, t: Target) -> Finding:
        found, n = self.hits(t)
        how = (
            f"walked {n} entries from / without following links or crossing into other "
            f"file systems; skipped {', '.join(self.skip)}"
        )
        if not found:
            return self.finding(Status.PASS, self._expected(), "none found", how)
        observed = "; ".join(h.text for h in found[:25])
        if len(found) > 25:
            observed += f"; ... ({len(found) - 25} more)"
        if not self.fix or self.scan is not ScanKind.WORLD_WRITABLE:
            observed += " [check-only: needs a human decision]"
        return self.finding(Status.FAIL, self._expected(), observed, how)

    def steps(self, t: Target) -> list[Step]:
        if not self.fix or self.scan is not ScanKind.WORLD_WRITABLE:
            return []
        found, _ = self.hits(t)
        return [
            Chmod(
                (
                    self.change(
                        h.entry.path, "mode", fmt_mode(stat.S_IMODE(h.entry.mode)), fmt_mode(m)
                    ),
                ),
                h.entry.path,
                m,
            )
            for h in found
            if (m := h.new_mode) is not None
        ]
