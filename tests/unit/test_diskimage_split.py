"""Splitting a rootfs into one tree per filesystem, and tree digests of a tar (needs root
for chown and trusted xattrs; skipped otherwise)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from goldsmith.build.diskimage import compute_layout, split_trees
from goldsmith.build.export import export_rootfs_tar, rootfs_digest, tar_digest, tree_entries
from goldsmith.errors import BuildError
from goldsmith.model.profile import Profile

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, xattrs)")


def _rootfs(root: Path) -> None:
    for d in ("etc", "usr/bin", "var/log/apt", "var/tmp", "tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "var/tmp").chmod(0o1777)
    (root / "var/log").chmod(0o755)
    os.chown(root / "var/log", 0, 4)
    (root / "var/log/apt/history.log").write_text("x\n")
    (root / "usr/bin/ping").write_bytes(b"\x7fELF ping")
    os.setxattr(root / "usr/bin/ping", "security.capability", bytes.fromhex("01000002" + "00" * 16))
    os.link(root / "usr/bin/ping", root / "usr/bin/ping-link")
    (root / "etc/fstab").write_text("old\n")


def test_split_moves_subtrees_and_keeps_mountpoints(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    _rootfs(root)
    before = rootfs_digest(root)
    layout = compute_layout(Profile(name="t"))
    trees = split_trees(root, layout, tmp_path / "farm")
    assert rootfs_digest(root) == before  # the caller's tree is untouched
    assert set(trees) == {"/", "/var/tmp", "/var/log", "/var/log/audit"}
    log_tree = trees["/var/log"]
    assert (log_tree / "apt/history.log").read_text() == "x\n"
    # the nested filesystem's mount point stays in /var/log as an empty directory
    assert (log_tree / "audit").is_dir() and not any((log_tree / "audit").iterdir())
    root_tree = trees["/"]
    assert not any((root_tree / "var/log").iterdir())
    st = (root_tree / "var/log").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 4, 0o755)
    assert (root_tree / "var/tmp").stat().st_mode & 0o7777 == 0o1777
    assert (trees["/var/tmp"]).stat().st_mode & 0o7777 == 0o1777
    assert os.getxattr(root_tree / "usr/bin/ping", "security.capability")[:4] == b"\x01\x00\x00\x02"


def test_split_refuses_a_symlinked_mountpoint(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    _rootfs(root)
    (root / "var/tmp").rmdir()
    (root / "var/tmp").symlink_to("/tmp")
    with pytest.raises(BuildError, match="/var/tmp"):
        split_trees(root, compute_layout(Profile(name="t")), tmp_path / "farm")


def test_tar_digest_equals_tree_digest(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    _rootfs(root)
    tar = tmp_path / "rootfs.tar.zst"
    export_rootfs_tar(root, tar, source_date_epoch=1767225600)
    assert tar_digest(tar) == rootfs_digest(root)
    links = [e for e in tree_entries(root) if e.link]
    assert [(e.path, e.link) for e in links] == [("/usr/bin/ping-link", "/usr/bin/ping")]
    # a capability change is a different tree
    os.setxattr(root / "usr/bin/ping", "security.capability", bytes.fromhex("01000002" + "11" * 16))
    assert rootfs_digest(root) != tar_digest(tar)
