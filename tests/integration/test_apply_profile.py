"""The default profile applied to a real trixie rootfs (base + the profile's packages,
minimised, with the image's fstab), through ``goldsmith apply``.

Every control's check passes afterwards (or the profile excepts it), a second apply changes
nothing, ``--check`` changes nothing, and bad profiles stop with exit 2 before any write.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from goldsmith.build.bootstrap import bootstrap_base, unpack_base
from goldsmith.build.diskimage import render_fstab
from goldsmith.build.packages import install_packages, minimise
from goldsmith.cli import EXIT_FAIL, EXIT_OK, EXIT_USAGE, main
from goldsmith.controls.catalogue import load_catalogue
from goldsmith.controls.engine import check_all, resolve
from goldsmith.controls.report import apply_profile
from goldsmith.model.profile_loader import LoadedProfile
from goldsmith.model.records import Status
from goldsmith.targets.rootfs import RootfsTarget

pytestmark = pytest.mark.integration


def tree_hash(root: Path) -> str:
    """sha256 over every path, type, mode, owner, content and link target under root."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            s = p.lstat()
            h.update(f"{p.relative_to(root)}\0{s.st_mode:o}\0{s.st_uid}\0{s.st_gid}\0".encode())
            if stat.S_ISLNK(s.st_mode):
                h.update(os.readlink(p).encode())
            elif stat.S_ISREG(s.st_mode):
                h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def rootfs(default_profile: LoadedProfile, test_cache: Path) -> Iterator[Path]:
    profile = default_profile.profile
    work = Path("/var/tmp") / "goldsmith-it-apply"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    root = work / "rootfs"
    unpack_base(bootstrap_base(profile, test_cache), root)
    target = RootfsTarget(root, env={"SOURCE_DATE_EPOCH": str(profile.base.source_date_epoch)})
    with target.session():
        install_packages(target, profile.packages.include)
        minimise(target, profile)
    # the image layout's partitions, as the build's fstab stage writes them
    target.write_text("/etc/fstab", render_fstab(profile))
    yield root
    shutil.rmtree(work, ignore_errors=True)


def _bad_profile(tmp_path: Path, controls: str) -> Path:
    p = tmp_path / "bad.yaml"
    p.write_text(f"extends: nanoclaw-debian13\nname: bad\ncontrols:\n{controls}")
    return p


def test_bad_profiles_stop_before_any_write(
    rootfs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = tree_hash(rootfs)
    cases = [
        ("  sshd.no-such-option: {}\n", "controls.sshd.no-such-option"),
        ("  sshd.max-auth-tries: {params: {value: [3]}}\n", "controls.sshd.max-auth-tries.params"),
        ("  sshd.ciphers: {params: {value: not-a-cipher}}\n", "not-a-cipher"),
    ]
    for controls, words in cases:
        p = _bad_profile(tmp_path, controls)
        assert main(["apply", "--profile", str(p), "--rootfs", str(rootfs)]) == EXIT_USAGE
        err = " ".join(capsys.readouterr().err.split())
        assert f"{p}:4:" in err and words in err, err
        assert tree_hash(rootfs) == before, controls


def test_check_mode_shows_changes_and_writes_nothing(
    rootfs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = tree_hash(rootfs)
    assert main(["apply", "--rootfs", str(rootfs), "--check", "--diff"]) == EXIT_FAIL
    shown = capsys.readouterr().out
    # sshd options are written to sshd_config itself (OpenSCAP reads only that file)
    assert "sshd.ciphers: /etc/ssh/sshd_config" in shown
    assert "+Ciphers aes256-gcm@openssh.com" in shown  # a unified diff of the file
    assert tree_hash(rootfs) == before


def test_apply_then_every_check_passes_and_nothing_is_left_to_do(
    rootfs: Path, default_profile: LoadedProfile, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["apply", "--rootfs", str(rootfs)]) == EXIT_OK
    capsys.readouterr()
    profile = default_profile.profile
    resolved = resolve(profile, load_catalogue(), loaded=default_profile)
    excepted = {e.control for e in profile.exceptions}
    target = RootfsTarget(rootfs)
    with target.session():
        findings = check_all(target, resolved)
    assert len(findings) == len(resolved) > 250
    bad = [
        (f.control, f.evidence.observed)
        for f in findings
        if f.status not in (Status.PASS, Status.NOT_APPLICABLE) and f.control not in excepted
    ]
    assert bad == []

    again = apply_profile(default_profile, rootfs)
    assert again.changes == [] and again.unexcepted == []
    before = tree_hash(rootfs)
    assert main(["apply", "--rootfs", str(rootfs), "--check"]) == EXIT_OK
    assert tree_hash(rootfs) == before
