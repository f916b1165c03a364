"""What a chroot into an offline image needs while commands run, and its guaranteed teardown.

Mounted inside the root for the duration of a session (reference counted, so nested
sessions mount once):

* ``/proc`` (proc; ``/proc/sys`` re-bound read-only so a maintainer script cannot change the
  host kernel's sysctls), ``/sys`` (sysfs, read-only);
* ``/dev``: a fresh tmpfs with only the usual character devices and a private devpts
  instance on ``/dev/pts`` -- the host's ``/dev`` is never bound into the image;
* ``/run``: a tmpfs.

Mount points are opened confined (each component with O_NOFOLLOW; a symlink or a
non-directory is refused with TargetEscapeError before anything is mounted) and the mount
syscall is given the kernel's handle of that directory (``/proc/self/fd/N``), never a path
string resolved through the image. Unmounting happens in reverse order in ``finally``; each
mount is matched to its mount id in ``/proc/self/mountinfo`` first, and a busy mount is
detached lazily only after retries.

``/usr/sbin/policy-rc.d`` (exit 101) is installed for the session so maintainer scripts do not
start services, and whatever was there before is put back afterwards.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import logging
import os
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from goldsmith.errors import GoldsmithError, TargetError, TargetEscapeError
from goldsmith.model.records import FileType
from goldsmith.targets.base import Target
from goldsmith.targets.confine import ConfinedRoot, fd_path

log = logging.getLogger(__name__)

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2
UMOUNT_NOFOLLOW = 0x8

#: Directories of the image that get something mounted on them.
IMAGE_MOUNT_POINTS = ("/proc", "/sys", "/dev", "/run")

POLICY_RC_D = "/usr/sbin/policy-rc.d"
POLICY_RC_D_SCRIPT = b"#!/bin/sh\n# installed by goldsmith while it builds the image\nexit 101\n"

_DEVICES = (  # name, major, minor, mode
    ("null", 1, 3, 0o666),
    ("zero", 1, 5, 0o666),
    ("full", 1, 7, 0o666),
    ("random", 1, 8, 0o666),
    ("urandom", 1, 9, 0o666),
    ("tty", 5, 0, 0o666),
)
_DEV_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
)


class _Libc:
    def __init__(self) -> None:
        self._lib = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        self._lib.mount.argtypes = [
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_char_p,
        ]
        self._lib.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None
    ) -> None:
        rc = self._lib.mount(
            source.encode() if source is not None else None,
            os.fsencode(target),
            fstype.encode() if fstype is not None else None,
            flags,
            data.encode() if data is not None else None,
        )
        if rc != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), target)

    def umount2(self, target: str, flags: int) -> None:
        if self._lib.umount2(os.fsencode(target), flags) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), target)


_libc: _Libc | None = None


def libc() -> _Libc:
    global _libc
    if _libc is None:
        _libc = _Libc()
    return _libc


@dataclass(frozen=True)
class Mounted:
    """One mount we made: where (host path string, for matching and unmounting) and its id."""

    in_image: str
    host_path: str
    mnt_id: int


def mount_id(fd: int) -> int:
    with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as f:  # noqa: PTH123
        for line in f:
            if line.startswith("mnt_id:"):
                return int(line.split()[1])
    raise TargetError("cannot read the mount id of a file descriptor (is /proc mounted?)")


def _unescape_mountinfo(field: str) -> str:
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mountinfo() -> dict[int, str]:
    """Mount id -> mount point of every mount in this namespace."""
    mounts: dict[int, str] = {}
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:  # noqa: PTH123
        for line in f:
            fields = line.split()
            mounts[int(fields[0])] = _unescape_mountinfo(fields[4])
    return mounts


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root`` (host paths), innermost last."""
    prefix = os.path.realpath(root).rstrip("/") + "/"
    return [p for p in mountinfo().values() if p.startswith(prefix) or p == prefix[:-1]]


def open_mount_point(confined: ConfinedRoot, path: str, *, create: bool) -> int:
    """Open an in-image directory for mounting on: every component must be a real directory
    on the image's own filesystem (a symlink such as ``/proc -> /etc`` is refused)."""
    from goldsmith.targets.confine import in_image_components

    parts = in_image_components(path)
    fd = os.open(confined.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        walked = ""
        for name in parts:
            walked += "/" + name
            if name == "..":
                raise TargetEscapeError(f"mount point {path} contains '..'")
            try:
                nxt = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(name, 0o755, dir_fd=fd)
                nxt = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            st = os.fstat(nxt)
            if not stat.S_ISDIR(st.st_mode):
                os.close(nxt)
                kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
                raise TargetEscapeError(
                    f"refusing to mount on {walked} in {confined.root}: it is {kind}",
                    hint="a mount point in the image must be a real directory; "
                    "the image may be hostile or broken",
                )
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


class ChrootSession:
    """Reference-counted pseudo-filesystem mounts and policy-rc.d for one rootfs target."""

    def __init__(self, confined: ConfinedRoot, target: Target) -> None:
        self._confined = confined
        self._target = target
        self._lock = threading.RLock()
        self._depth = 0
        self._mounted: list[Mounted] = []
        self._saved_policy: _SavedFile | None = None
        self._policy_installed = False

    @property
    def active(self) -> bool:
        return self._depth > 0

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        with self._lock:
            if self._depth == 0:
                self._setup()
            self._depth += 1
        try:
            yield
        except BaseException:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    try:
                        self._teardown()
                    except GoldsmithError as exc:  # keep the first error; report this one
                        log.error("%s", exc.diagnostics())
            raise
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                self._teardown()

    # setup / teardown ----------------------------------------------------------------------
    def _setup(self) -> None:
        # Check every mount point before mounting anything: a refusal leaves no trace.
        try:
            for path in IMAGE_MOUNT_POINTS:
                os.close(open_mount_point(self._confined, path, create=True))
        except OSError as exc:
            raise TargetError(
                f"cannot prepare mount point {exc.filename or ''}: {exc.strerror}"
            ) from exc
        try:
            self._mount_all()
            self._install_policy()
        except BaseException as exc:
            try:
                self._teardown()
            except GoldsmithError as cleanup:  # keep the first error; report this one
                log.error("%s", cleanup.diagnostics())
            if isinstance(exc, OSError):
                raise TargetError(f"setting up the chroot failed: {exc}") from exc
            raise

    def _teardown(self) -> None:
        errors: list[str] = []
        try:
            self._restore_policy()
        except (GoldsmithError, OSError) as exc:
            errors.append(f"restoring {POLICY_RC_D}: {exc}")
        errors += self._unmount_all()
        if errors:
            raise TargetError(
                "cleaning up the chroot of "
                + str(self._confined.root)
                + " failed: "
                + "; ".join(errors),
                hint="check /proc/self/mountinfo for mounts left under the rootfs",
            )

    def _mount(
        self,
        path: str,
        source: str | None,
        fstype: str | None,
        flags: int,
        data: str | None = None,
    ) -> None:
        try:
            fd = open_mount_point(self._confined, path, create=True)
        except OSError as exc:
            raise TargetError(f"cannot open mount point {path}: {exc.strerror}") from exc
        try:
            try:
                libc().mount(source, fd_path(fd), fstype, flags, data)
            except OSError as exc:
                hint = "mounting needs root" if exc.errno == errno.EPERM else None
                raise TargetError(
                    f"cannot mount {fstype or source} on {path} in {self._confined.root}: "
                    f"{exc.strerror}",
                    hint=hint,
                ) from exc
        finally:
            os.close(fd)
        # Re-open: the lookup now lands on the root of the new mount.
        fd = open_mount_point(self._confined, path, create=False)
        try:
            mnt = mount_id(fd)
            host_path = mountinfo().get(mnt)
            if host_path is None:
                raise TargetError(f"mount on {path} does not show in /proc/self/mountinfo")
            self._mounted.append(Mounted(path, host_path, mnt))
            # No propagation to or from the host for anything mounted below this one.
            libc().mount(None, fd_path(fd), None, MS_PRIVATE, None)
        finally:
            os.close(fd)

    def _mount_all(self) -> None:
        nodev = MS_NOSUID | MS_NODEV | MS_NOEXEC
        self._mount("/proc", "proc", "proc", nodev)
        src = open_mount_point(self._confined, "/proc/sys", create=False)
        try:  # the image's own /proc/sys (just mounted), bound over itself
            self._mount("/proc/sys", fd_path(src), None, MS_BIND | MS_REC)
        finally:
            os.close(src)
        self._remount_ro("/proc/sys", MS_BIND | MS_REMOUNT | MS_RDONLY | nodev)
        self._mount("/sys", "sysfs", "sysfs", nodev | MS_RDONLY)
        self._mount("/dev", "tmpfs", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=16m")
        self._populate_dev()
        self._mount(
            "/dev/pts",
            "devpts",
            "devpts",
            MS_NOSUID | MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620",
        )
        self._mount("/run", "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64m")

    def _remount_ro(self, path: str, flags: int) -> None:
        fd = open_mount_point(self._confined, path, create=False)
        try:
            libc().mount(None, fd_path(fd), None, flags, None)
        finally:
            os.close(fd)

    def _populate_dev(self) -> None:
        fd = open_mount_point(self._confined, "/dev", create=False)
        try:
            if mount_id(fd) != self._mounted[-1].mnt_id:
                raise TargetError("/dev in the image is not the tmpfs just mounted")
            for name, major, minor, mode in _DEVICES:
                os.mknod(name, stat.S_IFCHR | mode, os.makedev(major, minor), dir_fd=fd)
                os.chmod(name, mode, dir_fd=fd, follow_symlinks=True)
            for name, target in _DEV_LINKS:
                os.symlink(target, name, dir_fd=fd)
            for name in ("pts", "shm"):
                os.mkdir(name, 0o755, dir_fd=fd)
            os.chmod("shm", 0o1777, dir_fd=fd)  # noqa: S103 (sticky, like every /dev/shm)
        finally:
            os.close(fd)

    def _unmount_all(self) -> list[str]:
        errors: list[str] = []
        while self._mounted:
            m = self._mounted.pop()
            try:
                self._unmount(m)
            except OSError as exc:
                errors.append(f"{m.in_image}: {exc.strerror}")
        return errors

    @staticmethod
    def _unmount(m: Mounted) -> None:
        for attempt in range(5):
            current = mountinfo().get(m.mnt_id)
            if current is None:
                return  # already gone (unmounted with its parent, or by someone else)
            if current != m.host_path:
                raise OSError(errno.EINVAL, f"mount {m.mnt_id} moved to {current}")
            try:
                libc().umount2(m.host_path, UMOUNT_NOFOLLOW)
                return
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
                time.sleep(0.1 * (attempt + 1))
        log.warning(
            "%s is busy (a process left running in the image?); detaching it lazily", m.host_path
        )
        libc().umount2(m.host_path, UMOUNT_NOFOLLOW | MNT_DETACH)

    # policy-rc.d -----------------------------------------------------------------------------
    def _install_policy(self) -> None:
        t = self._target
        parent = t.stat("/usr/sbin")
        if parent is None or parent.type is not FileType.DIR:
            log.debug("no /usr/sbin in %s; not installing policy-rc.d", self._confined.root)
            return
        self._saved_policy = _SavedFile.take(t, POLICY_RC_D)
        if self._saved_policy is not None and self._saved_policy.kind is FileType.DIR:
            raise TargetError(f"{POLICY_RC_D} in the image is a directory")
        t.write_bytes(POLICY_RC_D, POLICY_RC_D_SCRIPT, mode=0o755)
        self._policy_installed = True

    def _restore_policy(self) -> None:
        if not self._policy_installed:
            return
        t = self._target
        saved, self._saved_policy = self._saved_policy, None
        self._policy_installed = False
        if saved is None:
            if t.lstat(POLICY_RC_D) is not None:
                t.unlink(POLICY_RC_D)
            return
        saved.restore(t, POLICY_RC_D)


@dataclass(frozen=True)
class _SavedFile:
    kind: FileType
    data: bytes
    link: str | None
    mode: int
    uid: int
    gid: int

    @classmethod
    def take(cls, t: Target, path: str) -> _SavedFile | None:
        st = t.lstat(path)
        if st is None:
            return None
        if st.type is FileType.SYMLINK:
            return cls(st.type, b"", t.readlink(path), st.mode, st.uid, st.gid)
        if st.type is FileType.FILE:
            return cls(st.type, t.read_bytes(path), None, st.mode, st.uid, st.gid)
        return cls(st.type, b"", None, st.mode, st.uid, st.gid)

    def restore(self, t: Target, path: str) -> None:
        if self.kind is FileType.SYMLINK:
            assert self.link is not None
            if t.lstat(path) is not None:
                t.unlink(path)
            t.symlink(self.link, path)
            t.chown(path, self.uid, self.gid)
        else:
            t.write_bytes(path, self.data, mode=self.mode, uid=self.uid, gid=self.gid)
