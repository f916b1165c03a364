"""Export, end to end on a small real trixie rootfs (not the full default build):
deterministic tar, disk image with separate filesystems holding the tree bit for bit.

The rootfs (minbase + kernel, initramfs-tools, grub-pc, systemd, udev, dbus) is cached under
/var/tmp/helper-export/cache (GOLDSMITH_EXPORT_CACHE); delete it to bootstrap again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from goldsmith.build.diskimage import DiskImages, build_disk_image, render_fstab
from goldsmith.build.export import export_rootfs_tar, rootfs_digest, tar_digest
from goldsmith.model.profile import Image, Profile

pytestmark = pytest.mark.integration

CACHE = Path(os.environ.get("GOLDSMITH_EXPORT_CACHE", "/var/tmp/helper-export/cache"))
INCLUDE = [
    "linux-image-amd64",
    "initramfs-tools",
    "grub-pc",
    "systemd-sysv",
    "udev",
    "dbus",
    "e2fsprogs",
    "iputils-ping",
    "libcap2-bin",
]
SDE = 1767225600
PROFILE = Profile(name="export-boot-test", image=Image(hostname="vm", root_size="1G"))
TIMES: dict[str, float] = {}


@pytest.fixture(scope="module")
def rootfs() -> Path:
    base = CACHE / "trixie-boot-v1"
    root = base / "rootfs"
    if not (base / ".complete").exists():
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(parents=True)
        subprocess.run(
            [
                "mmdebstrap",
                "--mode=root",
                "--variant=minbase",
                "--include=" + ",".join(INCLUDE),
                "trixie",
                str(base / "rootfs.partial"),
                "http://deb.debian.org/debian",
            ],
            check=True,
        )
        (base / "rootfs.partial").rename(root)
        (base / ".complete").touch()
    # a file capability the disk image must keep (ping may rely on ping_group_range instead)
    subprocess.run(["setcap", "cap_net_raw+ep", str(root / "usr/bin/ping")], check=True)
    return root


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = Path("/var/tmp/helper-export") / f"it-{os.getpid()}"
    path.mkdir(parents=True, exist_ok=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def disk(rootfs: Path, out: Path) -> DiskImages:
    t0 = time.monotonic()
    images = build_disk_image(rootfs, PROFILE, out / "images", work_dir=out / "work")
    TIMES["disk_image_s"] = round(time.monotonic() - t0, 1)
    return images


def test_tar_is_bit_identical_and_holds_the_tree(rootfs: Path, out: Path) -> None:
    t0 = time.monotonic()
    first = export_rootfs_tar(rootfs, out / "a" / "rootfs.tar.zst", source_date_epoch=SDE)
    TIMES["tar_export_s"] = round(time.monotonic() - t0, 1)
    second = export_rootfs_tar(rootfs, out / "b" / "rootfs.tar.zst", source_date_epoch=SDE)
    assert first == second
    assert (out / "a/rootfs.tar.zst").read_bytes() == (out / "b/rootfs.tar.zst").read_bytes()
    assert tar_digest(out / "a/rootfs.tar.zst") == rootfs_digest(rootfs)


def _mount_partitions(raw: Path, images: DiskImages, mnt: Path) -> list[Path]:
    mounted: list[Path] = []
    for p in images.partitions:  # root first, then parents before children
        where = mnt / p.mountpoint.lstrip("/")
        subprocess.run(
            ["mount", "-o", f"ro,loop,offset={p.offset},sizelimit={p.size}", str(raw), str(where)],
            check=True,
        )
        mounted.append(where)
    return mounted


def test_disk_holds_the_tree_with_owners_modes_and_caps(
    rootfs: Path, disk: DiskImages, out: Path
) -> None:
    assert disk.raw is not None and disk.qcow2 is not None
    table = json.loads(
        subprocess.run(["sfdisk", "--json", str(disk.raw)], check=True, capture_output=True).stdout
    )["partitiontable"]
    assert table["label"] == "gpt"
    assert table["id"].lower() == disk.disk_guid
    names = [p.get("name") for p in table["partitions"]]
    assert names == ["bios-boot", "root", "var-tmp", "var-log", "var-log-audit"]
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(disk.qcow2)],
            check=True,
            capture_output=True,
        ).stdout
    )
    assert info["format"] == "qcow2" and info["virtual-size"] == disk.size

    mnt = out / "mnt"
    mnt.mkdir(exist_ok=True)
    mounted: list[Path] = []
    try:
        mounted = _mount_partitions(disk.raw, disk, mnt)
        assert (mnt / "etc/fstab").read_text() == render_fstab(PROFILE)
        assert os.getxattr(mnt / "usr/bin/ping", "security.capability") == os.getxattr(
            rootfs / "usr/bin/ping", "security.capability"
        )

        # mount points goldsmith had to create (no auditd here, so no /var/log/audit)
        created = {
            p.mountpoint
            for p in disk.partitions
            if not (rootfs / p.mountpoint.lstrip("/")).exists()
        }

        def skip(path: str) -> bool:
            return path.endswith("/lost+found") or path in disk.image_only_paths or path in created

        # the image is the rootfs tree, bit for bit in content and metadata (modes of the
        # filesystems' top directories included: /var/tmp stays 1777), except for the
        # bootloader files, fstab and each filesystem's lost+found
        assert rootfs_digest(mnt, skip=skip) == rootfs_digest(rootfs, skip=skip)
    finally:
        for where in reversed(mounted):
            subprocess.run(["umount", str(where)], check=False)


# Booting is tested once per run, on the default image (tests/integration/test_boottest.py):
# its live.mount-options check proves every separate filesystem mounted with its options, and
# a second TCG boot here would only add minutes.
