"""Integration fixtures: one real build of the default profile per test run, reused by all.

These tests need root, mmdebstrap, QEMU and the Debian mirror. `make test` installs the tools;
set GOLDSMITH_SKIP_INTEGRATION=1 to run only the fast tests on a machine without them.
The base rootfs cache lives in GOLDSMITH_TEST_CACHE (default /var/cache/goldsmith-test) so a
developer's second run skips the bootstrap; CI on a fresh machine bootstraps once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from goldsmith.boot.boottest import BoottestOptions, BoottestResult, run_boottest
from goldsmith.model.profile_loader import LoadedProfile, load_profile
from goldsmith.pipeline.build import BuildOptions, BuildResult, build_image
from goldsmith.scan.exceptions import load_exceptions
from goldsmith.scan.formats import write_reports
from goldsmith.scan.merge import ScanReport
from goldsmith.scan.run import ScanOptions, scan_rootfs

TEST_CACHE = Path(os.environ.get("GOLDSMITH_TEST_CACHE", "/var/cache/goldsmith-test"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reasons: list[str] = []
    if os.environ.get("GOLDSMITH_SKIP_INTEGRATION") == "1":
        reasons.append("GOLDSMITH_SKIP_INTEGRATION=1")
    elif os.geteuid() != 0:
        reasons.append("integration tests need root (chroot, mounts, loop devices)")
    if not reasons:
        return
    skip = pytest.mark.skip(reason="; ".join(reasons))
    for item in items:
        if "integration" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def test_cache() -> Path:
    """The base-rootfs cache shared by every integration test of this run (and later runs)."""
    TEST_CACHE.mkdir(parents=True, exist_ok=True)
    return TEST_CACHE


@pytest.fixture(scope="session")
def default_profile() -> LoadedProfile:
    return load_profile("nanoclaw-debian13")


@pytest.fixture(scope="session")
def out_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = Path("/var/tmp") / f"goldsmith-it-{os.getpid()}"
    path.mkdir(parents=True, exist_ok=True)
    yield path
    if os.environ.get("GOLDSMITH_KEEP_IT_OUTPUT") == "1":  # to read the results afterwards
        return
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def built(default_profile: LoadedProfile, out_root: Path) -> BuildResult:
    """The default gold image, built once for the whole run (disk images included)."""
    return build_image(
        default_profile,
        BuildOptions(out_root=out_root / "first", cache_dir=TEST_CACHE, disk_image=True),
    )


# the hardened rootfs, scanned once with all three scanners (test_scan_rootfs, test_gates)
def _tree_digest(root: Path) -> str:
    # every path with type, mode, owner, size, mtime and link target; content via sha256sum
    script = (
        "find . -xdev -printf '%p %y %m %U %G %s %T@ %l\\n' | LC_ALL=C sort | sha256sum; "
        "find . -xdev -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum"
    )
    res = subprocess.run(["sh", "-c", script], cwd=root, capture_output=True, text=True, check=True)
    return res.stdout


@pytest.fixture(scope="session")
def hardened_rootfs(built: BuildResult, out_root: Path) -> Iterator[Path]:
    root = out_root / "scan-rootfs"
    root.mkdir()
    subprocess.run(["tar", "--zstd", "-xpf", str(built.rootfs_tar), "-C", str(root)], check=True)
    yield root
    subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=True)


@pytest.fixture(scope="session")
def scanned(
    hardened_rootfs: Path, default_profile: LoadedProfile, out_root: Path, test_cache: Path
) -> tuple[ScanReport, str, str, Path]:
    before = _tree_digest(hardened_rootfs)
    out = out_root / "scan-results"
    report = scan_rootfs(
        hardened_rootfs,
        default_profile,
        ScanOptions(work_dir=out, cache_dir=test_cache),
    )
    write_reports(report, out)
    return report, before, _tree_digest(hardened_rootfs), out


# ONE boot of the default image for every boot assertion (test_boottest, test_gates)
@pytest.fixture(scope="session")
def work_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = Path("/var/tmp") / f"goldsmith-boottest-it-{tmp_path_factory.getbasetemp().name}"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def boot(
    built: BuildResult, default_profile: LoadedProfile, test_cache: Path, work_root: Path
) -> BoottestResult:
    return run_boottest(
        built.out_dir,
        default_profile.profile,
        # Lynis and OpenSCAP inside a TCG guest take 15-30 minutes each here (a KVM guest:
        # about a minute): the CI budget cannot carry them. `make image` runs them; here the
        # chroot Lynis and oscap-chroot of the session's rootfs scan stand in.
        BoottestOptions(
            cache_dir=test_cache,
            work_root=work_root,
            guest_lynis=False,
            guest_openscap=False,
            exceptions=tuple(load_exceptions(default_profile)),
        ),
    )
