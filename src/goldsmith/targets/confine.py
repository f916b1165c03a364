"""Confined path resolution: every in-image path is walked component by component from an
open directory handle of the root, so nothing a hostile image contains can take us outside it.

Rules of the walk (what ``chroot`` + the kernel would do, minus the trust in the image):

* each component is opened with ``O_PATH | O_NOFOLLOW`` relative to the directory before it;
* a symlink met on the way is read with ``readlinkat`` on its own handle: an absolute target
  restarts the walk at the root, a relative one continues from the directory holding the link;
* ``..`` pops one directory off the walked stack and never goes above the root;
* more than ``MAX_SYMLINKS`` links in one walk (loops) raise TargetError;
* a directory on another filesystem than the root (``/proc``, ``/dev`` while a chroot session
  has them mounted, or anything else mounted into the image) raises TargetEscapeError, so a
  file operation cannot reach the host's ``/dev``, ``/proc/sys`` or ``/sys`` through them.

The final component is only followed when the caller asks for it (read, stat, chmod); lstat,
readlink, unlink, symlink, chown and the rename of an atomic write act on the entry itself.
"""

# ruff: noqa: PTH101
# (os calls on purpose: dir_fd-relative and O_NOFOLLOW variants have no pathlib form)

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from goldsmith.errors import TargetError, TargetEscapeError
from goldsmith.model.records import FileType
from goldsmith.targets.base import StatResult

MAX_SYMLINKS = 40

_O_PATH_NOFOLLOW = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


def in_image_components(path: str) -> list[str]:
    """Split an absolute in-image path into components ('.' and empty ones dropped)."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise TargetError(
            f"not an absolute in-image path: {path!r}",
            hint="target paths are absolute paths inside the image, such as /etc/fstab",
        )
    if "\0" in path:
        raise TargetError(f"path contains a NUL byte: {path!r}")
    return [c for c in path.split("/") if c not in ("", ".")]


def _link_components(target: str) -> list[str]:
    return [c for c in target.split("/") if c not in ("", ".")]


def fd_path(fd: int) -> str:
    """A path naming exactly the object behind ``fd`` (the kernel's magic link, never a
    string that could be re-resolved through the image)."""
    return f"/proc/self/fd/{fd}"


class _Stack:
    """The directories walked so far, as open O_PATH handles; index 0 is the root."""

    def __init__(self, root_fd: int) -> None:
        self.fds: list[int] = [root_fd]
        self.names: list[str] = []

    @property
    def top(self) -> int:
        return self.fds[-1]

    @property
    def path(self) -> str:
        return "/" + "/".join(self.names)

    def push(self, name: str, fd: int) -> None:
        self.fds.append(fd)
        self.names.append(name)

    def pop(self) -> None:
        if len(self.fds) > 1:  # ".." at the root stays at the root
            os.close(self.fds.pop())
            self.names.pop()

    def reset(self) -> None:
        while len(self.fds) > 1:
            self.pop()

    def close(self) -> None:
        for fd in reversed(self.fds):
            os.close(fd)
        self.fds = []
        self.names = []


@dataclass
class Resolved:
    """Where a walk ended. ``dir_fd`` is the directory holding the final entry ``name``;
    ``fd``/``st`` describe that entry (None if it does not exist). When the path names a
    directory already on the walked stack (``/`` itself, or ``/a/..``), ``name`` is None and
    ``fd`` is that directory."""

    dir_fd: int
    dir_path: str
    name: str | None
    fd: int | None
    st: os.stat_result | None

    @property
    def path(self) -> str:
        """The canonical in-image path of the final entry (symlinks resolved)."""
        if self.name is None:
            return self.dir_path
        return self.dir_path.rstrip("/") + "/" + self.name

    @property
    def exists(self) -> bool:
        return self.fd is not None

    def require(self, what: str) -> tuple[int, os.stat_result]:
        if self.fd is None or self.st is None:
            raise TargetError(f"{what}: no such file or directory")
        return self.fd, self.st

    def require_name(self, what: str) -> str:
        if self.name is None:
            raise TargetError(f"{what}: refusing to act on {self.dir_path} itself")
        return self.name


class ConfinedRoot:
    """Resolves in-image paths of one root directory without ever leaving it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        try:
            fd = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise TargetError(
                f"cannot open target root {self.root}: {exc.strerror}",
                hint="the rootfs directory must exist",
            ) from exc
        try:
            self.dev = os.fstat(fd).st_dev
        finally:
            os.close(fd)

    def _open_root(self) -> int:
        try:
            fd = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise TargetError(f"cannot open target root {self.root}: {exc.strerror}") from exc
        if os.fstat(fd).st_dev != self.dev:
            os.close(fd)
            raise TargetEscapeError(
                f"target root {self.root} changed filesystem since it was opened"
            )
        return fd

    def _check_dir(self, st: os.stat_result, where: str) -> None:
        if stat.S_ISDIR(st.st_mode) and st.st_dev != self.dev:
            raise TargetEscapeError(
                f"{where} is on another filesystem than the image root (a mount point)",
                hint="goldsmith does not act through mounts inside the image "
                "(/proc, /sys, /dev, /run are mounted only while commands run)",
            )

    @contextlib.contextmanager
    def resolve(
        self, path: str, *, follow: bool = True, create_mode: int | None = None
    ) -> Iterator[Resolved]:
        """Walk ``path`` inside the root and yield where it ended (handles closed after).

        ``follow``: resolve a symlink at the final component too (confined).
        ``create_mode``: create missing intermediate directories with this mode.
        A missing final entry is not an error (``Resolved.fd`` is None); a missing or
        non-directory intermediate component raises FileNotFoundError/NotADirectoryError.
        """
        components = in_image_components(path)
        stack = _Stack(self._open_root())
        result: Resolved | None = None
        try:
            todo = deque(components)
            links = 0
            while todo and result is None:
                name = todo.popleft()
                if name == "..":
                    stack.pop()
                    continue
                last = not todo
                fd = self._open_component(stack, name, last=last, create_mode=create_mode)
                if fd is None:  # only the final entry may be missing
                    result = Resolved(stack.top, stack.path, name, None, None)
                    break
                try:
                    st = os.fstat(fd)
                    if stat.S_ISLNK(st.st_mode) and (follow or not last):
                        links += 1
                        if links > MAX_SYMLINKS:
                            raise TargetError(
                                f"{path}: too many levels of symbolic links "
                                f"(more than {MAX_SYMLINKS}; a loop in the image?)"
                            )
                        target = os.readlink("", dir_fd=fd)
                        if target.startswith("/"):
                            stack.reset()
                        todo.extendleft(reversed(_link_components(target)))
                        continue
                    where = stack.path.rstrip("/") + "/" + name
                    self._check_dir(st, where)
                    if last:
                        result = Resolved(stack.top, stack.path, name, fd, st)
                    elif stat.S_ISDIR(st.st_mode):
                        stack.push(name, fd)
                    else:
                        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), where)
                    fd = -1  # owned by the stack or the result now
                finally:
                    if fd >= 0:
                        os.close(fd)
            if result is None:
                # The path ended on a directory of the stack: "/" itself or a trailing "..".
                top = os.dup(stack.top)
                result = Resolved(stack.top, stack.path, None, top, os.fstat(top))
            yield result
        finally:
            if result is not None and result.fd is not None:
                os.close(result.fd)
            stack.close()

    @staticmethod
    def _open_component(
        stack: _Stack, name: str, *, last: bool, create_mode: int | None
    ) -> int | None:
        try:
            return os.open(name, _O_PATH_NOFOLLOW, dir_fd=stack.top)
        except FileNotFoundError:
            if last:
                return None
            if create_mode is None:
                raise
        created = True
        try:
            os.mkdir(name, create_mode, dir_fd=stack.top)
        except FileExistsError:
            created = False
        fd = os.open(name, _O_PATH_NOFOLLOW, dir_fd=stack.top)
        if created:  # exact mode, whatever the umask
            os.chmod(fd_path(fd), create_mode)
        return fd


def oserror(path: str, exc: OSError, action: str) -> TargetError:
    """Turn an OSError met while acting on an in-image path into a TargetError."""
    reason = exc.strerror or str(exc)
    return TargetError(f"{action} {path}: {reason}")


def to_stat_result(st: os.stat_result) -> StatResult:
    return StatResult(
        type=file_type(st.st_mode),
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
        size=st.st_size,
        mtime=int(st.st_mtime),
    )


def file_type(mode: int) -> FileType:
    kind = FileType.from_mode(mode)
    if kind is None:
        raise TargetError(f"unknown file type {stat.S_IFMT(mode):o}")
    return kind


def read_regular(dir_fd: int, name: str, expected: os.stat_result, path: str) -> bytes:
    """Read the regular file ``name`` in ``dir_fd``; refuses anything else (a device node in an
    image is a handle on the host's device)."""
    if not stat.S_ISREG(expected.st_mode):
        raise TargetError(f"read {path}: not a regular file ({file_type(expected.st_mode)})")
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (expected.st_dev, expected.st_ino):
            raise TargetError(f"read {path}: the file changed while it was being opened")
        chunks: list[bytes] = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def atomic_write(
    dir_fd: int,
    name: str,
    dir_path: str,
    data: bytes,
    *,
    mode: int,
    uid: int,
    gid: int,
    validate: Callable[[str], None] | None = None,
) -> None:
    """Write ``name`` in the directory ``dir_fd`` atomically.

    A temp file is created next to it (O_EXCL | O_NOFOLLOW), written, chowned, chmodded and
    fsynced; ``validate`` (if given) is called with the temp file's path as seen from the
    target (``dir_path``/temp name) and raises to refuse; then the temp file is renamed over
    ``name`` and the directory fsynced. Whatever ``name`` was (a file, a symlink) is replaced;
    a symlink is never followed. The temp file is removed on every failure, including
    KeyboardInterrupt.
    """
    tmp = f".{name[:200]}.{secrets.token_hex(6)}.goldsmith-tmp"
    fd = os.open(
        tmp,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
        dir_fd=dir_fd,
    )
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fchown(fd, uid, gid)  # before fchmod: chown clears setuid/setgid bits
            os.fchmod(fd, mode & 0o7777)
            os.fsync(fd)
        finally:
            os.close(fd)
        if validate is not None:
            validate(dir_path.rstrip("/") + "/" + tmp)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    fsync_dir(dir_fd)


def fsync_dir(dir_fd: int) -> None:
    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rmtree_at(parent_fd: int, name: str, dev: int, path: str) -> None:
    """Remove the directory ``name`` in ``parent_fd`` and everything in it, never following a
    symlink and never descending into another filesystem (a mount inside the tree)."""
    fd = os.open(
        name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd
    )
    try:
        if os.fstat(fd).st_dev != dev:
            raise TargetEscapeError(
                f"rmtree {path}: is a mount point; refusing to delete another filesystem"
            )
        with os.scandir(fd) as it:
            entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
        for entry, is_dir in entries:
            if is_dir:
                rmtree_at(fd, entry, dev, path.rstrip("/") + "/" + entry)
            else:
                os.unlink(entry, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent_fd)
