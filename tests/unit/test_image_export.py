"""The exported rootfs tar, the disk layout and fstab, and the QEMU helpers (no VM booted)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from goldsmith.boot.qemu import (
    ConsoleWatcher,
    kvm_module_problem,
    parse_kvm_probe,
    qemu_argv,
    strip_ansi,
)
from goldsmith.build.diskimage import (
    compute_layout,
    fs_label,
    parse_size,
    render_fstab,
    render_sfdisk_script,
    serial_console,
)
from goldsmith.build.export import export_rootfs_tar, rootfs_digest, tar_digest
from goldsmith.errors import BuildError
from goldsmith.model.profile import Partition, Profile
from goldsmith.model.profile_loader import load_profile

SDE = 1767225600


def _tree(root: Path, order: list[str]) -> None:
    for name in order:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"content of {name}\n")
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc/link").symlink_to("/etc/one")
    os.link(root / sorted(order)[0], root / "hardlink")
    (root / "secret").write_text("x")
    (root / "secret").chmod(0o600)


def test_tar_is_a_function_of_the_tree(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    names = ["etc/one", "usr/bin/two", "var/lib/three"]
    _tree(a, names)
    time.sleep(0.01)
    _tree(b, list(reversed(names)))  # other creation order, other inode numbers and mtimes
    os.utime(b / "usr/bin/two", (SDE + 86400, SDE + 86400))  # newer than SDE: clamped
    sha_a = export_rootfs_tar(a, tmp_path / "a.tar.zst", source_date_epoch=SDE)
    sha_b = export_rootfs_tar(b, tmp_path / "b.tar.zst", source_date_epoch=SDE)
    assert sha_a == sha_b
    assert rootfs_digest(a) == rootfs_digest(b) == tar_digest(tmp_path / "a.tar.zst")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_tar_changes_with_content_or_mode(tmp_path: Path) -> None:
    a = tmp_path / "a"
    _tree(a, ["etc/one"])
    before = export_rootfs_tar(a, tmp_path / "1.tar.zst", source_date_epoch=SDE)
    (a / "secret").chmod(0o644)
    after_mode = export_rootfs_tar(a, tmp_path / "2.tar.zst", source_date_epoch=SDE)
    (a / "etc/one").write_text("changed\n")
    after_content = export_rootfs_tar(a, tmp_path / "3.tar.zst", source_date_epoch=SDE)
    assert len({before, after_mode, after_content}) == 3
    assert rootfs_digest(a) == tar_digest(tmp_path / "3.tar.zst")


def test_export_of_missing_tree_is_a_build_error(tmp_path: Path) -> None:
    with pytest.raises(BuildError):
        export_rootfs_tar(tmp_path / "nope", tmp_path / "x.tar.zst", source_date_epoch=SDE)
    assert not (tmp_path / "x.tar.zst").exists()


@pytest.fixture(scope="module")
def profile() -> Profile:
    return load_profile("nanoclaw-debian13").profile


def test_layout_is_aligned_ordered_and_stable(profile: Profile) -> None:
    layout = compute_layout(profile)
    mounts = [p.mountpoint for p in layout.partitions]
    assert mounts[0] == "/"
    assert set(mounts[1:]) == {p.mountpoint for p in profile.image.partitions if p.fs == "ext4"}
    end = 0
    for p in layout.partitions:
        assert p.offset % (1 << 20) == 0 and p.size % (1 << 20) == 0
        assert p.offset >= end
        end = p.offset + p.size
    assert layout.size > end
    assert compute_layout(profile) == layout  # derived UUIDs: same profile, same disk
    other = profile.model_copy(update={"version": "9.9.9"})
    assert compute_layout(other).partitions[0].uuid != layout.partitions[0].uuid
    script = render_sfdisk_script(layout)
    assert script.startswith("label: gpt\n")
    assert script.count("start=") == len(layout.partitions) + 1  # + BIOS boot


def test_fstab_carries_every_mount_with_its_options(profile: Profile) -> None:
    fstab = render_fstab(profile)
    rows = {ln.split()[1]: ln.split() for ln in fstab.splitlines() if ln and ln[0] != "#"}
    assert rows["/"][2] == "ext4" and rows["/"][5] == "1"
    for part in profile.image.partitions:
        row = rows[part.mountpoint]
        assert row[2] == part.fs
        for opt in part.options:
            if opt != "defaults":
                assert opt in row[3].split(","), (part.mountpoint, opt)
    assert "size=512M" in rows["/tmp"][3]
    order = [ln.split()[1] for ln in fstab.splitlines() if ln and ln[0] != "#"]
    assert order.index("/var/log") < order.index("/var/log/audit")  # parents first


def test_sizes_labels_and_console() -> None:
    assert parse_size("512M") == 512 << 20 and parse_size("3G") == 3 << 30
    with pytest.raises(BuildError):
        parse_size("lots")
    assert fs_label("/") == "root" and fs_label("/var/log/audit") == "var-log-audit"
    assert len(fs_label("/a/very/long/mount/point/name")) <= 16
    c = serial_console(["quiet", "console=tty0", "console=ttyS1,57600n8"])
    assert c is not None and (c.unit, c.speed) == (1, 57600)
    assert serial_console(["console=tty0"]) is None


def test_duplicate_labels_are_refused(profile: Profile) -> None:
    parts = [
        Partition(mountpoint="/srv/aaaaaaaaaaaaaaaaaa1", size="64M"),
        Partition(mountpoint="/srv/aaaaaaaaaaaaaaaaaa2", size="64M"),
    ]
    bad = profile.model_copy(
        update={"image": profile.image.model_copy(update={"partitions": parts})}
    )
    with pytest.raises(BuildError, match="share the label"):
        compute_layout(bad)


def test_console_watcher_finds_prompt_across_chunks() -> None:
    w = ConsoleWatcher()
    for chunk in (b"Debian GNU/Linux 13 nano", b"claw ttyS0\r\n\r\nnanoclaw lo", b"\x1b[0mgin: "):
        w.feed(chunk)
    assert w.search(re.compile(rb"login: ")) is not None
    assert w.search(re.compile(rb"login: "), start=w.size) is None
    assert "\r" not in w.text() and "\x1b" not in w.text()
    assert strip_ansi(b"\x1b[0;32m  OK  \x1b[0m") == b"  OK  "


def test_kvm_probe_judgement() -> None:
    msr = "qemu-system-x86_64: error: failed to set MSR 0x48f to 0x7fffff00036dfb\n"
    assert not parse_kvm_probe(1, msr).usable
    assert "VT-x" in parse_kvm_probe(1, msr).reason
    assert parse_kvm_probe(None, "").usable
    assert not parse_kvm_probe(1, "Could not access KVM kernel module: No such file").usable


def test_a_pvm_kvm_is_judged_unusable(tmp_path: Path) -> None:
    """PVM passes QEMU's start-up probe but cannot boot a stock kernel (seen on this kind
    of machine: GRUB runs, then the console stays silent for the whole login timeout)."""
    (tmp_path / "kvm").mkdir()
    (tmp_path / "kvm_intel").mkdir()
    assert kvm_module_problem(tmp_path) is None
    (tmp_path / "kvm_pvm" / "parameters").mkdir(parents=True)
    problem = kvm_module_problem(tmp_path)
    assert problem is not None and "kvm_pvm" in problem


def test_qemu_forwards_only_to_loopback(tmp_path: Path) -> None:
    disk = tmp_path / "d.qcow2"
    disk.write_bytes(b"QFI\xfb" + bytes(60))
    argv = qemu_argv(
        disk,
        accel="tcg",
        memory_mb=512,
        cpus=1,
        qmp_socket=tmp_path / "qmp",
        snapshot=True,
        hostfwd=[(40022, 2222)],
    )
    netdev = argv[argv.index("-netdev") + 1]
    assert "hostfwd=tcp:127.0.0.1:40022-:2222" in netdev
    assert "snapshot=on" in argv[argv.index("-drive") + 1]
    assert "-no-reboot" in argv
    assert "format=qcow2" in argv[argv.index("-drive") + 1]
