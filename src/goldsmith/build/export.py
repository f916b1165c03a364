"""Export a finished rootfs as a deterministic ``rootfs.tar.zst``, and digest a tree.

Two identities, on purpose:

* ``export_rootfs_tar`` returns the sha256 of the compressed archive. It is bit-identical
  run to run for the same tree and the same SOURCE_DATE_EPOCH (GNU tar with sorted names,
  numeric owners, mtimes clamped, no atime/ctime or PID in pax headers; zstd with a fixed
  level and window, whose output does not depend on the thread count). It also covers
  mtimes, so two builds only agree when their package timestamps agree, which is what
  "bit for bit" means for an artifact.
* ``rootfs_digest`` digests the tree's *meaning*: paths, types, modes, owners, content
  hashes, link targets, device numbers, xattrs (file capabilities included) and the hard
  link structure, but not timestamps. ``tar_digest`` computes the same value from an
  exported archive, so "the tar holds exactly this tree" and "the disk image holds exactly
  this tree" are checks of equal digests (see ``tree_entries`` for the comparison itself).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from goldsmith.errors import BuildError, ToolMissingError
from goldsmith.model.records import FileType

log = logging.getLogger(__name__)

#: zstd settings are part of the artifact's identity: changing them changes every digest.
ZSTD_LEVEL = 9
ZSTD_LONG = 27  # 128 MiB window: the default decoder limit, so plain `zstd -d` still works
DIGEST_VERSION = "goldsmith-tree-digest/v1"
_CHUNK = 1 << 20


def tar_argv(rootfs: Path, *, source_date_epoch: int) -> list[str]:
    """GNU tar options that make the archive a function of the tree alone."""
    return [
        "tar",
        "--create",
        "--file=-",
        "--directory",
        str(rootfs),
        "--format=posix",
        "--sort=name",
        "--numeric-owner",
        f"--mtime=@{source_date_epoch}",
        "--clamp-mtime",
        # the default pax header name carries the PID; atime/ctime differ on every read
        "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
        "--xattrs",
        "--xattrs-include=*",
        "--acls",
        # a pseudo-filesystem left mounted in the rootfs must not end up in the image
        "--one-file-system",
        ".",
    ]


def zstd_argv(out: Path) -> list[str]:
    return [
        "zstd",
        "-q",
        f"-{ZSTD_LEVEL}",
        f"--long={ZSTD_LONG}",
        "-T0",
        "--no-progress",
        "-f",
        "-o",
        str(out),
    ]


def _require(tool: str, package: str) -> None:
    if shutil.which(tool) is None:
        raise ToolMissingError(tool, package)


def export_rootfs_tar(rootfs: Path, dest: Path, *, source_date_epoch: int) -> str:
    """Write ``dest`` (a .tar.zst) from ``rootfs`` atomically; return its sha256 (hex)."""
    _require("tar", "tar")
    _require("zstd", "zstd")
    if not rootfs.is_dir():
        raise BuildError(f"rootfs {rootfs} is not a directory")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    env = {**os.environ, "LC_ALL": "C", "TZ": "UTC"}
    targv = tar_argv(rootfs, source_date_epoch=source_date_epoch)
    zargv = zstd_argv(tmp)
    try:
        with tempfile.TemporaryFile() as tar_err, tempfile.TemporaryFile() as zstd_err:
            tar = subprocess.Popen(targv, stdout=subprocess.PIPE, stderr=tar_err, env=env)
            try:
                zstd = subprocess.run(zargv, stdin=tar.stdout, stderr=zstd_err, env=env)
            finally:
                assert tar.stdout is not None
                tar.stdout.close()
                tar_rc = tar.wait()
            if tar_rc != 0:
                raise BuildError(
                    "tar failed while exporting the rootfs", argv=targv, stderr=_read(tar_err)
                )
            if zstd.returncode != 0:
                raise BuildError(
                    "zstd failed while exporting the rootfs", argv=zargv, stderr=_read(zstd_err)
                )
            warnings = _read(tar_err).strip()
            if warnings:
                log.warning("tar: %s", warnings)
        digest = sha256_file(tmp)
        tmp.chmod(0o644)
        tmp.replace(dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    log.info("exported %s (sha256 %s)", dest, digest)
    return digest


def _read(f: IO[bytes]) -> str:
    f.seek(0)
    return f.read().decode("utf-8", errors="replace")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


# --- tree digest ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TreeEntry:
    """One object of a tree, as the digest sees it (no timestamps)."""

    path: str  # absolute in-image path; the root is "/"
    type: FileType
    mode: int  # st_mode & 0o7777
    uid: int
    gid: int
    sha256: str | None = None  # regular files
    target: str | None = None  # symlinks
    device: str | None = None  # "major,minor" for device nodes
    xattrs: tuple[tuple[str, str], ...] = ()  # (name, hex value), sorted by name
    link: str | None = None  # hard link: the first path (in walk order) of the same inode

    def line(self) -> str:
        if self.link is not None:
            # the inode's metadata and content are on the first path's line; GNU tar does
            # not repeat them reliably on a hard link member either
            return json.dumps([self.path, "hardlink", self.link], ensure_ascii=True)
        return json.dumps(
            [
                self.path,
                str(self.type),
                f"{self.mode:04o}",
                self.uid,
                self.gid,
                self.sha256,
                self.target,
                self.device,
                [list(x) for x in self.xattrs],
                self.link,
            ],
            ensure_ascii=True,
            separators=(",", ":"),
        )


def _file_type(mode: int) -> FileType:
    return FileType.from_mode(mode) or FileType.SOCKET


def _xattrs(path: bytes) -> tuple[tuple[str, str], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    out: list[tuple[str, str]] = []
    for name in sorted(names):
        with contextlib.suppress(OSError):
            out.append((name, os.getxattr(path, name, follow_symlinks=False).hex()))
    return tuple(out)


def _sha256_fd(path: bytes) -> str:
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        while chunk := os.read(fd, _CHUNK):
            h.update(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


def tree_entries(root: Path, *, skip: Callable[[str], bool] | None = None) -> Iterator[TreeEntry]:
    """Every object under ``root`` in tar's ``--sort=name`` order, never following links.

    ``skip(path)`` drops an in-image path and, for a directory, everything below it.
    Sockets are left out, as GNU tar leaves them out of the archive.
    """
    base = os.fsencode(root)
    seen: dict[tuple[int, int], str] = {}

    def visit(rel: bytes) -> Iterator[TreeEntry]:
        host = base + rel if rel != b"/" else base
        st = os.lstat(host)
        ftype = _file_type(st.st_mode)
        path = os.fsdecode(rel)
        if ftype is FileType.SOCKET:
            return
        link: str | None = None
        if ftype is not FileType.DIR and st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            link = seen.get(key)
            if link is None:
                seen[key] = path
        yield TreeEntry(
            path=path,
            type=ftype,
            mode=stat.S_IMODE(st.st_mode),
            uid=st.st_uid,
            gid=st.st_gid,
            sha256=_sha256_fd(host) if ftype is FileType.FILE else None,
            target=os.fsdecode(os.readlink(host))  # noqa: PTH115 (bytes paths)
            if ftype is FileType.SYMLINK
            else None,
            device=(
                f"{os.major(st.st_rdev)},{os.minor(st.st_rdev)}"
                if ftype in (FileType.CHARDEV, FileType.BLOCKDEV)
                else None
            ),
            xattrs=_xattrs(host),
            link=link,
        )
        if ftype is FileType.DIR:
            prefix = rel if rel != b"/" else b""
            for name in sorted(os.listdir(host)):  # noqa: PTH208 (bytes paths)
                child = prefix + b"/" + name
                if skip is not None and skip(os.fsdecode(child)):
                    continue
                yield from visit(child)

    yield from visit(b"/")


def digest_entries(entries: Iterable[TreeEntry]) -> str:
    h = hashlib.sha256(DIGEST_VERSION.encode() + b"\n")
    for e in entries:
        h.update(e.line().encode("ascii") + b"\n")
    return h.hexdigest()


def rootfs_digest(rootfs: Path, *, skip: Callable[[str], bool] | None = None) -> str:
    """Digest of the tree's content and metadata, without timestamps (see module doc)."""
    return digest_entries(tree_entries(rootfs, skip=skip))


_TAR_TYPES = {
    tarfile.REGTYPE: FileType.FILE,
    tarfile.AREGTYPE: FileType.FILE,
    tarfile.CONTTYPE: FileType.FILE,
    tarfile.DIRTYPE: FileType.DIR,
    tarfile.SYMTYPE: FileType.SYMLINK,
    tarfile.CHRTYPE: FileType.CHARDEV,
    tarfile.BLKTYPE: FileType.BLOCKDEV,
    tarfile.FIFOTYPE: FileType.FIFO,
}
_XATTR_PREFIX = "SCHILY.xattr."


def _tar_path(name: str) -> str:
    name = name.rstrip("/")
    if name in ("", "."):
        return "/"
    return "/" + name.removeprefix("./")


def tar_entries(tar_zst: Path) -> Iterator[TreeEntry]:
    """The entries of an exported archive, in archive order (same as ``tree_entries``)."""
    _require("zstd", "zstd")
    argv = ["zstd", "-dc", f"--long={ZSTD_LONG}", "--no-progress", str(tar_zst)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tf:
            for m in tf:
                path = _tar_path(m.name)
                xattrs = tuple(
                    sorted(
                        (k.removeprefix(_XATTR_PREFIX), _pax_bytes(v).hex())
                        for k, v in m.pax_headers.items()
                        if k.startswith(_XATTR_PREFIX)
                    )
                )
                mode, uid, gid = m.mode & 0o7777, m.uid, m.gid
                if m.type == tarfile.LNKTYPE:
                    first = _tar_path(m.linkname)
                    yield TreeEntry(path, FileType.FILE, mode, uid, gid, link=first)
                    continue
                ftype = _TAR_TYPES.get(m.type)
                if ftype is None:
                    raise BuildError(f"{tar_zst}: unexpected member type {m.type!r} for {path}")
                sha: str | None = None
                if ftype is FileType.FILE:
                    f = tf.extractfile(m)
                    assert f is not None
                    h = hashlib.sha256()
                    while chunk := f.read(_CHUNK):
                        h.update(chunk)
                    sha = h.hexdigest()
                yield TreeEntry(
                    path,
                    ftype,
                    mode,
                    uid,
                    gid,
                    sha256=sha,
                    target=m.linkname if ftype is FileType.SYMLINK else None,
                    device=(
                        f"{m.devmajor},{m.devminor}"
                        if ftype in (FileType.CHARDEV, FileType.BLOCKDEV)
                        else None
                    ),
                    xattrs=xattrs,
                )
    finally:
        proc.stdout.close()
        rc = proc.wait()
        err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
    if rc != 0:
        raise BuildError(f"cannot read {tar_zst}", argv=argv, stderr=err)


def _pax_bytes(value: str) -> bytes:
    # tarfile decodes pax values as UTF-8 with surrogateescape; binary xattrs come back intact
    return value.encode("utf-8", errors="surrogateescape")


def tar_digest(tar_zst: Path) -> str:
    """``rootfs_digest`` of the tree an archive holds, computed from the archive alone."""
    return digest_entries(tar_entries(tar_zst))
