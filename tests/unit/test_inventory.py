"""take_inventory / write_inventory / read_inventory on small trees in tmp_path."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from goldsmith.build.inventory import (
    SCHEMA,
    dumps_inventory,
    read_inventory,
    take_inventory,
    write_inventory,
)
from goldsmith.errors import BuildError
from goldsmith.model.records import FileEntry, FileType

STATUS = """\
Package: zlib1g
Status: install ok installed
Architecture: amd64
Version: 1:1.3.dfsg-3+b1

Package: bash
Status: install ok installed
Architecture: amd64
Version: 5.2.37-2
Essential: yes

Package: gone
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0
"""


def _tree(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("gold\n")
    (root / "etc/shadow").write_text("root:*:1::::::\n")
    (root / "etc/shadow").chmod(0o640)
    (root / "usr/bin").mkdir(parents=True)
    su = root / "usr/bin/su"
    su.write_bytes(b"\x7fELF fake su")
    su.chmod(0o4755)
    os.link(su, root / "usr/bin/su-hardlink")
    # an absolute link to a host file: must be recorded, never followed
    (root / "etc/passwd-link").symlink_to("/etc/passwd")
    (root / "lib").symlink_to("usr/lib")
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(STATUS)
    os.mkfifo(root / "var/fifo")
    big = root / "var/big"
    big.write_bytes(os.urandom(3 * 1024 * 1024))
    for i in range(40):
        (root / f"var/small-{i:02d}").write_bytes(f"{i}\n".encode())
    return root


def _by_path(files: tuple[FileEntry, ...]) -> dict[str, FileEntry]:
    return {f.path: f for f in files}


def test_records_every_entry_without_following_symlinks(tmp_path: Path) -> None:
    root = _tree(tmp_path / "root")
    inv = take_inventory(root)
    files = _by_path(inv.files)
    assert "/" not in files  # the root itself is not an entry, as in the exported tar
    link = files["/etc/passwd-link"]
    assert link.type is FileType.SYMLINK
    assert link.target == "/etc/passwd"
    assert link.sha256 is None and link.size == 0
    assert files["/lib"].type is FileType.SYMLINK and files["/lib"].target == "usr/lib"
    # the link into the host was not followed: no host path shows up
    assert not any(p.startswith("/etc/passwd/") for p in files)
    assert files["/var/fifo"].type is FileType.FIFO
    shadow = files["/etc/shadow"]
    assert shadow.mode == 0o640 and shadow.type is FileType.FILE
    assert shadow.sha256 is not None and len(shadow.sha256) == 64
    assert files["/usr/bin/su"].mode == 0o4755
    assert files["/etc/hostname"].size == 5
    # every entry under the root is there, nothing else
    on_disk = {"/" + str(p.relative_to(root)) for p in root.rglob("*")}
    assert set(files) == on_disk


def test_hardlinks_are_two_entries_with_one_content(tmp_path: Path) -> None:
    inv = take_inventory(_tree(tmp_path / "root"))
    files = _by_path(inv.files)
    a, b = files["/usr/bin/su"], files["/usr/bin/su-hardlink"]
    assert a.sha256 == b.sha256 and a.mode == b.mode == 0o4755


def test_sorted_by_path_bytes(tmp_path: Path) -> None:
    root = _tree(tmp_path / "root")
    (root / "etc-b").mkdir()
    (root / "etc/z").write_text("z")
    inv = take_inventory(root)
    paths = [f.path.encode() for f in inv.files]
    assert paths == sorted(paths)
    assert paths.index(b"/etc-b") < paths.index(b"/etc/hostname")


def test_packages_from_dpkg_status(tmp_path: Path) -> None:
    inv = take_inventory(_tree(tmp_path / "root"))
    assert [(p.name, p.version) for p in inv.packages] == [
        ("bash", "5.2.37-2"),
        ("zlib1g", "1:1.3.dfsg-3+b1"),
    ]


def test_parallel_equals_serial_and_runs_are_deterministic(tmp_path: Path) -> None:
    root = _tree(tmp_path / "root")
    serial = take_inventory(root, workers=1)
    parallel = take_inventory(root, workers=8)
    assert serial == parallel
    write_inventory(serial, tmp_path / "a.json")
    write_inventory(take_inventory(root), tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_content_hash_tracks_content(tmp_path: Path) -> None:
    root = _tree(tmp_path / "root")
    before = _by_path(take_inventory(root).files)["/etc/hostname"].sha256
    (root / "etc/hostname").write_text("gold2\n")
    after = _by_path(take_inventory(root).files)["/etc/hostname"].sha256
    assert before != after
    import hashlib

    assert after == hashlib.sha256(b"gold2\n").hexdigest()


def test_json_roundtrip_and_format(tmp_path: Path) -> None:
    root = _tree(tmp_path / "root")
    (root / os.fsdecode(b"odd-\xff-name")).write_text("x")
    inv = take_inventory(root)
    path = tmp_path / "out/inv.json"
    write_inventory(inv, path)
    doc = json.loads(path.read_text())
    assert doc["schema"] == SCHEMA
    assert doc["counts"]["entries"] == len(inv.files)
    assert doc["counts"]["packages"] == 2
    assert doc["total_size"] == sum(f.size for f in inv.files if f.type is FileType.FILE)
    assert doc["total_size"] >= 3 * 1024 * 1024
    assert read_inventory(path) == inv
    assert path.read_text() == dumps_inventory(inv)
    assert not list(path.parent.glob(".*.tmp"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_read_inventory_rejects_other_documents(tmp_path: Path) -> None:
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"schema": "something/v9", "files": []}))
    with pytest.raises(BuildError, match="not a goldsmith inventory"):
        read_inventory(p)
    p.write_text("{not json")
    with pytest.raises(BuildError, match="not valid JSON"):
        read_inventory(p)
    p.write_text(json.dumps({"schema": SCHEMA, "files": [{"path": "/"}], "packages": []}))
    with pytest.raises(BuildError, match="malformed"):
        read_inventory(p)


@pytest.mark.skipif(os.geteuid() != 0, reason="device nodes and chown need root")
def test_devices_and_owners(tmp_path: Path) -> None:
    root = _tree(tmp_path / "root")
    (root / "dev").mkdir()
    os.mknod(root / "dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(root / "dev/loop9", 0o660 | stat.S_IFBLK, os.makedev(7, 9))
    os.chown(root / "etc/shadow", 0, 42)
    os.lchown(root / "lib", 5, 6)
    files = _by_path(take_inventory(root).files)
    assert files["/dev/null"].type is FileType.CHARDEV and files["/dev/null"].device == "1,3"
    assert files["/dev/loop9"].type is FileType.BLOCKDEV and files["/dev/loop9"].device == "7,9"
    assert files["/dev/null"].sha256 is None
    assert (files["/etc/shadow"].uid, files["/etc/shadow"].gid) == (0, 42)
    assert (files["/lib"].uid, files["/lib"].gid) == (5, 6)


@pytest.mark.skipif(shutil.which("setcap") is None, reason="setcap (libcap2-bin) not installed")
@pytest.mark.skipif(os.geteuid() != 0, reason="setting file capabilities needs root")
def test_file_capabilities(tmp_path: Path) -> None:
    root = _tree(tmp_path / "root")
    ping = root / "usr/bin/ping"
    ping.write_bytes(b"fake ping")
    proc = subprocess.run(["setcap", "cap_net_raw+ep", str(ping)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"this filesystem does not take file capabilities: {proc.stderr.strip()}")
    files = _by_path(take_inventory(root).files)
    caps = files["/usr/bin/ping"].caps
    raw = os.getxattr(ping, "security.capability")
    assert caps == raw.hex()
    # vfs_cap_data: cap_net_raw is bit 13 of the permitted set (second little-endian u32)
    permitted = int.from_bytes(raw[4:8], "little")
    assert permitted & (1 << 13)
    assert files["/usr/bin/su"].caps is None


def test_not_a_directory(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(BuildError, match="not a directory"):
        take_inventory(f)
