"""The base cache: one bootstrapped base tarball per input digest, never half-written.

Layout under ``<cache_dir>/base/``::

    <digest>.tar     the mmdebstrap output, renamed into place only when complete
    <digest>.json    its record: the inputs it was built from, size, sha256, tool version
    <digest>.lock    flock'd while an entry is looked up or built, so two builds on one host
                     do not bootstrap the same base twice or read a tarball being replaced
    .tmp-*           in-progress outputs; removed on failure, interrupt, or the next build

An entry counts only when both files exist and the record matches the inputs and the tarball's
size. Anything else is a miss and is rebuilt.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from goldsmith.errors import BuildError

logger = logging.getLogger(__name__)

RECORD_SCHEMA = "goldsmith.base-cache/v1"
_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
#: in-progress outputs older than this are left over from a killed build and are removed
_STALE_SECONDS = 24 * 3600


@dataclass(frozen=True)
class CacheRecord:
    digest: str
    inputs: dict[str, Any]
    size: int
    sha256: str
    mmdebstrap_version: str
    seconds: float  # how long the bootstrap that made the entry took


def base_dir(cache_dir: Path) -> Path:
    return cache_dir / "base"


def entry_paths(cache_dir: Path, digest: str) -> tuple[Path, Path]:
    """(tarball, record) paths of the entry for ``digest``."""
    if not _DIGEST_RE.match(digest):
        raise ValueError(f"not a sha256 hex digest: {digest!r}")
    d = base_dir(cache_dir)
    return d / f"{digest}.tar", d / f"{digest}.json"


def lookup(cache_dir: Path, digest: str, inputs: dict[str, Any]) -> CacheRecord | None:
    """The record of a complete, matching entry, or None (a miss)."""
    tarball, record_path = entry_paths(cache_dir, digest)
    try:
        raw = json.loads(record_path.read_text(encoding="utf-8"))
        size = tarball.stat().st_size
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict) or raw.get("schema") != RECORD_SCHEMA:
        return None
    try:
        record = CacheRecord(
            digest=str(raw["digest"]),
            inputs=dict(raw["inputs"]),
            size=int(raw["size"]),
            sha256=str(raw["sha256"]),
            mmdebstrap_version=str(raw["mmdebstrap_version"]),
            seconds=float(raw["seconds"]),
        )
    except (KeyError, TypeError, ValueError):
        return None
    if record.digest != digest or record.inputs != _roundtrip(inputs) or record.size != size:
        logger.info("base cache entry %s does not match its record; rebuilding", digest[:12])
        return None
    return record


@contextlib.contextmanager
def locked(cache_dir: Path, digest: str) -> Iterator[None]:
    """Hold an exclusive lock on one cache entry (blocks while another build holds it)."""
    tarball, _ = entry_paths(cache_dir, digest)
    tarball.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(tarball.with_suffix(".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def temp_output(cache_dir: Path, digest: str, suffix: str = ".tar") -> Iterator[Path]:
    """A fresh path in the cache directory to build into; removed unless it was published."""
    d = base_dir(cache_dir)
    d.mkdir(parents=True, exist_ok=True)
    _remove_stale(d)
    fd, name = tempfile.mkstemp(prefix=f".tmp-{digest[:12]}-", suffix=suffix, dir=d)
    os.close(fd)
    path = Path(name)
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def publish(cache_dir: Path, built: Path, record: CacheRecord) -> Path:
    """Move a finished tarball into place and write its record; returns the tarball path."""
    tarball, record_path = entry_paths(cache_dir, record.digest)
    if built.parent != tarball.parent:
        raise BuildError(f"cache output {built} is not in {tarball.parent}")
    built.chmod(0o644)
    _fsync_file(built)
    # The old record goes first: a crash between the two renames leaves a miss, not a
    # record describing a different tarball.
    with contextlib.suppress(FileNotFoundError):
        record_path.unlink()
    built.rename(tarball)
    doc = {"schema": RECORD_SCHEMA, **asdict(record)}
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-record-", suffix=".json", dir=tarball.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        tmp.chmod(0o644)
        tmp.rename(record_path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(tarball.parent)
    return tarball


def sha256_file(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _roundtrip(value: dict[str, Any]) -> Any:
    # Compare inputs as they come back from JSON (tuples become lists and so on).
    return json.loads(json.dumps(value, sort_keys=True))


def _remove_stale(d: Path) -> None:
    now = time.time()
    for p in d.glob(".tmp-*"):
        with contextlib.suppress(OSError):
            if now - p.lstat().st_mtime > _STALE_SECONDS:
                p.unlink()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
