"""The one interface every rule, scan and build step acts through.

Paths given to a Target are always absolute paths *inside* the target ("/etc/ssh/sshd_config"),
never host paths. A RootfsTarget resolves them inside its root and refuses anything that would
leave it; a HostTarget acts on "/".
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from goldsmith.model.records import FileType


@dataclass(frozen=True)
class StatResult:
    type: FileType
    mode: int  # st_mode & 0o7777
    uid: int
    gid: int
    size: int
    mtime: int


@dataclass(frozen=True)
class RunResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Target(ABC):
    """A system goldsmith reads and changes. All paths are absolute in-target paths."""

    #: True when the target is a running system (live sysctl, loaded audit rules, sockets).
    live: bool = False

    @property
    @abstractmethod
    def root(self) -> Path:
        """Host path of the target's root directory ("/" for the host)."""

    @property
    def description(self) -> str:
        return f"{type(self).__name__}({self.root})"

    # reading -------------------------------------------------------------------------------
    @abstractmethod
    def read_bytes(self, path: str) -> bytes: ...

    def read_text(self, path: str) -> str:
        return self.read_bytes(path).decode("utf-8", errors="surrogateescape")

    @abstractmethod
    def exists(self, path: str) -> bool:
        """True if the path exists (following symlinks inside the target)."""

    @abstractmethod
    def lstat(self, path: str) -> StatResult | None:
        """Stat without following the last component; None if it does not exist."""

    @abstractmethod
    def stat(self, path: str) -> StatResult | None:
        """Stat following symlinks (confined); None if it does not exist."""

    @abstractmethod
    def readlink(self, path: str) -> str: ...

    @abstractmethod
    def listdir(self, path: str) -> list[str]:
        """Sorted entry names of a directory."""

    @abstractmethod
    def glob(self, pattern: str) -> list[str]:
        """Sorted absolute in-target paths matching a glob pattern (fnmatch per component)."""

    # writing -------------------------------------------------------------------------------
    @abstractmethod
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
        """Atomically write a file: temp file in the same directory, fsync, rename.

        ``validate`` is an argv run inside the target with ``%s`` replaced by the in-target
        path of the temp file; if it exits non-zero, nothing is written and
        ValidationFailedError is raised.

        A symlink at ``path`` is replaced by the new file, never written through.
        """

    def write_text(
        self,
        path: str,
        text: str,
        *,
        mode: int = 0o644,
        uid: int = 0,
        gid: int = 0,
        validate: Sequence[str] | None = None,
    ) -> None:
        self.write_bytes(
            path,
            text.encode("utf-8", errors="surrogateescape"),
            mode=mode,
            uid=uid,
            gid=gid,
            validate=validate,
        )

    @abstractmethod
    def chmod(self, path: str, mode: int) -> None:
        """Set permission bits, following a symlink (inside the target)."""

    @abstractmethod
    def chown(self, path: str, uid: int, gid: int) -> None:
        """Set the owner of the entry itself: a symlink is not followed (``chown -h``)."""

    @abstractmethod
    def mkdir(self, path: str, mode: int = 0o755, *, parents: bool = False) -> None:
        """Create a directory with exactly ``mode``; an existing directory is left as is."""

    @abstractmethod
    def unlink(self, path: str) -> None:
        """Remove a file or symlink (never follows the last component)."""

    @abstractmethod
    def rmtree(self, path: str) -> None:
        """Remove a directory tree without following any symlink in it (a file or symlink
        at ``path`` is simply removed)."""

    @abstractmethod
    def symlink(self, target: str, path: str) -> None:
        """Create a symlink at ``path`` pointing to ``target`` (stored verbatim)."""

    # commands ------------------------------------------------------------------------------
    @abstractmethod
    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> RunResult:
        """Run a command inside the target. With ``check``, a non-zero exit raises BuildError."""

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Keep whatever run() needs (pseudo-filesystems) set up across many calls."""
        yield
