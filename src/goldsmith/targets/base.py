"""The one interface every rule, scan and build step acts through.

Paths given to a Target are always absolute paths *inside* the target ("/etc/ssh/sshd_config"),
never host paths. A RootfsTarget resolves them inside its root and refuses anything that would
leave it; a HostTarget acts on "/".
"""

from __future__ import annotations

import contextlib
import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from goldsmith.model.records import FileType

_T = TypeVar("_T")

#: methods that change the target (or may: a command can change anything); a call to any of
#: them, in any subclass, empties the target's memo before and after it runs
MUTATING = (
    "write_bytes",
    "write_text",
    "chmod",
    "chown",
    "mkdir",
    "unlink",
    "rmtree",
    "symlink",
    "run",
)


#: methods that only read; inside a :meth:`Target.cached` block each answer is remembered per
#: implementation and arguments (an exception is not: it is raised again each time)
READING = ("read_bytes", "exists", "lstat", "stat", "readlink", "listdir", "glob")


def _memoised(fn: Callable[..., Any]) -> Callable[..., Any]:
    if getattr(fn, "_goldsmith_memoised", False):
        return fn

    @functools.wraps(fn)
    def wrapper(self: Target, *args: Any, **kwargs: Any) -> Any:
        owner = self.memo_owner()
        memo = owner._memo
        if memo is None or kwargs:
            return fn(self, *args, **kwargs)
        key = (fn, *args)
        try:
            found = memo[key]
        except KeyError:
            generation = owner._memo_generation
            found = fn(self, *args)
            if owner._memo is memo and owner._memo_generation == generation:
                memo[key] = found
        except TypeError:  # unhashable arguments: not remembered
            return fn(self, *args)
        return list(found) if isinstance(found, list) else found  # lists are the caller's

    wrapper._goldsmith_memoised = True  # type: ignore[attr-defined]
    return wrapper


def _invalidating(fn: Callable[..., Any]) -> Callable[..., Any]:
    if getattr(fn, "_goldsmith_invalidates", False):
        return fn

    @functools.wraps(fn)
    def wrapper(self: Target, *args: Any, **kwargs: Any) -> Any:
        self.invalidate()
        try:
            return fn(self, *args, **kwargs)
        finally:
            self.invalidate()

    wrapper._goldsmith_invalidates = True  # type: ignore[attr-defined]
    return wrapper


def _invalidating_session(fn: Callable[..., Any]) -> Callable[..., Any]:
    """session() mounts and unmounts pseudo file systems inside the root: invalidate around."""
    if getattr(fn, "_goldsmith_invalidates", False):
        return fn

    @functools.wraps(fn)
    @contextlib.contextmanager
    def wrapper(self: Target, *args: Any, **kwargs: Any) -> Iterator[Any]:
        self.invalidate()
        try:
            with fn(self, *args, **kwargs) as value:
                self.invalidate()
                yield value
        finally:
            self.invalidate()

    wrapper._goldsmith_invalidates = True  # type: ignore[attr-defined]
    return wrapper


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

    #: results of expensive reads (a walk of the tree, the parsed dpkg status) while a
    #: :meth:`cached` block is open; None (nothing is memoised) otherwise
    _memo: dict[Hashable, Any] | None = None
    #: bumped by every invalidation (a value computed across one is not remembered)
    _memo_generation: int = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in MUTATING:
            fn = cls.__dict__.get(name)
            if fn is not None and callable(fn):
                setattr(cls, name, _invalidating(fn))
        for name in READING:
            fn = cls.__dict__.get(name)
            if fn is not None and callable(fn):
                setattr(cls, name, _memoised(fn))
        fn = cls.__dict__.get("session")
        if fn is not None and callable(fn):
            cls.session = _invalidating_session(fn)  # type: ignore[method-assign]

    # memo ----------------------------------------------------------------------------------
    def memo_owner(self) -> Target:
        """The target whose memo this one shares (a wrapper shares its inner target's)."""
        return self

    @contextlib.contextmanager
    def cached(self) -> Iterator[None]:
        """Memoise reads until the block ends: every answer of the reading methods
        (:data:`READING`, in every subclass) and expensive derived reads (:meth:`memo`).

        Every write, command or session through the target (any subclass: the mutating
        methods are wrapped when the class is defined) empties the memo, so a check after an
        apply never sees a stale answer. Changes made behind the target's back (another
        process, a host path written directly) are not seen inside the block: keep it to one
        scan or one apply run. Nested blocks share the outermost one's memo.
        """
        owner = self.memo_owner()
        if owner._memo is not None:
            yield
            return
        owner._memo = {}
        try:
            yield
        finally:
            owner._memo = None

    def memo(self, key: Hashable, compute: Callable[[], _T]) -> _T:
        """``compute()``, remembered under ``key`` inside a :meth:`cached` block.

        The value is shared by every caller: do not change it (copy it first).
        """
        memo = self.memo_owner()._memo
        if memo is None:
            return compute()
        if key in memo:
            value: _T = memo[key]
            return value
        owner = self.memo_owner()
        generation = owner._memo_generation
        value = compute()
        if owner._memo is memo and owner._memo_generation == generation:
            memo[key] = value
        return value

    def invalidate(self) -> None:
        """Forget every memoised read (after a change the target cannot see itself)."""
        owner = self.memo_owner()
        owner._memo_generation += 1
        if owner._memo:
            owner._memo.clear()

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
