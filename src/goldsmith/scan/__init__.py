"""Scanners run against an image: Lynis and OpenSCAP adapters (goldsmith's own scan and the
result merge come later).

Both third-party scanners write into the tree they scan (Lynis runs ``apt-get update`` and
writes its log; OpenSCAP's dpkg probe writes apt's ``pkgcache.bin`` and its probes leave
temporary files at the root), so neither ever sees the original rootfs: each scans a private
copy made by :func:`scan_copy` (``cp -a --reflink=auto``: a reflink clone on btrfs/XFS, a
plain copy elsewhere; a 171 MB minbase tree copies in about 1.5 s on ext4) and the copy is
removed afterwards. An overlay mount would be cheaper but makes the scanners see overlayfs
device numbers and inode quirks, and cannot sit on an overlay upper directory.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from goldsmith.errors import BuildError
from goldsmith.targets.host import command_env, run_process

log = logging.getLogger(__name__)


class ScanError(BuildError):
    """A scanner could not run or its output could not be read (carries argv and stderr)."""


def run_host(
    argv: Sequence[str],
    *,
    what: str,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
    ok_codes: Sequence[int] = (0,),
) -> tuple[int, str, str]:
    """Run a host command; a failure becomes a ScanError naming ``what`` was being done."""
    try:
        res = run_process(argv, env=command_env(env), timeout=timeout, check=False)
    except BuildError as exc:  # could not start, or timed out (and was killed)
        raise ScanError(
            f"{what}: {exc.message.splitlines()[0]}", argv=argv, stderr=exc.stderr_tail
        ) from exc
    if res.returncode not in ok_codes:
        raise ScanError(
            f"{what}: exit status {res.returncode}", argv=argv, stderr=res.stderr or res.stdout
        )
    return res.returncode, res.stdout, res.stderr


@contextlib.contextmanager
def scan_copy(rootfs: Path, dest: Path, *, keep: bool = False) -> Iterator[Path]:
    """A private copy of ``rootfs`` at ``dest`` (which must not exist) for one scan.

    ``cp -a`` keeps owners, modes, hard links, xattrs (file capabilities) and symlinks as
    they are (never followed). The copy is deleted afterwards unless ``keep``.
    """
    if not rootfs.is_dir():
        raise ScanError(f"rootfs {rootfs} is not a directory")
    if dest.exists() or dest.is_symlink():
        raise ScanError(
            f"scan copy {dest} already exists",
            hint="give each scan its own work directory (a leftover from an interrupted scan "
            "can be removed)",
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        run_host(
            ["cp", "-a", "--reflink=auto", "--", str(rootfs), str(dest)],
            what=f"copying {rootfs} for scanning",
        )
        yield dest
    finally:
        if not keep and (dest.exists() or dest.is_symlink()):
            remove_scan_copy(dest)


def remove_scan_copy(path: Path) -> None:
    """Remove a scan copy; refuses while anything is still mounted below it."""
    from goldsmith.targets.chroot import mounts_under

    left = mounts_under(path)
    if left:
        raise ScanError(
            f"not removing scan copy {path}: still mounted below it: {', '.join(left)}",
            hint="unmount them (umount -R) and remove the directory by hand",
        )
    shutil.rmtree(path)
