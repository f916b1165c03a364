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
from _background_boot import BackgroundBoot

from goldsmith.boot.boottest import BoottestResult
from goldsmith.model.profile_loader import LoadedProfile, load_profile
from goldsmith.pipeline.build import BuildOptions, BuildResult, build_image
from goldsmith.scan.formats import write_reports
from goldsmith.scan.merge import ScanReport
from goldsmith.scan.run import ScanOptions, scan_rootfs

TEST_CACHE = Path(os.environ.get("GOLDSMITH_TEST_CACHE", "/var/cache/goldsmith-test"))
BOOT_WANTED = pytest.StashKey[bool]()
BOOT = pytest.StashKey[BackgroundBoot]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reasons: list[str] = []
    if os.environ.get("GOLDSMITH_SKIP_INTEGRATION") == "1":
        reasons.append("GOLDSMITH_SKIP_INTEGRATION=1")
    elif os.geteuid() != 0:
        reasons.append("integration tests need root (chroot, mounts, loop devices)")
    if not reasons:
        # the tests that need the session's boot test go last, and the boot starts in the
        # background as soon as the image is built (see _background_boot): so the tests of
        # the built image go first, and everything else runs while the image boots
        def uses(item: pytest.Item, name: str) -> bool:
            return name in getattr(item, "fixturenames", ())

        booting = [i for i in items if uses(i, "boot")]
        if booting:
            first = [i for i in items if uses(i, "built") and not uses(i, "boot")]
            rest = [i for i in items if not uses(i, "built") and not uses(i, "boot")]
            items[:] = first + rest + booting
            config.stash[BOOT_WANTED] = True
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
def built(
    default_profile: LoadedProfile, out_root: Path, work_root: Path, request: pytest.FixtureRequest
) -> BuildResult:
    """The default gold image, built once for the whole run (disk images included); if the
    run has tests that need the boot test, it starts now, in the background."""
    result = build_image(
        default_profile,
        BuildOptions(out_root=out_root / "first", cache_dir=TEST_CACHE, disk_image=True),
    )
    if request.config.stash.get(BOOT_WANTED, False):
        _start_boot(request, result.out_dir, work_root, out_root)
    return result


def _start_boot(
    request: pytest.FixtureRequest, out_dir: Path, work_root: Path, scratch: Path
) -> BackgroundBoot:
    bg = BackgroundBoot.start(out_dir, work_root, TEST_CACHE, scratch)
    request.config.stash[BOOT] = bg
    request.addfinalizer(bg.stop)  # the run ended (or was cut) before it did
    return bg


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
    built: BuildResult, work_root: Path, out_root: Path, request: pytest.FixtureRequest
) -> BoottestResult:
    bg = request.config.stash.get(BOOT, None)
    if bg is None:  # not started with the build (BOOT_WANTED unset): start it now
        bg = _start_boot(request, built.out_dir, work_root, out_root)
    return bg.wait(timeout=2700)
