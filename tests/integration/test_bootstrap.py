"""The real bootstrap of the default profile: contents, cache hit, reproducibility.

The base comes from the run-wide cache the session build uses too; one fresh bootstrap
into a scratch cache for the reproducibility check: two mmdebstrap runs per test session at
most (about 50 s each for the default trixie base with its kernel on this machine).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from goldsmith.build.bootstrap import NODOC_PATH, BaseArtifact, bootstrap_base, unpack_base
from goldsmith.build.finalize import finalize
from goldsmith.build.inventory import take_inventory
from goldsmith.model.profile import Profile
from goldsmith.model.profile_loader import load_profile
from goldsmith.targets.rootfs import RootfsTarget

pytestmark = pytest.mark.integration

# the same cache as the session build in conftest.py: one bootstrap of the default base per run
CACHE = Path(os.environ.get("GOLDSMITH_TEST_CACHE", "/var/cache/goldsmith-test"))
HOSTKEYS = "./etc/ssh/ssh_host_"


@pytest.fixture(scope="session")
def profile() -> Profile:
    return load_profile("nanoclaw-debian13").profile


@pytest.fixture(scope="session")
def base(profile: Profile) -> BaseArtifact:
    # the cache is keyed by the base digest: a changed profile or recipe bootstraps again
    return bootstrap_base(profile, CACHE)


@pytest.fixture
def scratch() -> Iterator[Path]:
    path = Path("/var/tmp") / f"goldsmith-bootstrap-it-{os.getpid()}"
    path.mkdir(parents=True, exist_ok=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


Member = tuple[bytes, int, int, int, int, int, str, str | None, tuple[tuple[str, str], ...]]


def _members(tar: Path) -> dict[str, Member]:
    out: dict[str, Member] = {}
    with tarfile.open(tar) as tf:
        for m in tf:
            digest = None
            if m.isfile():
                fh = tf.extractfile(m)
                assert fh is not None
                digest = hashlib.sha256(fh.read()).hexdigest()
            out[m.name] = (
                m.type,
                m.mode,
                m.uid,
                m.gid,
                m.size,
                m.mtime,
                m.linkname,
                digest,
                tuple(sorted(m.pax_headers.items())),
            )
    return out


def _read(tar: Path, name: str) -> bytes:
    with tarfile.open(tar) as tf:
        fh = tf.extractfile(name)
        assert fh is not None
        return fh.read()


def test_base_contents(base: BaseArtifact, profile: Profile) -> None:
    members = _members(base.tarball)
    names = set(members)
    assert "." + NODOC_PATH in names  # the doc filter stays for later installs
    # no documentation, man pages or translations; copyright files kept
    assert not [n for n in names if n.startswith("./usr/share/man/") and members[n][7]]
    assert not [
        n
        for n in names
        if n.startswith("./usr/share/locale/") and members[n][7] and not n.endswith("locale.alias")
    ]
    docs = [n for n in names if n.startswith("./usr/share/doc/") and members[n][7]]
    assert docs and all(n.endswith("/copyright") for n in docs), docs[:5]
    # the kernel and the requested packages are in; apt lists kept for the package stage
    assert any(n.startswith("./boot/vmlinuz-") for n in names)
    assert any(n.startswith("./var/lib/apt/lists/") and n.endswith("_Packages") for n in names)
    text = _read(base.tarball, "./var/lib/dpkg/status").decode()
    for pkg in [*profile.base.include, profile.base.kernel]:
        assert f"Package: {pkg}\n" in text, pkg
    # SOURCE_DATE_EPOCH clamps every timestamp
    assert max(m[5] for m in members.values()) <= profile.base.source_date_epoch


def test_second_call_is_a_cache_hit(base: BaseArtifact, profile: Profile) -> None:
    start = time.monotonic()
    again = bootstrap_base(profile, CACHE)
    elapsed = time.monotonic() - start
    assert again.cached
    assert again.tarball == base.tarball and again.digest == base.digest
    assert elapsed < 2, f"cache hit took {elapsed:.2f} s"


def test_bootstraps_agree_except_ssh_host_keys(
    base: BaseArtifact, profile: Profile, scratch: Path
) -> None:
    """Two bootstraps with the same inputs are bit-identical except for the SSH host keys that
    openssh-server's postinst generates; after finalize (which removes them) the trees agree.
    """
    fresh = bootstrap_base(profile, scratch / "cache")
    assert not fresh.cached
    a, b = _members(base.tarball), _members(fresh.tarball)
    releases = [n for n in a if n.startswith("./var/lib/apt/lists/") and n.endswith("Release")]
    if any(a[n] != b.get(n) for n in releases):
        # the mirror moved since the cached base was made: compare two bases of the same day
        base = bootstrap_base(profile, CACHE, refresh=True)
        a = _members(base.tarball)
    differ = sorted(n for n in set(a) | set(b) if a.get(n) != b.get(n))
    assert differ, "the host keys should differ (random) unless openssh-server left the base"
    assert all(n.startswith(HOSTKEYS) for n in differ), differ

    inventories = []
    for name, art in (("a", base), ("b", fresh)):
        root = scratch / name
        unpack_base(art, root)
        target = RootfsTarget(root)
        with target.session():
            finalize(target, hostname=profile.image.hostname)
        inventories.append(take_inventory(root))
    assert inventories[0] == inventories[1]
    assert not [f for f in inventories[0].files if f.path.startswith("/etc/ssh/ssh_host_")]
