"""File and package inventories of a rootfs: what the manifest diffs base against final.

The walk never follows a symlink (``os.scandir`` + ``lstat``), never leaves the root's
filesystem boundary through a symlink, and records every entry with its type, permission bits,
owner, size, content hash (regular files), link target, file capabilities and device numbers.
Hashing runs in a thread pool: ``hashlib`` releases the GIL, so threads overlap the reads.
"""

# ruff: noqa: PTH115
# (os.readlink on byte paths: names need not be UTF-8)

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from goldsmith.build.packages import read_installed
from goldsmith.errors import BuildError
from goldsmith.model.records import FileEntry, FileType, Inventory, PackageEntry

SCHEMA = "goldsmith.inventory/v1"
_CAP_XATTR = "security.capability"


def take_inventory(root: Path, *, workers: int | None = None) -> Inventory:
    """Every entry under ``root`` (as in-image paths "/etc", ...; the root directory itself
    is not an entry, as in the exported tar) and every installed package.

    ``workers``: hashing threads; None picks one per CPU (at least 2), 1 hashes serially.
    Packages come from the dpkg status file; a tree without one has an empty package list.
    """
    root = Path(root)
    st = os.lstat(root)
    if not stat.S_ISDIR(st.st_mode):
        raise BuildError(f"cannot take an inventory of {root}: not a directory")
    entries: list[tuple[bytes, FileEntry]] = []
    to_hash: list[tuple[int, bytes]] = []
    root_b = os.fsencode(root)
    _walk(root_b, b"", entries, to_hash)
    if to_hash:
        n = workers if workers is not None else max(2, os.cpu_count() or 1)
        if n <= 1:
            digests = [_sha256(root_b + rel) for _, rel in to_hash]
        else:
            with ThreadPoolExecutor(max_workers=n) as pool:
                digests = list(pool.map(lambda item: _sha256(root_b + item[1]), to_hash))
        for (index, _), digest in zip(to_hash, digests, strict=True):
            path_b, entry = entries[index]
            entries[index] = (path_b, replace(entry, sha256=digest))
    entries.sort(key=lambda pe: pe[0])
    packages: list[PackageEntry] = []
    status = root / "var/lib/dpkg/status"
    if status.is_file() and not status.is_symlink():
        packages = read_installed(root)
    return Inventory(files=tuple(e for _, e in entries), packages=tuple(packages))


def _walk(
    root_b: bytes,
    rel: bytes,
    entries: list[tuple[bytes, FileEntry]],
    to_hash: list[tuple[int, bytes]],
) -> None:
    """Depth-first over ``root_b + rel``; appends (in-image path bytes, entry)."""
    try:
        it = os.scandir(root_b + rel if rel else root_b)
    except OSError as exc:
        raise BuildError(f"cannot list {os.fsdecode(root_b + rel)}: {exc.strerror}") from exc
    with it:
        children = sorted(it, key=lambda d: d.name)
    for child in children:
        child_rel = rel + b"/" + child.name
        try:
            st = child.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # vanished during the walk
        entry = _entry(child_rel, root_b + child_rel, st)
        if entry.type is FileType.FILE:
            to_hash.append((len(entries), child_rel))
        entries.append((child_rel, entry))
        if entry.type is FileType.DIR:
            _walk(root_b, child_rel, entries, to_hash)


def _entry(path_b: bytes, host_b: bytes, st: os.stat_result) -> FileEntry:
    ftype = _file_type(st.st_mode)
    target: str | None = None
    device: str | None = None
    if ftype is FileType.SYMLINK:
        target = os.fsdecode(os.readlink(host_b))
    elif ftype in (FileType.CHARDEV, FileType.BLOCKDEV):
        device = f"{os.major(st.st_rdev)},{os.minor(st.st_rdev)}"
    caps = _caps(host_b) if ftype is FileType.FILE else None
    return FileEntry(
        path=os.fsdecode(path_b),
        type=ftype,
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
        size=st.st_size if ftype is FileType.FILE else 0,
        target=target,
        caps=caps,
        device=device,
    )


def _file_type(mode: int) -> FileType:
    ftype = FileType.from_mode(mode)
    if ftype is None:
        raise BuildError(f"unknown file type {stat.S_IFMT(mode):o}")
    return ftype


def _caps(host_b: bytes) -> str | None:
    try:
        return os.getxattr(host_b, _CAP_XATTR, follow_symlinks=False).hex()
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            return None
        raise


def _sha256(host_b: bytes) -> str:
    fd = os.open(host_b, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


# --- JSON ------------------------------------------------------------------------------------


def inventory_to_json(inv: Inventory) -> dict[str, Any]:
    files = [_file_json(f) for f in inv.files]
    return {
        "schema": SCHEMA,
        "counts": {
            "entries": len(inv.files),
            "files": sum(1 for f in inv.files if f.type is FileType.FILE),
            "packages": len(inv.packages),
        },
        "total_size": sum(f.size for f in inv.files if f.type is FileType.FILE),
        "files": files,
        "packages": [
            {"name": p.name, "version": p.version, "architecture": p.architecture}
            for p in inv.packages
        ],
    }


def _file_json(f: FileEntry) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "path": f.path,
        "type": str(f.type),
        "mode": f"{f.mode:04o}",
        "uid": f.uid,
        "gid": f.gid,
        "size": f.size,
    }
    for key in ("sha256", "target", "caps", "device"):
        value = getattr(f, key)
        if value is not None:
            doc[key] = value
    return doc


def inventory_from_json(doc: Any) -> Inventory:
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise BuildError(f"not a goldsmith inventory (schema {found!r}, expected {SCHEMA!r})")
    try:
        files = tuple(
            FileEntry(
                path=str(f["path"]),
                type=FileType(f["type"]),
                mode=int(f["mode"], 8),
                uid=int(f["uid"]),
                gid=int(f["gid"]),
                size=int(f["size"]),
                sha256=f.get("sha256"),
                target=f.get("target"),
                caps=f.get("caps"),
                device=f.get("device"),
            )
            for f in doc["files"]
        )
        packages = tuple(
            PackageEntry(
                name=str(p["name"]), version=str(p["version"]), architecture=str(p["architecture"])
            )
            for p in doc["packages"]
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BuildError(f"malformed inventory: {exc!r}") from exc
    return Inventory(files=files, packages=packages)


def dumps_inventory(inv: Inventory) -> str:
    """The one canonical text form: sorted keys, two-space indent, trailing newline."""
    return json.dumps(inventory_to_json(inv), indent=2, sort_keys=True, ensure_ascii=True) + "\n"


def write_inventory(inv: Inventory, path: Path) -> None:
    """Write the inventory as JSON atomically (temp file in the same directory, fsync, rename)."""
    data = dumps_inventory(inv).encode("ascii")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.chmod(0o644)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def read_inventory(path: Path) -> Inventory:
    try:
        text = Path(path).read_text(encoding="utf-8")
        doc = json.loads(text)
    except OSError as exc:
        raise BuildError(f"cannot read inventory {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise BuildError(f"inventory {path} is not valid JSON: {exc}") from exc
    return inventory_from_json(doc)
