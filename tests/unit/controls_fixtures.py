"""Fixtures for the control tests: fake roots on tmp_path and a tree hash.

Tests use the real confined ``RootfsTarget`` when it is importable; until then a small
unconfined ``FakeRootTarget`` with the same semantics for plain files (no commands).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import stat as st
from collections.abc import Mapping, Sequence
from pathlib import Path

from goldsmith.errors import BuildError, ValidationFailedError
from goldsmith.model.records import FileType
from goldsmith.targets.base import RunResult, StatResult, Target

_TYPES = {
    st.S_IFREG: FileType.FILE,
    st.S_IFDIR: FileType.DIR,
    st.S_IFLNK: FileType.SYMLINK,
    st.S_IFCHR: FileType.CHARDEV,
    st.S_IFBLK: FileType.BLOCKDEV,
    st.S_IFIFO: FileType.FIFO,
    st.S_IFSOCK: FileType.SOCKET,
}


class FakeRootTarget(Target):
    """Unconfined stand-in: resolves in-image absolute links against the root."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self.commands: list[tuple[str, ...]] = []

    @property
    def root(self) -> Path:
        return self._root

    def _host(self, path: str, *, follow: bool = True) -> Path:
        assert path.startswith("/"), path
        cur = self._root
        parts = [p for p in path.split("/") if p and p != "."]
        for i, part in enumerate(parts):
            nxt = cur / part
            last = i == len(parts) - 1
            hops = 0
            while nxt.is_symlink() and (follow or not last):
                hops += 1
                assert hops < 40
                link = os.readlink(nxt)
                nxt = (
                    self._host(link)
                    if link.startswith("/")
                    else self._host("/" + str((cur / link).relative_to(self._root)))
                )
            cur = nxt
        return cur

    def read_bytes(self, path: str) -> bytes:
        return self._host(path).read_bytes()

    def exists(self, path: str) -> bool:
        return self._host(path).exists()

    def _stat(self, p: Path, follow: bool) -> StatResult | None:
        try:
            s = p.stat() if follow else p.lstat()
        except FileNotFoundError:
            return None
        return StatResult(
            _TYPES[st.S_IFMT(s.st_mode)],
            s.st_mode & 0o7777,
            s.st_uid,
            s.st_gid,
            s.st_size,
            int(s.st_mtime),
        )

    def lstat(self, path: str) -> StatResult | None:
        return self._stat(self._host(path, follow=False), False)

    def stat(self, path: str) -> StatResult | None:
        return self._stat(self._host(path), True)

    def readlink(self, path: str) -> str:
        return os.readlink(self._host(path, follow=False))

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(self._host(path)))

    def glob(self, pattern: str) -> list[str]:
        parts = [p for p in pattern.split("/") if p]
        found = ["/"]
        for part in parts:
            nxt: list[str] = []
            for base in found:
                h = self._host(base)
                if not h.is_dir():
                    continue
                for name in sorted(os.listdir(h)):
                    if fnmatch.fnmatchcase(name, part) and (
                        not name.startswith(".") or part.startswith(".")
                    ):
                        nxt.append(base.rstrip("/") + "/" + name)
            found = nxt
        return sorted(found)

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
        if validate:
            raise ValidationFailedError("FakeRootTarget cannot run validators")
        p = self._host(path)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_bytes(data)
        os.chmod(tmp, mode)
        os.chown(tmp, uid, gid)
        os.replace(tmp, p)

    def chmod(self, path: str, mode: int) -> None:
        os.chmod(self._host(path), mode)

    def chown(self, path: str, uid: int, gid: int) -> None:
        os.chown(self._host(path), uid, gid)

    def mkdir(self, path: str, mode: int = 0o755, *, parents: bool = False) -> None:
        self._host(path).mkdir(mode, parents=parents)

    def unlink(self, path: str) -> None:
        self._host(path, follow=False).unlink()

    def rmtree(self, path: str) -> None:
        raise NotImplementedError

    def symlink(self, target: str, path: str) -> None:
        self._host(path, follow=False).symlink_to(target)

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> RunResult:
        self.commands.append(tuple(argv))
        if check:
            raise BuildError("FakeRootTarget cannot run commands", argv=argv)
        return RunResult(tuple(argv), 127, "", "cannot run commands")


def make_target(root: Path) -> Target:
    try:
        from goldsmith.targets.rootfs import RootfsTarget
    except ImportError:
        return FakeRootTarget(root)
    return RootfsTarget(root)


def write(root: Path, path: str, text: str, mode: int = 0o644) -> Path:
    p = root / path.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    p.chmod(mode)
    return p


def tree_hash(root: Path) -> str:
    """sha256 over every path, type, mode, owner, content and link target under root."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            s = p.lstat()
            h.update(f"{p.relative_to(root)}\0{s.st_mode:o}\0{s.st_uid}\0{s.st_gid}\0".encode())
            if st.S_ISLNK(s.st_mode):
                h.update(os.readlink(p).encode())
            elif st.S_ISREG(s.st_mode):
                h.update(p.read_bytes())
    return h.hexdigest()
