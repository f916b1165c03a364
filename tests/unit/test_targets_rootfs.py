"""Normal behaviour of RootfsTarget on a small fake root (no chroot, no mounts)."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from goldsmith.errors import TargetError, ValidationFailedError
from goldsmith.model.records import FileType
from goldsmith.targets.base import RunResult
from goldsmith.targets.rootfs import RootfsTarget

IS_ROOT = os.geteuid() == 0


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc" / "ssh" / "sshd_config.d").mkdir(parents=True)
    (r / "etc" / "ssh" / "sshd_config").write_text("PermitRootLogin yes\n")
    (r / "etc" / "ssh" / "sshd_config.d" / "10-a.conf").write_text("a\n")
    (r / "etc" / "ssh" / "sshd_config.d" / ".hidden.conf").write_text("h\n")
    (r / "etc" / "sysctl.conf").write_text("x=1\n")
    (r / "etc" / "os-release").symlink_to("../usr/lib/os-release")
    (r / "usr" / "lib").mkdir(parents=True)
    (r / "usr" / "lib" / "os-release").write_text("ID=debian\n")
    (r / "usr" / "lib" / "sysctl.d").mkdir()
    (r / "usr" / "lib" / "sysctl.d" / "50-default.conf").write_text("y=2\n")
    (r / "etc" / "dangling").symlink_to("/nowhere")
    return r


@pytest.fixture
def t(root: Path) -> RootfsTarget:
    return RootfsTarget(root)


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if "goldsmith-tmp" in p.name]


# reading -----------------------------------------------------------------------------------
def test_read(t: RootfsTarget) -> None:
    assert t.read_text("/etc/ssh/sshd_config") == "PermitRootLogin yes\n"
    assert t.read_bytes("/etc/os-release") == b"ID=debian\n"  # relative link followed
    assert t.read_text("//etc/./ssh/../ssh/sshd_config") == "PermitRootLogin yes\n"


@pytest.mark.parametrize(
    "path", ["/etc/missing", "/etc/ssh", "/etc/dangling", "/etc/sysctl.conf/x"]
)
def test_read_errors(t: RootfsTarget, path: str) -> None:
    with pytest.raises(TargetError):
        t.read_bytes(path)


@pytest.mark.parametrize("path", ["etc/passwd", "", "relative"])
def test_relative_paths_are_refused(t: RootfsTarget, path: str) -> None:
    with pytest.raises(TargetError, match="absolute"):
        t.read_bytes(path)


def test_read_refuses_fifo_without_blocking(t: RootfsTarget, root: Path) -> None:
    os.mkfifo(root / "etc" / "fifo")
    with pytest.raises(TargetError, match="not a regular file"):
        t.read_bytes("/etc/fifo")


@pytest.mark.skipif(not IS_ROOT, reason="mknod needs root")
def test_read_refuses_device_nodes(t: RootfsTarget, root: Path) -> None:
    # an image's device node is a handle on the host's device
    os.mknod(root / "etc" / "shadow", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    with pytest.raises(TargetError, match="not a regular file"):
        t.read_bytes("/etc/shadow")
    st = t.lstat("/etc/shadow")
    assert st is not None and st.type is FileType.CHARDEV


def test_exists(t: RootfsTarget) -> None:
    assert t.exists("/etc/ssh/sshd_config")
    assert t.exists("/etc/os-release")
    assert t.exists("/")
    assert not t.exists("/etc/missing")
    assert not t.exists("/etc/dangling")
    assert not t.exists("/etc/sysctl.conf/below-a-file")


def test_lstat_and_stat(t: RootfsTarget, root: Path) -> None:
    (root / "etc" / "sysctl.conf").chmod(0o4640)
    st = t.stat("/etc/sysctl.conf")
    assert st is not None
    assert (st.type, st.mode, st.size) == (FileType.FILE, 0o4640, 4)
    assert st.uid == os.geteuid()
    link = t.lstat("/etc/os-release")
    assert link is not None and link.type is FileType.SYMLINK
    target = t.stat("/etc/os-release")
    assert target is not None and target.type is FileType.FILE and target.size == 10
    assert t.stat("/etc/dangling") is None
    assert t.lstat("/etc/dangling") is not None
    assert t.stat("/missing") is None
    d = t.stat("/etc")
    assert d is not None and d.type is FileType.DIR


def test_readlink(t: RootfsTarget) -> None:
    assert t.readlink("/etc/os-release") == "../usr/lib/os-release"
    assert t.readlink("/etc/dangling") == "/nowhere"
    with pytest.raises(TargetError, match="not a symlink"):
        t.readlink("/etc/sysctl.conf")
    with pytest.raises(TargetError):
        t.readlink("/etc/missing")


def test_listdir(t: RootfsTarget) -> None:
    assert t.listdir("/etc/ssh/sshd_config.d") == [".hidden.conf", "10-a.conf"]
    assert t.listdir("/") == ["etc", "usr"]
    with pytest.raises(TargetError, match="not a directory"):
        t.listdir("/etc/sysctl.conf")
    with pytest.raises(TargetError):
        t.listdir("/missing")


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("/etc/*.conf", ["/etc/sysctl.conf"]),
        ("/etc/ssh/sshd_config.d/*", ["/etc/ssh/sshd_config.d/10-a.conf"]),
        ("/etc/ssh/sshd_config.d/.*", ["/etc/ssh/sshd_config.d/.hidden.conf"]),
        ("/etc/ssh/sshd_config", ["/etc/ssh/sshd_config"]),
        ("/etc/ssh/missing", []),
        ("/missing/*", []),
        ("/etc/sysctl.conf/*", []),
        ("/*/lib/sysctl.d/*.conf", ["/usr/lib/sysctl.d/50-default.conf"]),
        ("/etc/**/*.conf", ["/etc/ssh/sshd_config.d/10-a.conf", "/etc/sysctl.conf"]),
        ("/etc/dang*", ["/etc/dangling"]),
        ("/etc/os-re?ease", ["/etc/os-release"]),
        ("/etc/[st]*", ["/etc/ssh", "/etc/sysctl.conf"]),
    ],
)
def test_glob(t: RootfsTarget, pattern: str, expected: list[str]) -> None:
    assert t.glob(pattern) == expected


def test_glob_through_symlinked_directory(t: RootfsTarget, root: Path) -> None:
    (root / "etc" / "sysctl.d").symlink_to("/usr/lib/sysctl.d")
    assert t.glob("/etc/sysctl.d/*.conf") == ["/etc/sysctl.d/50-default.conf"]


# writing -----------------------------------------------------------------------------------
def test_write_new_and_replace(t: RootfsTarget, root: Path) -> None:
    t.write_text("/etc/new.conf", "hello\n", mode=0o600)
    p = root / "etc" / "new.conf"
    assert p.read_text() == "hello\n"
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    inode = p.stat().st_ino
    t.write_bytes("/etc/new.conf", b"again\n", mode=0o644)
    assert p.read_bytes() == b"again\n"
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    assert p.stat().st_ino != inode  # replaced by rename, not rewritten in place
    assert leftovers(root / "etc") == []


def test_write_mode_ignores_umask(t: RootfsTarget, root: Path) -> None:
    old = os.umask(0o077)
    try:
        t.write_text("/etc/motd", "hi\n", mode=0o644)
        t.mkdir("/etc/d1", 0o755)
        t.mkdir("/x/y/z", 0o750, parents=True)
    finally:
        os.umask(old)
    assert stat.S_IMODE((root / "etc" / "motd").stat().st_mode) == 0o644
    assert stat.S_IMODE((root / "etc" / "d1").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "x").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "x" / "y" / "z").stat().st_mode) == 0o750


@pytest.mark.skipif(not IS_ROOT, reason="chown needs root")
def test_write_owner_and_setuid_survive(t: RootfsTarget, root: Path) -> None:
    t.write_bytes("/etc/tool", b"#!/bin/sh\n", mode=0o4755, uid=1000, gid=1001)
    st = (root / "etc" / "tool").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1001, 0o4755)


def test_write_replaces_a_symlink_instead_of_writing_through(t: RootfsTarget, root: Path) -> None:
    t.write_text("/etc/os-release", "ID=goldsmith\n")
    assert not (root / "etc" / "os-release").is_symlink()
    assert (root / "etc" / "os-release").read_text() == "ID=goldsmith\n"
    assert (root / "usr" / "lib" / "os-release").read_text() == "ID=debian\n"


def test_write_through_symlinked_parent_directory(t: RootfsTarget, root: Path) -> None:
    (root / "etc" / "sysctl.d").symlink_to("../usr/lib/sysctl.d")
    t.write_text("/etc/sysctl.d/99-x.conf", "z=3\n")
    assert (root / "usr" / "lib" / "sysctl.d" / "99-x.conf").read_text() == "z=3\n"


@pytest.mark.parametrize("path", ["/missing/file", "/etc/ssh", "/", "/etc/sysctl.conf/x"])
def test_write_errors(t: RootfsTarget, path: str) -> None:
    with pytest.raises(TargetError):
        t.write_text(path, "x")


class ValidatingRootfs(RootfsTarget):
    """run() executes on the host with in-image paths mapped into the root; stands in for
    the chroot (which needs root and mounts, see tests/integration/test_chroot_run.py)."""

    def __init__(self, root: Path, interrupt: bool = False) -> None:
        super().__init__(root)
        self.calls: list[list[str]] = []
        self.interrupt = interrupt

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> RunResult:
        self.calls.append(list(argv))
        if self.interrupt:
            raise KeyboardInterrupt
        host_argv = [str(self.root) + a if a.endswith(".goldsmith-tmp") else a for a in argv]
        proc = subprocess.run(host_argv, capture_output=True, text=True, check=False)
        return RunResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)


def test_validator_rejects_keeps_old_content(root: Path) -> None:
    t = ValidatingRootfs(root)
    validator = [
        "/usr/bin/env",
        "sh",
        "-c",
        'grep -q "^PermitRootLogin no$" "$1" || { echo "bad config" >&2; exit 1; }',
        "sh",
        "%s",
    ]
    with pytest.raises(ValidationFailedError, match="bad config"):
        t.write_text("/etc/ssh/sshd_config", "PermitRootLogin maybe\n", validate=validator)
    assert (root / "etc" / "ssh" / "sshd_config").read_text() == "PermitRootLogin yes\n"
    assert leftovers(root / "etc" / "ssh") == []
    tmp_arg = t.calls[0][-1]
    assert tmp_arg.startswith("/etc/ssh/.sshd_config.") and tmp_arg.endswith(".goldsmith-tmp")


def test_validator_accepts_writes_new_content(root: Path) -> None:
    t = ValidatingRootfs(root)
    t.write_text(
        "/etc/ssh/sshd_config",
        "PermitRootLogin no\n",
        validate=["/usr/bin/env", "grep", "-q", "PermitRootLogin no", "%s"],
    )
    assert (root / "etc" / "ssh" / "sshd_config").read_text() == "PermitRootLogin no\n"
    assert leftovers(root / "etc" / "ssh") == []
    assert len(t.calls) == 1


def test_validator_sees_the_real_content_and_mode(root: Path) -> None:
    t = ValidatingRootfs(root)
    t.write_text(
        "/etc/secret",
        "s3cret\n",
        mode=0o600,
        validate=[
            "/usr/bin/env",
            "sh",
            "-c",
            'test "$(stat -c %a "$1")" = 600 && grep -qx s3cret "$1"',
            "sh",
            "%s",
        ],
    )
    assert (root / "etc" / "secret").read_text() == "s3cret\n"


def test_validator_without_placeholder_is_refused(root: Path) -> None:
    t = ValidatingRootfs(root)
    with pytest.raises(TargetError, match="%s"):
        t.write_text("/etc/x", "x", validate=["true"])
    assert not (root / "etc" / "x").exists()


def test_interrupt_during_validation_leaves_no_temp_file(root: Path) -> None:
    t = ValidatingRootfs(root, interrupt=True)
    with pytest.raises(KeyboardInterrupt):
        t.write_text("/etc/sysctl.conf", "new\n", validate=["check", "%s"])
    assert (root / "etc" / "sysctl.conf").read_text() == "x=1\n"
    assert leftovers(root / "etc") == []


def test_chmod_follows_link(t: RootfsTarget, root: Path) -> None:
    t.chmod("/etc/os-release", 0o600)
    assert stat.S_IMODE((root / "usr" / "lib" / "os-release").stat().st_mode) == 0o600
    t.chmod("/etc/ssh", 0o700)
    assert stat.S_IMODE((root / "etc" / "ssh").stat().st_mode) == 0o700
    with pytest.raises(TargetError):
        t.chmod("/etc/dangling", 0o600)


@pytest.mark.skipif(not IS_ROOT, reason="chown needs root")
def test_chown(t: RootfsTarget, root: Path) -> None:
    t.chown("/etc/sysctl.conf", 1000, 1002)
    st = (root / "etc" / "sysctl.conf").stat()
    assert (st.st_uid, st.st_gid) == (1000, 1002)
    t.chown("/etc/os-release", 1003, 1003)  # the link itself, like chown -h
    assert (root / "etc" / "os-release").lstat().st_uid == 1003
    assert (root / "usr" / "lib" / "os-release").stat().st_uid == 0
    t.chown("/", 0, 0)
    with pytest.raises(TargetError):
        t.chown("/missing", 0, 0)


def test_mkdir(t: RootfsTarget, root: Path) -> None:
    t.mkdir("/var", 0o755)
    assert (root / "var").is_dir()
    t.mkdir("/var", 0o700)  # existing directory: left as it is
    assert stat.S_IMODE((root / "var").stat().st_mode) == 0o755
    with pytest.raises(TargetError):
        t.mkdir("/a/b/c")
    t.mkdir("/a/b/c", 0o700, parents=True)
    assert (root / "a" / "b" / "c").is_dir()
    with pytest.raises(TargetError, match="not a directory"):
        t.mkdir("/etc/sysctl.conf")


def test_unlink(t: RootfsTarget, root: Path) -> None:
    t.unlink("/etc/sysctl.conf")
    assert not (root / "etc" / "sysctl.conf").exists()
    t.unlink("/etc/os-release")
    assert not (root / "etc" / "os-release").is_symlink()
    assert (root / "usr" / "lib" / "os-release").exists()
    t.unlink("/etc/dangling")
    with pytest.raises(TargetError, match="is a directory"):
        t.unlink("/etc/ssh")
    with pytest.raises(TargetError):
        t.unlink("/etc/sysctl.conf")


def test_rmtree(t: RootfsTarget, root: Path) -> None:
    (root / "etc" / "ssh" / "libs").symlink_to("/usr/lib")
    (root / "etc" / "ssh" / "deep" / "er").mkdir(parents=True)
    (root / "etc" / "ssh" / "deep" / "er" / "f").write_text("f")
    t.rmtree("/etc/ssh")
    assert not (root / "etc" / "ssh").exists()
    assert (root / "usr" / "lib" / "os-release").exists()  # link in the tree not followed
    t.rmtree("/etc/sysctl.conf")  # a single file
    assert not (root / "etc" / "sysctl.conf").exists()
    with pytest.raises(TargetError):
        t.rmtree("/")
    with pytest.raises(TargetError):
        t.rmtree("/missing")


def test_symlink(t: RootfsTarget, root: Path) -> None:
    t.symlink("/lib/systemd/system/rescue.target", "/etc/default.target")
    assert os.readlink(root / "etc" / "default.target") == "/lib/systemd/system/rescue.target"
    with pytest.raises(TargetError, match="exists"):
        t.symlink("x", "/etc/default.target")
    with pytest.raises(TargetError):
        t.symlink("x", "/missing/dir/link")


def test_root_must_exist(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="cannot open target root"):
        RootfsTarget(tmp_path / "nope")


def test_no_descriptor_leaks(t: RootfsTarget) -> None:
    def count() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = count()
    for _ in range(50):
        t.read_bytes("/etc/os-release")
        t.exists("/etc/missing")
        t.glob("/etc/**/*")
        with pytest.raises(TargetError):
            t.read_bytes("/etc/dangling")
        t.write_text("/etc/x", "x")
    assert count() == before
