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

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from goldsmith.controls.base import Rule
from goldsmith.controls.fsutil import fmt_mode, read_group, read_optional, read_passwd
from goldsmith.controls.steps import Chmod, Step
from goldsmith.model.records import Finding, Status
from goldsmith.targets.base import Target
from goldsmith.targets.treewalk import (
    DEFAULT_SKIP,
    Entry,
    live_devices,
    notable,
    take_prefetch,
    tree,
)


class ScanKind(StrEnum):
    WORLD_WRITABLE = "world-writable"
    UNOWNED = "unowned"
    SUID_SGID = "suid-sgid"


def _tree(
    t: Target, skip: tuple[str, ...]
) -> Iterator[tuple[str, list[tuple[str, os.stat_result]]]]:
    """The confined walk of the target's tree (see :func:`goldsmith.targets.treewalk.tree`);
    on a live system it also enters the local file systems mounted outside ``skip``."""
    devs: set[int] = set()
    if t.live:
        devs = live_devices(t.root, read_optional(t, "/proc/self/mounts") or "", skip)
    return tree(t.root, devs, skip)


def walk(t: Target, skip: tuple[str, ...] = DEFAULT_SKIP) -> Iterator[Entry]:
    """Every entry below the target's root (not the root itself), depth first, confined."""
    for prefix, items in _tree(t, skip):
        for name, st in items:
            yield Entry(prefix + "/" + name, st.st_mode, st.st_uid, st.st_gid)


def _known_ids(t: Target) -> tuple[set[int], set[int]]:
    """The uids of /etc/passwd and the gids of /etc/group."""
    return {e.uid for e in read_passwd(t).values()}, {e.gid for e in read_group(t).values()}


def _notable(t: Target, skip: tuple[str, ...]) -> tuple[tuple[Entry, ...], int]:
    """One walk for all three scan kinds: the entries any of them may report (world-writable
    bits, setuid/setgid bits, an unknown uid or gid) and how many entries were walked. Only
    those are kept, so the memo stays small however large the tree is."""
    uids, gids = _known_ids(t)
    pre = take_prefetch(t.root, skip)
    got = pre.result() if pre is not None and pre.live == t.live else None
    if got is not None and 0 in uids and 0 in gids:
        # the child kept every entry not owned by root:root or with o+w/setuid/setgid bits;
        # with uid and gid 0 known, the rest could not be reported
        entries, n = got
        kept = [e for e in entries if e.mode & 0o6002 or e.uid not in uids or e.gid not in gids]
        return tuple(kept), n
    kept, n = notable(_tree(t, skip), uids, gids)
    return tuple(kept), n


@dataclass(frozen=True)
class Hit:
    entry: Entry
    text: str
    new_mode: int | None  # the fix, if one is safe


@dataclass(frozen=True)
class TreeScanRule(Rule):
    type_name = "tree-scan"
    # the walk prefetched by ``goldsmith scan`` is handed to this process, and the three scans
    # share one walk through the target's memo
    check_in_main_process = True

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
