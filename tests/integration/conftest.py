"""Integration fixtures: one real build of the default profile per test run, reused by all.

These tests need root, mmdebstrap, QEMU and the Debian mirror. `make test` installs the tools;
set GOLDSMITH_SKIP_INTEGRATION=1 to run only the fast tests on a machine without them.
The base rootfs cache lives in GOLDSMITH_TEST_CACHE (default /var/cache/goldsmith-test) so a
developer's second run skips the bootstrap; CI on a fresh machine bootstraps once.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from goldsmith.model.profile_loader import LoadedProfile, load_profile
from goldsmith.pipeline.build import BuildOptions, BuildResult, build_image

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
