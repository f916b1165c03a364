"""finalize on a fake rootfs in tmp_path (through the real confined RootfsTarget)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from goldsmith.build.finalize import HOSTKEY_UNIT, HOSTKEY_UNIT_PATH, HOSTKEY_UNIT_TEXT, finalize
from goldsmith.targets.base import RunResult
from goldsmith.targets.rootfs import RootfsTarget


class RecordingTarget(RootfsTarget):
    """Answers `apt-get clean` like apt does (removes the .deb files), records commands."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.commands: list[tuple[str, ...]] = []

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        yield

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> RunResult:
        self.commands.append(tuple(argv))
        if tuple(argv) == ("apt-get", "clean"):
            for deb in (self.root / "var/cache/apt/archives").glob("*.deb"):
                deb.unlink()
            for binf in (self.root / "var/cache/apt").glob("*.bin"):
                binf.unlink()
            return RunResult(tuple(argv), 0, "", "")
        return RunResult(tuple(argv), 127, "", "unexpected command")


def _w(root: Path, path: str, data: str = "x", mode: int = 0o644) -> Path:
    p = root / path.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(data)
    p.chmod(mode)
    return p


def _image(root: Path) -> Path:
    _w(root, "/usr/bin/apt-get", "#!/bin/sh\n", 0o755)
    _w(root, "/usr/bin/ssh-keygen", "#!/bin/sh\n", 0o755)
    _w(root, "/var/lib/apt/lists/deb.debian.org_debian_dists_trixie_InRelease", "r")
    _w(root, "/var/lib/apt/lists/deb.debian.org_debian_dists_trixie_main_binary-amd64_Packages")
    _w(root, "/var/lib/apt/lists/lock", "", 0o640)
    _w(root, "/var/lib/apt/lists/partial/half-downloaded")
    _w(root, "/var/cache/apt/archives/nodejs_20_amd64.deb")
    _w(root, "/var/cache/apt/archives/lock", "", 0o640)
    (root / "var/cache/apt/archives/partial").mkdir()
    _w(root, "/var/cache/apt/pkgcache.bin")
    _w(root, "/var/cache/debconf/templates.dat-old")
    _w(root, "/var/cache/debconf/templates.dat", "keep")
    _w(root, "/var/lib/dpkg/status-old")
    _w(root, "/var/lib/dpkg/status", "keep")
    _w(root, "/var/log/dpkg.log", "2026-01-01 install nodejs\n", 0o640)
    _w(root, "/var/log/dpkg.log.1", "older\n")
    _w(root, "/var/log/apt/history.log", "Start-Date: 2026\n")
    _w(root, "/var/log/apt/eipp.log.xz", "xz")
    _w(root, "/var/log/btmp", "bad logins", 0o660)
    os.chown(root / "var/log/btmp", 0, 43)
    _w(root, "/var/log/wtmp", "", 0o664)
    (root / "var/log/journal").mkdir()
    _w(root, "/tmp/build-scratch")
    _w(root, "/tmp/.hidden/file")
    _w(root, "/var/tmp/x/y")
    for kind in ("ed25519", "rsa"):
        _w(root, f"/etc/ssh/ssh_host_{kind}_key", "PRIVATE", 0o600)
        _w(root, f"/etc/ssh/ssh_host_{kind}_key.pub", "PUBLIC")
    _w(root, "/etc/ssh/sshd_config", "keep")
    _w(root, "/etc/machine-id", "0123456789abcdef0123456789abcdef\n")
    _w(root, "/var/lib/dbus/machine-id", "0123456789abcdef0123456789abcdef\n")
    _w(root, "/var/lib/systemd/random-seed", "seed", 0o600)
    _w(root, "/var/cache/ldconfig/aux-cache", "inode-dependent", 0o600)
    _w(root, "/var/lib/systemd/credential.secret", "secret", 0o400)
    _w(root, "/etc/hostname", "buildhost\n", 0o755)
    _w(root, "/etc/hosts", "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost\n")
    return root


def _names(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()}


def test_finalize_strips_caches_identity_and_logs(tmp_path: Path) -> None:
    root = _image(tmp_path / "root")
    t = RecordingTarget(root)
    changes = finalize(t, hostname="nanoclaw")
    assert ("apt-get", "clean") in t.commands

    assert _names(root / "var/lib/apt/lists") == {"partial"}
    assert _names(root / "var/lib/apt/lists/partial") == set()
    assert _names(root / "var/cache/apt/archives") == {"lock", "partial"}
    assert not (root / "var/cache/apt/pkgcache.bin").exists()
    assert _names(root / "var/cache/debconf") == {"templates.dat"}
    assert _names(root / "var/lib/dpkg") == {"status"}
    assert _names(root / "tmp") == set() and _names(root / "var/tmp") == set()
    assert _names(root / "etc/ssh") == {"sshd_config"}

    # logs: emptied with owner and mode kept; rotated ones removed; directories stay
    assert (root / "var/log/dpkg.log").read_text() == ""
    assert (root / "var/log/dpkg.log").stat().st_mode & 0o7777 == 0o640
    btmp = (root / "var/log/btmp").stat()
    assert (btmp.st_size, btmp.st_mode & 0o7777, btmp.st_gid) == (0, 0o660, 43)
    assert not (root / "var/log/dpkg.log.1").exists()
    assert _names(root / "var/log/apt") == {"history.log"}
    assert (root / "var/log/journal").is_dir()

    mid = root / "etc/machine-id"
    assert mid.read_bytes() == b"" and mid.stat().st_mode & 0o7777 == 0o444
    dbus = root / "var/lib/dbus/machine-id"
    assert dbus.is_symlink() and os.readlink(dbus) == "/etc/machine-id"
    assert not (root / "var/lib/systemd/random-seed").exists()
    assert not (root / "var/cache/ldconfig/aux-cache").exists()
    assert not (root / "var/lib/systemd/credential.secret").exists()

    unit = root / HOSTKEY_UNIT_PATH.lstrip("/")
    assert unit.read_text() == HOSTKEY_UNIT_TEXT
    assert "ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key" in HOSTKEY_UNIT_TEXT
    assert "ExecStart=/usr/bin/ssh-keygen -A" in HOSTKEY_UNIT_TEXT
    assert "Before=ssh.service" in HOSTKEY_UNIT_TEXT
    for wanted_by in ("multi-user.target", "ssh.service"):
        link = root / f"etc/systemd/system/{wanted_by}.wants/{HOSTKEY_UNIT}"
        assert os.readlink(link) == HOSTKEY_UNIT_PATH

    hostname = root / "etc/hostname"
    assert hostname.read_text() == "nanoclaw\n" and hostname.stat().st_mode & 0o777 == 0o644
    assert "127.0.1.1\tnanoclaw" in (root / "etc/hosts").read_text().splitlines()

    # every change is attributed to finalize and names what it touched
    assert {c.control for c in changes} == {"image.finalize"}
    objects = {c.object for c in changes}
    for expected in (
        "/etc/ssh/ssh_host_ed25519_key",
        "/var/lib/dpkg/status-old",
        "/var/log/dpkg.log",
        "/var/log/dpkg.log.1",
        "/etc/machine-id",
        "/etc/hostname",
        "/tmp/.hidden",
        "/var/cache/apt",
        HOSTKEY_UNIT_PATH,
    ):
        assert expected in objects, expected
    log_change = next(c for c in changes if c.object == "/var/log/dpkg.log")
    assert log_change.before is not None and log_change.before.startswith("sha256:")


def test_finalize_twice_changes_nothing(tmp_path: Path) -> None:
    root = _image(tmp_path / "root")
    t = RecordingTarget(root)
    assert finalize(t, hostname="nanoclaw")
    assert finalize(t, hostname="nanoclaw") == []


def test_finalize_without_ssh_or_apt(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _w(root, "/etc/machine-id", "")
    (root / "etc/machine-id").chmod(0o444)
    t = RecordingTarget(root)
    changes = finalize(t)
    assert t.commands == []  # no apt-get in the image: nothing run
    assert not (root / HOSTKEY_UNIT_PATH.lstrip("/")).exists()
    assert changes == []


@pytest.mark.parametrize("hostname", ["gold-1", "a"])
def test_hostname_replaces_old_127_0_1_1(tmp_path: Path, hostname: str) -> None:
    root = tmp_path / "root"
    _w(root, "/etc/hosts", "127.0.0.1\tlocalhost\n127.0.1.1\tbuildhost\n")
    finalize(RecordingTarget(root), hostname=hostname)
    lines = (root / "etc/hosts").read_text().splitlines()
    assert lines == ["127.0.0.1\tlocalhost", f"127.0.1.1\t{hostname}"]
