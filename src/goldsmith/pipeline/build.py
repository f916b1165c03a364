"""The build pipeline: bootstrap -> base inventory -> packages -> minimise -> harden (the
profile's controls) -> network -> fstab -> finalize -> check (every control's check) -> final
inventory -> export (rootfs tar, disk images) -> optional boot test.

Everything lands in ``<out>/<profile>-<version>/`` only when the whole build succeeded: the
build writes into a sibling ``.partial`` directory and renames it at the end, so a failed or
interrupted build never leaves a half-written output directory behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from goldsmith import __version__
from goldsmith.build.bootstrap import bootstrap_base, unpack_base
from goldsmith.build.diskimage import (
    DiskImages,
    build_disk_image,
    image_grub_args,
    render_fstab,
)
from goldsmith.build.export import export_rootfs_tar
from goldsmith.build.finalize import finalize
from goldsmith.build.inventory import take_inventory, write_inventory
from goldsmith.build.network import configure_network
from goldsmith.build.packages import MinimiseResult, host_resolver, install_packages, minimise
from goldsmith.controls.catalogue import load_catalogue
from goldsmith.controls.engine import apply_all, check_all, resolve, unexcepted_failures
from goldsmith.errors import BuildError
from goldsmith.model.profile_loader import LoadedProfile
from goldsmith.model.records import Change, Finding
from goldsmith.pipeline.stages import StageClock, StageListener, _silent
from goldsmith.targets.rootfs import RootfsTarget

DEFAULT_CACHE_DIR = Path("/var/cache/goldsmith")


@dataclass(frozen=True)
class BuildOptions:
    out_root: Path = Path("out")
    cache_dir: Path = DEFAULT_CACHE_DIR
    refresh_base: bool = False
    disk_image: bool = True
    boot_test: bool = False
    boot_timeout: float = 600.0
    keep_rootfs: bool = False
    #: scan the finished rootfs (controls, Lynis in a chroot, oscap-chroot CIS L2) and write
    #: scan.json, scan.junit.xml, scan.sarif and the scanners' artifacts into the output
    scan: bool = False


@dataclass(frozen=True)
class BuildResult:
    out_dir: Path
    rootfs_tar: Path
    rootfs_sha256: str
    base_digest: str
    base_cached: bool
    disk: DiskImages | None
    packages_before: int
    packages_after: int
    files_after: int
    bytes_after: int
    boot_seconds: float | None
    accel: str | None
    stage_seconds: dict[str, float] = field(default_factory=dict)


def build_image(
    loaded: LoadedProfile, options: BuildOptions, listener: StageListener = _silent
) -> BuildResult:
    profile = loaded.profile
    # every control id and param is checked before anything is written
    controls = resolve(profile, load_catalogue(), loaded=loaded)
    clock = StageClock(listener)
    final_dir = options.out_root / profile.output_name
    options.out_root.mkdir(parents=True, exist_ok=True)
    options.cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{profile.output_name}.", suffix=".partial", dir=options.out_root)
    )
    work = Path(tempfile.mkdtemp(prefix="build-", dir=_work_parent(options.cache_dir)))
    rootfs = work / "rootfs"
    changes: list[Change] = []
    try:
        with clock.stage("bootstrap", f"{profile.base.distribution} {profile.base.suite}"):
            base = bootstrap_base(profile, options.cache_dir, refresh=options.refresh_base)
        with clock.stage("unpack"):
            rootfs.mkdir()
            unpack_base(base, rootfs)
        with clock.stage("inventory-base"):
            base_inv = take_inventory(rootfs)
            write_inventory(base_inv, staging / "base-inventory.json")

        target = RootfsTarget(
            rootfs, env={"SOURCE_DATE_EPOCH": str(profile.base.source_date_epoch)}
        )
        with target.session():
            with clock.stage("packages", f"{len(profile.packages.include)} requested"):
                if profile.packages.include:
                    changes += install_packages(target, profile.packages.include)
            with clock.stage("minimise"):
                mini = minimise(target, profile)
                changes += mini.changes
            with clock.stage("harden", f"{len(controls)} controls"), host_resolver(target):
                changes += apply_all(target, controls).changes
            with clock.stage("network"):
                changes += configure_network(target)
            with clock.stage("fstab"):
                fstab = render_fstab(profile)
                before = target.read_text("/etc/fstab") if target.exists("/etc/fstab") else None
                if before != fstab:
                    target.write_text("/etc/fstab", fstab, mode=0o644)
                    changes.append(Change("image.fstab", "/etc/fstab", "content", before, fstab))
            with clock.stage("finalize"):
                changes += finalize(target, hostname=profile.image.hostname)
                grub_args = image_grub_args(target)
            with clock.stage("check", f"{len(controls)} controls"):
                findings = check_all(target, controls)

        with clock.stage("inventory-final"):
            final_inv = take_inventory(rootfs)
            write_inventory(final_inv, staging / "final-inventory.json")
        with clock.stage("export-tar"):
            tar_path = staging / "rootfs.tar.zst"
            tar_sha = export_rootfs_tar(
                rootfs, tar_path, source_date_epoch=profile.base.source_date_epoch
            )
        scan_summary: dict[str, Any] | None = None
        if options.scan:
            with clock.stage("scan", "controls, Lynis (chroot), OpenSCAP CIS L2 (oscap-chroot)"):
                scan_summary = _scan_rootfs(rootfs, loaded, options, staging)
        else:
            clock.skipped("scan", "not requested")
        disk: DiskImages | None = None
        if options.disk_image:
            with clock.stage("disk-image", ", ".join(profile.image.formats)):
                disk = build_disk_image(
                    rootfs, profile, staging, work_dir=work / "disk", extra_cmdline=grub_args
                )
        else:
            clock.skipped("disk-image", "disabled")

        boot_seconds: float | None = None
        accel: str | None = None
        if options.boot_test:
            if disk is None or (disk.raw is None and disk.qcow2 is None):
                raise BuildError("the boot test needs a disk image; build one (no --no-disk)")
            from goldsmith.boot.qemu import boot_to_login

            image = disk.qcow2 or disk.raw
            assert image is not None
            with clock.stage("boot-test", "QEMU to a login prompt"):
                boot = boot_to_login(
                    image, timeout=options.boot_timeout, log_path=staging / "boot-console.log"
                )
            boot_seconds, accel = boot.seconds, boot.accel
        else:
            clock.skipped("boot-test", "not requested")

        _write_build_record(
            staging / "build.json",
            loaded=loaded,
            base_digest=base.digest,
            base_cached=base.cached,
            mmdebstrap_version=base.mmdebstrap_version,
            tar_sha=tar_sha,
            changes=changes,
            findings=findings,
            mini=mini,
            stage_seconds=clock.seconds,
            boot_seconds=boot_seconds,
            accel=accel,
            scan=scan_summary,
        )
        _publish(staging, final_dir)
        disk_final = _rebase_disk(disk, staging, final_dir)
        return BuildResult(
            out_dir=final_dir,
            rootfs_tar=final_dir / "rootfs.tar.zst",
            rootfs_sha256=tar_sha,
            base_digest=base.digest,
            base_cached=base.cached,
            disk=disk_final,
            packages_before=len(base_inv.packages),
            packages_after=len(final_inv.packages),
            files_after=len(final_inv.files),
            bytes_after=sum(f.size for f in final_inv.files if f.type == "file"),
            boot_seconds=boot_seconds,
            accel=accel,
            stage_seconds=dict(clock.seconds),
        )
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        if not options.keep_rootfs:
            _remove_tree(work)


def _scan_rootfs(
    rootfs: Path, loaded: LoadedProfile, options: BuildOptions, staging: Path
) -> dict[str, Any]:
    """``goldsmith scan`` of the finished rootfs; reports and artifacts into the output."""
    from goldsmith.scan.formats import write_reports
    from goldsmith.scan.run import ScanOptions, scan_rootfs

    report = scan_rootfs(
        rootfs,
        loaded,
        ScanOptions(work_dir=staging / "scan", cache_dir=options.cache_dir),
    )
    written = write_reports(report, staging)
    counts = report.counts()
    return {
        "reports": [p.name for p in written],
        "compliant": report.compliant,
        "failures_not_excepted": report.failures_not_excepted,
        "counts": {str(k): v for k, v in counts.items()},
        "lynis_hardening_index": report.lynis.hardening_index if report.lynis else None,
        "openscap_pass_rate": report.openscap.pass_rate if report.openscap else None,
    }


def _work_parent(cache_dir: Path) -> Path:
    parent = cache_dir / "work"
    parent.mkdir(parents=True, exist_ok=True)
    return parent


def _remove_tree(path: Path) -> None:
    # Plain rmtree is enough: append-only/immutable attributes are set at boot (tmpfiles.d `h`),
    # never in the build tree, and nothing is mounted in it once the target session has ended.
    shutil.rmtree(path, ignore_errors=True)


def _publish(staging: Path, final_dir: Path) -> None:
    """Swap the finished staging directory into place; the old output goes only on success."""
    old: Path | None = None
    if final_dir.exists():
        old = final_dir.with_name(f".{final_dir.name}.old")
        if old.exists():
            shutil.rmtree(old)
        final_dir.rename(old)
    staging.chmod(0o755)  # mkdtemp made it 0700
    staging.rename(final_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    with contextlib.suppress(OSError):
        dirfd = os.open(final_dir.parent, os.O_DIRECTORY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)


def _rebase_disk(disk: DiskImages | None, staging: Path, final_dir: Path) -> DiskImages | None:
    if disk is None:
        return None
    import dataclasses

    def move(p: Path | None) -> Path | None:
        return None if p is None else final_dir / p.relative_to(staging)

    return dataclasses.replace(disk, raw=move(disk.raw), qcow2=move(disk.qcow2))


def _write_build_record(
    path: Path,
    *,
    loaded: LoadedProfile,
    base_digest: str,
    base_cached: bool,
    mmdebstrap_version: str,
    tar_sha: str,
    changes: list[Change],
    findings: list[Finding],
    mini: MinimiseResult,
    stage_seconds: dict[str, float],
    boot_seconds: float | None,
    accel: str | None,
    scan: dict[str, Any] | None = None,
) -> None:
    """The build's own record (provenance + every change); the manifest is made from it."""
    profile = loaded.profile
    doc: dict[str, Any] = {
        "schema": "goldsmith.build/v1",
        "profile": {
            "name": profile.name,
            "version": profile.version,
            "digest": loaded.digest,
            "sources": list(loaded.sources),
        },
        "base": {
            "digest": base_digest,
            "cached": base_cached,
            "distribution": str(profile.base.distribution),
            "suite": profile.base.suite,
            "mirror": profile.base.mirror,
            "source_date_epoch": profile.base.source_date_epoch,
        },
        "tools": {"goldsmith": __version__, "mmdebstrap": mmdebstrap_version},
        "rootfs_tar_sha256": tar_sha,
        "changes": [asdict(c) for c in changes],
        "findings": [asdict(f) for f in findings],
        "unexcepted_failures": [
            {"control": f.control, "status": str(f.status), "observed": f.evidence.observed}
            for f in unexcepted_failures(profile, findings)
        ],
        "removed_packages": [asdict(r) for r in mini.removed],
        "unrequested_packages": list(mini.unrequested),
        "stage_seconds": stage_seconds,
        "boot_test": None if boot_seconds is None else {"seconds": boot_seconds, "accel": accel},
        "scan": scan,
    }
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
