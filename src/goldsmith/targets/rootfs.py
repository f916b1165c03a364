"""An offline image as a target: every path confined to the root, commands through chroot.

Semantics of the final path component (see confine.py for the walk itself):

* followed (confined): read_bytes/read_text, exists, stat, listdir, chmod, mkdir;
* not followed: lstat, readlink, unlink, symlink, chown (acts on a symlink itself, like
  ``chown -h``), rmtree (a symlink is removed, never descended), write_bytes/write_text.

A write to a path that is a symlink replaces the symlink by a regular file; it never writes
through it. That keeps the written path the one recorded in the Change, and avoids editing a
packaged file such as /usr/lib/os-release through /etc/os-release.
"""

# ruff: noqa: PTH101, PTH208
# (os calls on purpose: dir_fd-relative and O_NOFOLLOW variants have no pathlib form)

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import shutil
import stat
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from goldsmith.errors import GoldsmithError, TargetError, TargetEscapeError, ToolMissingError
from goldsmith.model.records import FileType
from goldsmith.targets.base import RunResult, StatResult, Target
from goldsmith.targets.chroot import ChrootSession
from goldsmith.targets.confine import (
    ConfinedRoot,
    Resolved,
    atomic_write,
    fd_path,
    in_image_components,
    oserror,
    read_regular,
    rmtree_at,
    to_stat_result,
)
from goldsmith.targets.host import command_env, run_process, validate_with

log = logging.getLogger(__name__)


class RootfsTarget(Target):
    """A root filesystem in a host directory, never left by any operation."""

    live = False

    def __init__(self, root: Path, *, env: Mapping[str, str] | None = None) -> None:
        """``env``: variables every command in the image gets (e.g. SOURCE_DATE_EPOCH, so
        initramfs, shadow and dpkg-written files are reproducible); ``run(env=)`` adds to it."""
        self._confined = ConfinedRoot(Path(root))
        self._env: dict[str, str] = dict(env or {})
        self._session = ChrootSession(self._confined, self)

    @property
    def root(self) -> Path:
        return self._confined.root

    @contextlib.contextmanager
    def _resolve(
        self, path: str, action: str, *, follow: bool = True, create_mode: int | None = None
    ) -> Iterator[Resolved]:
        try:
            with self._confined.resolve(path, follow=follow, create_mode=create_mode) as r:
                yield r
        except GoldsmithError:
            raise
        except OSError as exc:
            raise oserror(path, exc, action) from exc

    # reading -------------------------------------------------------------------------------
    def read_bytes(self, path: str) -> bytes:
        with self._resolve(path, "read") as r:
            _, st = r.require(f"read {path}")
            return read_regular(r.dir_fd, r.require_name(f"read {path}"), st, path)

    def exists(self, path: str) -> bool:
        try:
            with self._confined.resolve(path) as r:
                return r.exists
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise oserror(path, exc, "stat") from exc

    def lstat(self, path: str) -> StatResult | None:
        return self._stat(path, follow=False)

    def stat(self, path: str) -> StatResult | None:
        return self._stat(path, follow=True)

    def _stat(self, path: str, *, follow: bool) -> StatResult | None:
        try:
            with self._confined.resolve(path, follow=follow) as r:
                return to_stat_result(r.st) if r.st is not None else None
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise oserror(path, exc, "stat") from exc

    def readlink(self, path: str) -> str:
        with self._resolve(path, "readlink", follow=False) as r:
            fd, st = r.require(f"readlink {path}")
            if not stat.S_ISLNK(st.st_mode):
                raise TargetError(f"readlink {path}: not a symlink")
            return os.readlink("", dir_fd=fd)

    def listdir(self, path: str) -> list[str]:
        with self._resolve(path, "listdir") as r:
            fd, st = r.require(f"listdir {path}")
            if not stat.S_ISDIR(st.st_mode):
                raise TargetError(f"listdir {path}: not a directory")
            dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
            try:
                return sorted(os.listdir(dfd))
            finally:
                os.close(dfd)

    def glob(self, pattern: str) -> list[str]:
        return glob_target(self, pattern)

    # writing -------------------------------------------------------------------------------
    def write_bytes(
        self,
        path: str,
        data: bytes,
        *,
        mode: int = 0o644,
        uid: int = 0,
        gid: int = 0,
        validate: Sequence[str] | None = None,
    ) -> None:
        check = validate_with(self, validate, path) if validate is not None else None
        with self._resolve(path, "write", follow=False) as r:
            name = r.require_name(f"write {path}")
            if r.st is not None and stat.S_ISDIR(r.st.st_mode):
                raise TargetError(f"write {path}: is a directory")
            try:
                atomic_write(
                    r.dir_fd, name, r.dir_path, data, mode=mode, uid=uid, gid=gid, validate=check
                )
            except OSError as exc:
                raise oserror(path, exc, "write") from exc

    def chmod(self, path: str, mode: int) -> None:
        with self._resolve(path, "chmod") as r:
            fd, _ = r.require(f"chmod {path}")
            try:
                os.chmod(fd_path(fd), mode & 0o7777)
            except OSError as exc:
                raise oserror(path, exc, "chmod") from exc

    def chown(self, path: str, uid: int, gid: int) -> None:
        with self._resolve(path, "chown", follow=False) as r:
            fd, _ = r.require(f"chown {path}")
            try:
                if r.name is None:  # a directory of the walk ("/", "/x/.."): never a symlink
                    os.chown(fd_path(fd), uid, gid)
                else:
                    os.chown(r.name, uid, gid, dir_fd=r.dir_fd, follow_symlinks=False)
            except OSError as exc:
                raise oserror(path, exc, "chown") from exc

    def mkdir(self, path: str, mode: int = 0o755, *, parents: bool = False) -> None:
        """Create a directory with exactly ``mode``; an existing directory is left as it is."""
        with self._resolve(path, "mkdir", create_mode=0o755 if parents else None) as r:
            if r.st is not None:
                if stat.S_ISDIR(r.st.st_mode):
                    return
                raise TargetError(f"mkdir {path}: exists and is not a directory")
            name = r.require_name(f"mkdir {path}")
            try:
                os.mkdir(name, 0o700, dir_fd=r.dir_fd)
                fd = os.open(
                    name, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=r.dir_fd
                )
                try:
                    os.chmod(fd_path(fd), mode & 0o7777)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise oserror(path, exc, "mkdir") from exc

    def unlink(self, path: str) -> None:
        with self._resolve(path, "unlink", follow=False) as r:
            _, st = r.require(f"unlink {path}")
            name = r.require_name(f"unlink {path}")
            if stat.S_ISDIR(st.st_mode):
                raise TargetError(f"unlink {path}: is a directory", hint="use rmtree")
            try:
                os.unlink(name, dir_fd=r.dir_fd)
            except OSError as exc:
                raise oserror(path, exc, "unlink") from exc

    def rmtree(self, path: str) -> None:
        """Remove a directory tree (or a single file or symlink) without following symlinks
        and without entering another filesystem mounted inside it."""
        with self._resolve(path, "rmtree", follow=False) as r:
            _, st = r.require(f"rmtree {path}")
            name = r.require_name(f"rmtree {path}")
            try:
                if stat.S_ISDIR(st.st_mode):
                    rmtree_at(r.dir_fd, name, self._confined.dev, r.path)
                else:
                    os.unlink(name, dir_fd=r.dir_fd)
            except OSError as exc:
                raise oserror(path, exc, "rmtree") from exc

    def symlink(self, target: str, path: str) -> None:
        if not target or "\0" in target:
            raise TargetError(f"symlink {path}: invalid link target {target!r}")
        with self._resolve(path, "symlink", follow=False) as r:
            name = r.require_name(f"symlink {path}")
            if r.exists:
                raise TargetError(f"symlink {path}: already exists")
            try:
                os.symlink(target, name, dir_fd=r.dir_fd)
            except OSError as exc:
                raise oserror(path, exc, "symlink") from exc

    # commands ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Mount /proc, /sys, /dev, /dev/pts, /run and install policy-rc.d once for many
        run() calls; nested sessions share the mounts, the outermost one tears them down."""
        with self._session.hold():
            yield

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> RunResult:
        if not argv:
            raise TargetError("run: empty argv")
        chroot = shutil.which("chroot", path="/usr/sbin:/usr/bin:/sbin:/bin")
        if chroot is None:
            raise ToolMissingError("chroot", "coreutils")
        with self.session():
            return run_process(
                [chroot, str(self.root), *argv],
                shown=argv,
                input=input,
                env=command_env({**self._env, **(env or {})}),
                timeout=timeout,
                check=check,
            )


# glob --------------------------------------------------------------------------------------
def glob_target(t: Target, pattern: str) -> list[str]:
    """Sorted in-target paths matching ``pattern``: fnmatch per component, ``**`` for any
    number of directories (symlinked directories are not descended by ``**``), names
    starting with "." only matched by a pattern component starting with ".". Mount points
    (/proc, /sys, /dev, /run while a chroot session runs) match nothing."""
    parts = in_image_components(pattern)
    found: set[str] = set()
    _glob(t, "/", parts, found)
    return sorted(found)


def _join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


def _is_dir(t: Target, path: str) -> bool:
    try:
        st = t.stat(path)
    except (TargetError, TargetEscapeError):
        # a symlink loop matches nothing below it, as in glob(3); a mount point (only while
        # a chroot session runs) is not part of the image
        return False
    return st is not None and st.type is FileType.DIR


def _lexists(t: Target, path: str) -> bool:
    try:
        return t.lstat(path) is not None
    except TargetEscapeError:
        return False


def _glob(t: Target, base: str, parts: list[str], found: set[str]) -> None:
    if not parts:
        if _lexists(t, base):
            found.add(base)
        return
    head, rest = parts[0], parts[1:]
    if head == "**":
        _glob(t, base, rest, found)  # zero directories
        for name in _names(t, base, "*"):
            child = _join(base, name)
            if _lexists(t, child) and _is_real_dir(t, child):
                _glob(t, child, parts, found)
        return
    if not _has_magic(head):
        child = _join(base, head)
        if rest:
            if _is_dir(t, child):
                _glob(t, child, rest, found)
        elif _lexists(t, child):
            found.add(child)
        return
    for name in _names(t, base, head):
        child = _join(base, name)
        if rest:
            if _is_dir(t, child):
                _glob(t, child, rest, found)
        elif _lexists(t, child):
            found.add(child)


def _is_real_dir(t: Target, path: str) -> bool:
    st = t.lstat(path)
    return st is not None and st.type is FileType.DIR


def _names(t: Target, base: str, pattern: str) -> list[str]:
    if not _is_dir(t, base):
        return []
    names = t.listdir(base)
    if not pattern.startswith("."):
        names = [n for n in names if not n.startswith(".")]
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def _has_magic(part: str) -> bool:
    return any(c in part for c in "*?[")
