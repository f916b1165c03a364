"""Steps: the units a plan is made of. Each carries the Change records it stands for."""

from __future__ import annotations

import posixpath
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from goldsmith.model.records import Change
from goldsmith.targets.base import Target


@dataclass(frozen=True)
class Step(ABC):
    changes: tuple[Change, ...]

    @abstractmethod
    def commit(self, t: Target) -> None: ...


def ensure_parent(t: Target, path: str) -> None:
    parent = posixpath.dirname(path)
    if parent and not t.exists(parent):
        t.mkdir(parent, 0o755, parents=True)


@dataclass(frozen=True)
class WriteFile(Step):
    path: str
    content: str
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    validate: tuple[str, ...] | None = None

    def commit(self, t: Target) -> None:
        ensure_parent(t, self.path)
        t.write_text(
            self.path,
            self.content,
            mode=self.mode,
            uid=self.uid,
            gid=self.gid,
            validate=self.validate,
        )


@dataclass(frozen=True)
class Chmod(Step):
    path: str
    mode: int

    def commit(self, t: Target) -> None:
        t.chmod(self.path, self.mode)


@dataclass(frozen=True)
class Chown(Step):
    path: str
    uid: int
    gid: int

    def commit(self, t: Target) -> None:
        t.chown(self.path, self.uid, self.gid)


@dataclass(frozen=True)
class MakeDir(Step):
    path: str
    mode: int
    uid: int = 0
    gid: int = 0

    def commit(self, t: Target) -> None:
        ensure_parent(t, self.path)
        t.mkdir(self.path, self.mode)
        t.chmod(self.path, self.mode)  # mkdir is subject to the umask
        t.chown(self.path, self.uid, self.gid)


@dataclass(frozen=True)
class Remove(Step):
    path: str

    def commit(self, t: Target) -> None:
        t.unlink(self.path)


@dataclass(frozen=True)
class Symlink(Step):
    target: str
    path: str
    replace: bool = False

    def commit(self, t: Target) -> None:
        ensure_parent(t, self.path)
        if self.replace and t.lstat(self.path) is not None:
            t.unlink(self.path)
        t.symlink(self.target, self.path)


@dataclass(frozen=True)
class RunCommand(Step):
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)

    def commit(self, t: Target) -> None:
        t.run(list(self.argv), env=dict(self.env) or None)


def argv_text(argv: Sequence[str]) -> str:
    return " ".join(argv)
