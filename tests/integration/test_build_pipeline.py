"""The whole build of the default profile, as `make image` runs it, checked from the outside."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from goldsmith.build.inventory import read_inventory
from goldsmith.model.profile_loader import LoadedProfile
from goldsmith.pipeline.build import BuildOptions, BuildResult, build_image

pytestmark = pytest.mark.integration


def test_outputs_exist(built: BuildResult) -> None:
    names = {p.name for p in built.out_dir.iterdir()}
    assert {"rootfs.tar.zst", "base-inventory.json", "final-inventory.json", "build.json"} <= names
    assert built.disk is not None
    assert built.disk.raw is not None and built.disk.raw.is_file()
    assert built.disk.qcow2 is not None and built.disk.qcow2.is_file()
    info = subprocess.run(
        ["qemu-img", "info", "--output=json", str(built.disk.qcow2)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert json.loads(info)["format"] == "qcow2"


def _members(tar_zst: Path) -> dict[str, tarfile.TarInfo]:
    proc = subprocess.run(["zstd", "-dc", str(tar_zst)], check=True, capture_output=True)
    import io

    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tf:
        return {m.name.removeprefix("./"): m for m in tf.getmembers()}


def test_no_shared_identity_in_image(built: BuildResult) -> None:
    members = _members(built.rootfs_tar)
    keys = [n for n in members if n.startswith("etc/ssh/ssh_host_")]
    assert keys == [], f"host keys shipped in the image: {keys}"
    assert members["etc/machine-id"].size == 0
    # the first-boot unit that regenerates host keys is present and enabled
    assert any(n.endswith("goldsmith-ssh-hostkeys.service") for n in members)
    lists = [n for n in members if n.startswith("var/lib/apt/lists/") and members[n].isfile()]
    assert lists == [], f"apt lists left in the image: {lists[:5]}"
    debs = [n for n in members if n.startswith("var/cache/apt/archives/") and n.endswith(".deb")]
    assert debs == []


def test_inventories_are_complete(built: BuildResult) -> None:
    base = read_inventory(built.out_dir / "base-inventory.json")
    final = read_inventory(built.out_dir / "final-inventory.json")
    final_names = {p.name for p in final.packages}
    base_names = {p.name for p in base.packages}
    for pkg in ("openssh-server", "auditd", "nodejs", "linux-image-amd64", "systemd-sysv"):
        assert pkg in final_names, pkg
    # nodejs comes from packages.include, installed after the base snapshot
    assert "nodejs" not in base_names
    members = _members(built.rootfs_tar)
    files = {e.path.lstrip("/") for e in final.files}
    # the inventory and the exported tar describe the same tree
    tar_paths = {n.rstrip("/") for n in members if n not in ("", ".")}
    assert files == tar_paths


def test_purge_list_honoured(built: BuildResult, default_profile: LoadedProfile) -> None:
    final = read_inventory(built.out_dir / "final-inventory.json")
    installed = {p.name for p in final.packages}
    purge = set(default_profile.profile.packages.purge) - set(default_profile.profile.packages.keep)
    assert not (installed & purge)
    record = json.loads((built.out_dir / "build.json").read_text())
    assert record["profile"]["digest"] == default_profile.digest
    for removal in record["removed_packages"]:
        assert removal["version"], removal


def test_rebuild_is_bit_identical_and_reuses_base(
    built: BuildResult, default_profile: LoadedProfile, out_root: Path, test_cache: Path
) -> None:
    again = build_image(
        default_profile,
        BuildOptions(out_root=out_root / "second", cache_dir=test_cache, disk_image=False),
    )
    assert again.base_cached
    assert again.base_digest == built.base_digest
    assert again.stage_seconds["bootstrap"] < 5
    assert again.rootfs_sha256 == built.rootfs_sha256


# The default image's boot is tested once, by tests/integration/test_boottest.py (login prompt,
# SSH, live checks); booting it a second time here would only add minutes of TCG.
