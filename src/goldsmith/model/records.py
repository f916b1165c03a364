"""Typed records that everything after a build is made from: changes, findings, inventories."""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from enum import StrEnum


class Status(StrEnum):
    PASS = "pass"  # noqa: S105 (a status, not a password)
    FAIL = "fail"
    ERROR = "error"
    NOT_APPLICABLE = "not_applicable"
    EXCEPTED = "excepted"


class Source(StrEnum):
    GOLDSMITH = "goldsmith"
    LYNIS = "lynis"
    OPENSCAP = "openscap"


class FileType(StrEnum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    CHARDEV = "chardev"
    BLOCKDEV = "blockdev"
    FIFO = "fifo"
    SOCKET = "socket"

    @classmethod
    def from_mode(cls, mode: int) -> FileType | None:
        """The type of an ``st_mode``; None for a format this enum does not know."""
        return _FORMATS.get(stat.S_IFMT(mode))


_FORMATS: dict[int, FileType] = {
    stat.S_IFREG: FileType.FILE,
    stat.S_IFDIR: FileType.DIR,
    stat.S_IFLNK: FileType.SYMLINK,
    stat.S_IFCHR: FileType.CHARDEV,
    stat.S_IFBLK: FileType.BLOCKDEV,
    stat.S_IFIFO: FileType.FIFO,
    stat.S_IFSOCK: FileType.SOCKET,
}


@dataclass(frozen=True)
class Change:
    """One change goldsmith made (or would make) to a target."""

    control: str  # control id, or a stage name such as "minimise" or "bootstrap"
    object: str  # a path, a package name, a unit name
    attribute: str  # "content", "mode", "owner", "package", "enabled", ...
    before: str | None
    after: str | None


@dataclass(frozen=True)
class Evidence:
    expected: str
    observed: str
    how: str  # how it was observed: the file read, the command run


@dataclass(frozen=True)
class Finding:
    control: str
    status: Status
    evidence: Evidence
    source: Source = Source.GOLDSMITH
    references: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileEntry:
    path: str  # absolute, inside the image
    type: FileType
    mode: int  # permission bits incl. setuid/setgid/sticky (st_mode & 0o7777)
    uid: int
    gid: int
    size: int
    sha256: str | None = None  # regular files only
    target: str | None = None  # symlinks only
    caps: str | None = None  # file capabilities (security.capability), hex
    device: str | None = None  # "major,minor" for device nodes


@dataclass(frozen=True)
class PackageEntry:
    name: str
    version: str
    architecture: str


@dataclass(frozen=True)
class PackageRemoval:
    """A package the minimise stage removed, with the version it had."""

    name: str
    version: str
    architecture: str
    reason: str  # "purge-list" or "autoremove"


@dataclass(frozen=True)
class Inventory:
    files: tuple[FileEntry, ...] = field(default_factory=tuple)
    packages: tuple[PackageEntry, ...] = field(default_factory=tuple)
