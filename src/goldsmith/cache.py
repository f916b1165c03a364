"""A per-user, content-addressed cache of results that are pure functions of their input text.

Two steps of loading a whole-catalogue scan are pure functions of text and take a large part
of it: parsing the catalogue's ~240 KB of YAML into plain data (libyaml's composer and the
node walk, ~0.08 s of a ~1 s scan) and rendering the Jinja2 templates of managed files
(importing Jinja2 and compiling ~25 templates, ~0.08 s). Their results are kept as JSON under
a key that hashes everything they depend on: the input text, the source of the module that
computes them, goldsmith's version, the third-party library's version, and :data:`FORMAT`.
A changed byte in any of those is a different key, so an entry is never stale, only unused.
Validation (pydantic, rule building, CIS ids) runs on every load, cached or not, and every
error is reported from a fresh parse.

Nothing here can make a run fail: an unreadable, corrupt or foreign entry is a miss, and a
directory that cannot be written is simply not written. :func:`set_writable` (``False`` for
``goldsmith scan --host``) keeps a scan of a live host from adding files to it. Entries are
written atomically (a temporary file renamed into place) with mode 0600 in 0700 directories.

The directory is ``$GOLDSMITH_CACHE_DIR``, else ``$XDG_CACHE_HOME/goldsmith``, else
``~/.cache/goldsmith``; ``GOLDSMITH_CACHE_DIR=`` (empty) turns caching off.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: bump when what an entry holds changes shape
FORMAT = 1
_writable = True
#: entries put while writes are held (see :func:`hold_writes`): their caches, texts and values
_held: list[tuple[ContentCache, str, dict[str, Any]]] | None = None


def set_writable(writable: bool) -> None:
    """Allow or forbid writing entries (reading stays allowed) for the rest of the process.

    If writes are held (:func:`hold_writes`), the held entries are written now if ``writable``
    and dropped if not.
    """
    global _writable, _held
    _writable = writable
    held, _held = _held, None
    for cache, text, value in held or ():
        cache.put(text, value)


def hold_writes() -> None:
    """Keep entries put from now on in memory until :func:`set_writable` says whether they may
    be written (the check worker loads the catalogue before it knows whether the scan is of a
    live host, whose files a scan must not change)."""
    global _held
    if _held is None:
        _held = []


def default_dir(name: str) -> Path | None:
    """The directory of cache ``name`` from the environment (``None``: caching is off)."""
    explicit = os.environ.get("GOLDSMITH_CACHE_DIR")
    if explicit is not None:
        return Path(explicit) / name if explicit else None
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "goldsmith" / name


def source_digest(path: str | None) -> str | None:
    """sha256 of a module's source file (``None`` if it cannot be read: a zipapp)."""
    if path is None:
        return None
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def code_cache(name: str, *, files: Sequence[str], modules: Sequence[str] = ()) -> ContentCache:
    """Cache ``name`` for results computed by code: its keys also hash goldsmith's version and
    the source of each of ``files`` and of each module in ``modules`` (found without importing
    it; a package's ``__init__`` stands for its version). Off (no directory) if a source
    cannot be read, since then it cannot tell which code made an entry."""
    from goldsmith import __version__

    specs = [importlib.util.find_spec(m) for m in modules]
    paths = [*files, *(s.origin if s is not None else None for s in specs)]
    digests = [source_digest(p) for p in paths]
    known = [d for d in digests if d is not None]
    if len(known) != len(digests):
        return ContentCache(None, salt=())
    return ContentCache(default_dir(name), salt=(__version__, *known))


class ContentCache:
    """JSON entries under ``directory``, keyed by :meth:`key` (``directory`` ``None``: off)."""

    def __init__(self, directory: Path | None, *, salt: Sequence[str], write: bool = True) -> None:
        self.directory = directory
        self.write = write
        self._salt = "\0".join([str(FORMAT), *salt]).encode()

    def key(self, text: str) -> str:
        return hashlib.sha256(self._salt + b"\0" + text.encode("utf-8")).hexdigest()

    def get(self, text: str) -> dict[str, Any] | None:
        """The entry stored for ``text``, or ``None`` (a miss, whatever the reason)."""
        if self.directory is None:
            return None
        key = self.key(text)
        try:
            raw = (self.directory / f"{key}.json").read_bytes()
            entry = json.loads(raw)
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or entry.get("key") != key or "value" not in entry:
            return None
        value = entry["value"]
        return value if isinstance(value, dict) else None

    def put(self, text: str, value: dict[str, Any]) -> bool:
        """Store ``value`` for ``text``; ``False`` if it was not stored (and why is logged)."""
        if self.directory is None or not self.write or not _writable:
            return False
        if _held is not None:
            _held.append((self, text, value))
            return False
        key = self.key(text)
        try:
            encoded = json.dumps({"key": key, "value": value}, ensure_ascii=False)
        except (TypeError, ValueError) as exc:  # pragma: no cover - plain YAML data is JSON
            log.debug("cache: not stored: %s", exc)
            return False
        if json.loads(encoded)["value"] != value:  # e.g. a YAML int key, or NaN
            log.debug("cache: %s does not survive JSON; not stored", key)
            return False
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=self.directory)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(encoded)
                Path(tmp).replace(self.directory / f"{key}.json")
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            log.debug("cache: not stored in %s: %s", self.directory, exc)
            return False
        return True
