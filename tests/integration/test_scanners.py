"""Lynis and OpenSCAP on a real trixie rootfs: sane numbers, and the scanned tree unchanged.

Needs root, mmdebstrap, oscap (openscap-scanner), unshare, and the Debian mirror (the rootfs,
plus lynis from trixie and ssg-debian from sid, fetched by apt into the test cache).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from goldsmith.scan.content import ensure_lynis, ensure_ssg_content
from goldsmith.scan.lynis import run_lynis_chroot
from goldsmith.scan.lynis import to_findings as lynis_findings
from goldsmith.scan.openscap import (
    CIS_L2_SERVER,
    RuleStatus,
    run_oscap_chroot,
)
from goldsmith.scan.openscap import to_findings as oscap_findings
from goldsmith.targets.chroot import mounts_under

pytestmark = pytest.mark.integration

TEST_CACHE = Path(os.environ.get("GOLDSMITH_TEST_CACHE", "/var/cache/goldsmith-test"))
MIRROR = "http://deb.debian.org/debian"
INCLUDE = "linux-base,openssh-server,auditd,sudo"


def fingerprint(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under root: type and mode, owner, size, mtime, xattrs, link target or
    content hash. Any write, chmod, chown, touch, create or delete changes it."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in ["", *dirnames, *filenames]:
            p = os.path.join(dirpath, name) if name else dirpath
            if not name and dirpath != str(root):
                continue  # each directory is recorded once, as an entry of its parent
            st = os.lstat(p)
            xattrs = tuple(
                sorted((a, os.getxattr(p, a, follow_symlinks=False)) for a in _listxattr(p))
            )
            if stat.S_ISLNK(st.st_mode):
                content: object = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    content = hashlib.file_digest(f, "sha256").hexdigest()
            else:
                content = None
            out[os.path.relpath(p, root)] = (
                st.st_mode,
                st.st_uid,
                st.st_gid,
                st.st_size,
                st.st_mtime_ns,
                xattrs,
                content,
            )
    return out


def _listxattr(p: str) -> list[str]:
    try:
        return os.listxattr(p, follow_symlinks=False)
    except OSError:
        return []


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    path = Path("/var/tmp") / f"goldsmith-scanners-it-{os.getpid()}"
    path.mkdir(parents=True)
    yield path
    assert not mounts_under(path), "a scanner left something mounted"
    shutil.rmtree(path)


@pytest.fixture(scope="module")
def rootfs(scratch: Path) -> Path:
    """A stock trixie minbase with the packages the scanners care about (about 35 s)."""
    root = scratch / "rootfs"
    subprocess.run(
        [
            "mmdebstrap",
            "--quiet",
            "--variant=minbase",
            f"--include={INCLUDE}",
            "trixie",
            str(root),
            MIRROR,
        ],
        check=True,
    )
    return root


@pytest.fixture(scope="module")
def content_cache() -> Path:
    return TEST_CACHE / "scan-content"


def test_lynis_on_rootfs(rootfs: Path, scratch: Path, content_cache: Path) -> None:
    lynis_dir = ensure_lynis(content_cache)
    before = fingerprint(rootfs)
    work = scratch / "lynis"
    # A host process named klogd: Lynis must not see it (its own PID namespace), so its
    # "klogd is not running" warning must still be there.
    decoy_bin = scratch / "klogd"
    shutil.copy2("/usr/bin/sleep", decoy_bin)
    decoy = subprocess.Popen([str(decoy_bin), "600"])
    try:
        start = time.monotonic()
        result = run_lynis_chroot(rootfs, work_dir=work, lynis_dir=lynis_dir)
        elapsed = time.monotonic() - start
    finally:
        decoy.kill()
        decoy.wait()
    assert fingerprint(rootfs) == before, "Lynis changed the scanned rootfs"
    assert not (work / "lynis-rootfs").exists(), "the scan copy was not removed"
    assert not mounts_under(work)

    assert result.mode == "chroot"
    assert result.lynis_version.startswith("3.1.")
    assert result.os_fullname is not None and "trixie" in result.os_fullname
    assert 30 <= result.hardening_index <= 90
    assert result.tests_performed > 150
    assert result.suggestions
    assert result.report_path == work / "lynis-report.dat" and result.report_path.is_file()
    assert result.log_path is not None and result.log_path.is_file()
    assert "IsRunning: process 'klogd' not found" in result.log_path.read_text(errors="replace")
    assert "LOGG-2138" in {w.test_id for w in result.warnings}
    findings = lynis_findings(result)
    assert len(findings) == len(result.warnings)
    print(
        f"\nLynis {result.lynis_version}: hardening index {result.hardening_index}, "
        f"{len(result.warnings)} warnings, {len(result.suggestions)} suggestions, "
        f"scan {result.duration_s:.1f} s, total {elapsed:.1f} s"
    )


def test_openscap_on_rootfs(rootfs: Path, scratch: Path, content_cache: Path) -> None:
    ds = ensure_ssg_content(content_cache)
    before = fingerprint(rootfs)
    work = scratch / "oscap"
    start = time.monotonic()
    result = run_oscap_chroot(rootfs, ds, CIS_L2_SERVER, work_dir=work)
    elapsed = time.monotonic() - start
    assert fingerprint(rootfs) == before, "OpenSCAP changed the scanned rootfs"
    assert not (rootfs / "var/cache/apt/pkgcache.bin").exists()
    assert not (work / "oscap-rootfs").exists()

    assert result.linux_base_installed is True
    assert result.product == "debian13"
    assert result.profile_id == CIS_L2_SERVER
    for artifact in (result.results_path, result.arf_path, result.report_path):
        assert artifact is not None and artifact.is_file() and artifact.stat().st_size > 0
    c = result.counts
    assert c[RuleStatus.PASS] > 100 and c[RuleStatus.FAIL] > 50
    # with linux-base, OpenSCAP does not take the root for a container (~280 n/a rules then)
    assert c[RuleStatus.NOTAPPLICABLE] < 150
    assert result.pass_rate is not None and 0.3 < result.pass_rate < 0.8
    rules = {r.short_id: r for r in result.rules}
    # the dpkg probe sees the image's packages (our APT_CONFIG, not the host's)
    assert rules["package_audit_installed"].result is RuleStatus.PASS
    assert rules["package_sudo_installed"].result is RuleStatus.PASS
    assert rules["sshd_disable_root_login"].cis_ids == ("5.1.21",)
    assert len(oscap_findings(result)) > 300
    print(
        f"\nOpenSCAP CIS L2 Server: pass rate {result.pass_rate:.1%} "
        f"({c[RuleStatus.PASS]} pass / {c[RuleStatus.FAIL]} fail / {c[RuleStatus.ERROR]} error, "
        f"{c[RuleStatus.NOTAPPLICABLE]} n/a), oscap {result.duration_s:.1f} s, "
        f"total {elapsed:.1f} s"
    )


def test_openscap_reads_absolute_symlinks_inside_the_image(
    rootfs: Path, scratch: Path, content_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sysctl.d entry that is an absolute symlink to a file only the image has: scanned as
    the image sees it it passes; left absolute, oscap would look on the host and fail."""
    ds = ensure_ssg_content(content_cache)
    variant = scratch / "variant"
    subprocess.run(["cp", "-a", str(rootfs), str(variant)], check=True)
    (variant / "etc/goldsmith-it").mkdir()
    (variant / "etc/goldsmith-it/ipfwd.conf").write_text("net.ipv4.ip_forward = 0\n")
    (variant / "etc/sysctl.d/60-ipfwd.conf").symlink_to("/etc/goldsmith-it/ipfwd.conf")
    assert not Path("/etc/goldsmith-it").exists()
    before = fingerprint(variant)

    def ip_forward(work: str) -> RuleStatus:
        r = run_oscap_chroot(variant, ds, CIS_L2_SERVER, work_dir=scratch / work)
        return next(x.result for x in r.rules if x.short_id == "sysctl_net_ipv4_ip_forward")

    assert ip_forward("fixed") is RuleStatus.PASS
    assert fingerprint(variant) == before
    monkeypatch.setattr("goldsmith.scan.openscap.relativize_absolute_symlinks", lambda _r: 0)
    assert ip_forward("host-resolved") is RuleStatus.FAIL  # the trap, reproduced
