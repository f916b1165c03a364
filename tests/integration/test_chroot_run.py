"""RootfsTarget.run() in a real (tiny) Debian 13 rootfs: pseudo-filesystems are there while
commands run and gone afterwards -- after success, failure, timeout, interrupt, and with a
process left running in the image -- and policy-rc.d keeps services from starting.

Needs root and mmdebstrap with the Debian mirror; the essential rootfs tarball (~10 s to
build) is cached in GOLDSMITH_TEST_CACHE (default /var/cache/goldsmith-test).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from goldsmith.errors import BuildError, TargetEscapeError, ValidationFailedError
from goldsmith.targets.rootfs import RootfsTarget

pytestmark = pytest.mark.integration

TEST_CACHE = Path(os.environ.get("GOLDSMITH_TEST_CACHE", "/var/cache/goldsmith-test"))
MIRROR = os.environ.get("GOLDSMITH_TEST_MIRROR", "http://deb.debian.org/debian")
POLICY = Path("usr/sbin/policy-rc.d")


def mount_points_under(root: Path) -> list[str]:
    """Read /proc/self/mountinfo directly (independent of the code under test)."""
    prefix = str(root.resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return found


@pytest.fixture(scope="module")
def essential_tar() -> Path:
    tar = TEST_CACHE / "essential-trixie.tar"
    if not tar.exists():
        if shutil.which("mmdebstrap") is None:
            pytest.skip("mmdebstrap is not installed (apt-get install mmdebstrap)")
        TEST_CACHE.mkdir(parents=True, exist_ok=True)
        partial = tar.with_suffix(".partial.tar")
        subprocess.run(
            ["mmdebstrap", "--quiet", "--variant=essential", "trixie", str(partial), MIRROR],
            check=True,
        )
        partial.rename(tar)
    return tar


@pytest.fixture
def rootfs(essential_tar: Path) -> Iterator[Path]:
    base = Path("/var/tmp") / f"goldsmith-it-chroot-{os.getpid()}"
    root = base / "root"
    root.mkdir(parents=True)
    with tarfile.open(essential_tar) as tf:
        tf.extractall(root, filter="fully_trusted")
    yield root
    leftover = mount_points_under(root)
    for point in reversed(leftover):  # never rm -rf through a mount someone left
        subprocess.run(["umount", "-l", point], check=False)
    shutil.rmtree(base)
    assert leftover == [], f"mounts left under the rootfs: {leftover}"


def assert_clean(root: Path) -> None:
    assert mount_points_under(root) == []
    assert not (root / POLICY).exists()
    assert not (root / POLICY).is_symlink()


def test_run_in_chroot(rootfs: Path) -> None:
    t = RootfsTarget(rootfs)
    r = t.run(["cat", "/etc/debian_version"])
    assert r.ok and r.stdout.startswith(("13", "trixie"))
    probe = t.run(
        [
            "sh",
            "-c",
            "test -c /dev/null && test -c /dev/urandom && test -r /proc/self/status"
            " && test -d /sys/kernel && test -c /dev/pts/ptmx && echo ok >/dev/null"
            ' && echo "$PATH|$LC_ALL|$DEBIAN_FRONTEND|$HOME|$EXTRA"',
        ],
        env={"EXTRA": "x"},
    )
    assert probe.stdout == "/usr/sbin:/usr/bin:/sbin:/bin|C.UTF-8|noninteractive|/root|x\n"
    assert t.run(["cat"], input="piped").stdout == "piped"
    assert_clean(rootfs)


def test_chroot_cannot_change_host_kernel_settings(rootfs: Path) -> None:
    t = RootfsTarget(rootfs)
    before = Path("/proc/sys/kernel/hostname").read_text()
    # write back the value it already has: harmless even if the protection were missing
    r = t.run(
        ["sh", "-c", "h=$(cat /proc/sys/kernel/hostname); echo $h > /proc/sys/kernel/hostname"],
        check=False,
    )
    assert not r.ok and "Read-only" in r.stderr
    r = t.run(
        ["sh", "-c", "v=$(cat /sys/kernel/uevent_helper); echo $v > /sys/kernel/uevent_helper"],
        check=False,
    )
    assert not r.ok and "Read-only" in r.stderr
    assert Path("/proc/sys/kernel/hostname").read_text() == before
    # the image's /dev is a private tmpfs: nothing created there reaches the host's /dev
    t.run(["sh", "-c", "touch /dev/goldsmith-probe"])
    assert not Path("/dev/goldsmith-probe").exists()
    assert_clean(rootfs)


def test_policy_rc_d_blocks_services_and_is_removed(rootfs: Path) -> None:
    t = RootfsTarget(rootfs)
    r = t.run(["/usr/sbin/policy-rc.d"], check=False)
    assert r.returncode == 101
    assert_clean(rootfs)


def test_existing_policy_rc_d_is_restored(rootfs: Path) -> None:
    mine = b"#!/bin/sh\nexit 0\n"
    (rootfs / POLICY).write_bytes(mine)
    (rootfs / POLICY).chmod(0o700)
    t = RootfsTarget(rootfs)
    assert t.run(["/usr/sbin/policy-rc.d"], check=False).returncode == 101
    assert (rootfs / POLICY).read_bytes() == mine
    assert (rootfs / POLICY).stat().st_mode & 0o7777 == 0o700
    (rootfs / POLICY).unlink()
    (rootfs / POLICY).symlink_to("/bin/true")
    t.run(["true"])
    assert os.readlink(rootfs / POLICY) == "/bin/true"
    (rootfs / POLICY).unlink()


def test_failing_command_raises_and_cleans_up(rootfs: Path) -> None:
    t = RootfsTarget(rootfs)
    with pytest.raises(BuildError) as err:
        t.run(["sh", "-c", "echo 'dpkg: error processing' >&2; exit 1"])
    assert err.value.argv == ["sh", "-c", "echo 'dpkg: error processing' >&2; exit 1"]
    assert err.value.stderr_tail == "dpkg: error processing"
    r = t.run(["false"], check=False)
    assert r.returncode == 1
    with pytest.raises(BuildError):
        t.run(["/no/such/program"])
    assert_clean(rootfs)


def test_timeout_kills_and_cleans_up(rootfs: Path) -> None:
    t = RootfsTarget(rootfs)
    start = time.monotonic()
    with pytest.raises(BuildError, match="timed out"):
        t.run(["sh", "-c", "sleep 30 & sleep 30"], timeout=1)
    assert time.monotonic() - start < 10
    assert_clean(rootfs)


def test_process_left_running_is_detached(rootfs: Path) -> None:
    t = RootfsTarget(rootfs)
    # a daemon in its own session holds /dev/null open: the umount is busy, goes lazy
    t.run(["sh", "-c", "setsid sleep 4 </dev/null >/dev/null 2>&1 &"])
    assert_clean(rootfs)
    time.sleep(4.5)


def test_session_is_reference_counted(rootfs: Path) -> None:
    t = RootfsTarget(rootfs)
    with t.session():
        mounted = mount_points_under(rootfs)
        assert len(mounted) == 6  # proc, proc/sys, sys, dev, dev/pts, run
        assert (rootfs / POLICY).exists()
        with t.session():
            t.run(["true"])
        t.run(["true"])
        assert mount_points_under(rootfs) == mounted
    assert_clean(rootfs)


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_session_tears_down_on_exceptions(rootfs: Path, exc: type[BaseException]) -> None:
    t = RootfsTarget(rootfs)
    with pytest.raises(exc), t.session():
        t.run(["true"])
        raise exc()
    assert_clean(rootfs)


def test_sigterm_during_a_chroot_command_unmounts_everything(rootfs: Path) -> None:
    """What pkill or a cancelled CI job does: SIGTERM to goldsmith while a command runs in
    the image. The pseudo-filesystems must not be left mounted (as the CLI does it:
    terminate_as_interrupt turns the signal into an exception)."""
    script = (
        "import sys\n"
        "from goldsmith.errors import terminate_as_interrupt\n"
        "from goldsmith.targets.rootfs import RootfsTarget\n"
        "with terminate_as_interrupt():\n"
        "    RootfsTarget(sys.argv[1]).run(['sleep', '60'], timeout=120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(rootfs)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while len(mount_points_under(rootfs)) < 6 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(mount_points_under(rootfs)) == 6, "the command never started in the chroot"
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert b"Terminated" in err  # the exception, not a silent kill
    assert_clean(rootfs)


def test_file_operations_do_not_reach_through_the_mounts(rootfs: Path) -> None:
    t = RootfsTarget(rootfs)
    with t.session():
        with pytest.raises(TargetEscapeError):
            t.write_text("/dev/evil", "x")
        with pytest.raises(TargetEscapeError):
            t.chmod("/dev/null", 0o600)
        with pytest.raises(TargetEscapeError):
            t.read_text("/proc/self/status")
        with pytest.raises(TargetEscapeError):
            t.rmtree("/run")
        with pytest.raises(TargetEscapeError):
            t.listdir("/sys")
        assert t.read_text("/etc/debian_version")  # the image itself stays usable
        top = t.glob("/*")  # mount points match nothing while mounted
        assert "/etc" in top and "/proc" not in top and "/run" not in top
        assert t.lstat("/var/run") is not None  # the /var/run -> /run link itself
        assert t.glob("/var/*/dpkg") == ["/var/lib/dpkg"]
        below = t.glob("/var/**/*")  # the link matches; nothing below it (it leads to /run)
        assert "/var/run" in below and not [p for p in below if p.startswith("/var/run/")]
    assert_clean(rootfs)


def test_validator_runs_inside_the_image(rootfs: Path) -> None:
    t = RootfsTarget(rootfs)
    t.write_text("/etc/goldsmith.conf", "old\n")
    with pytest.raises(ValidationFailedError, match="validator"):
        t.write_text("/etc/goldsmith.conf", "bad\n", validate=["grep", "-q", "good", "%s"])
    assert (rootfs / "etc" / "goldsmith.conf").read_text() == "old\n"
    t.write_text("/etc/goldsmith.conf", "good\n", validate=["grep", "-q", "good", "%s"])
    assert (rootfs / "etc" / "goldsmith.conf").read_text() == "good\n"
    assert [p for p in (rootfs / "etc").iterdir() if "goldsmith-tmp" in p.name] == []
    assert_clean(rootfs)


def _digest(top: Path) -> str:
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(top)):
        for n in sorted(dirnames + filenames):
            p = Path(dirpath) / n
            st = p.lstat()
            h.update(f"{p}|{st.st_mode}|{st.st_uid}|{st.st_mtime_ns}".encode())
            if p.is_file() and not p.is_symlink():
                h.update(p.read_bytes())
    return h.hexdigest()


def test_hostile_usr_sbin_keeps_policy_rc_d_inside(rootfs: Path, tmp_path: Path) -> None:
    outside = tmp_path / "sentinel"
    outside.mkdir()
    (outside / "keep").write_text("host\n")
    before = _digest(outside)
    # merged-/usr images have /usr/sbin as a real dir; make it point at the host
    sbin = rootfs / "usr" / "sbin"
    shutil.move(sbin, rootfs / "usr" / "sbin.real")
    sbin.symlink_to(outside)
    mirror = rootfs / str(outside).lstrip("/")
    mirror.mkdir(parents=True)
    t = RootfsTarget(rootfs)
    with t.session():
        assert (mirror / "policy-rc.d").read_bytes().endswith(b"exit 101\n")
        assert not (outside / "policy-rc.d").exists()
    assert not (mirror / "policy-rc.d").exists()
    assert _digest(outside) == before
    assert mount_points_under(rootfs) == []


@pytest.mark.parametrize("link", ["/etc", "../../../../../../tmp"])
def test_hostile_proc_symlink_mounts_nothing(rootfs: Path, link: str) -> None:
    shutil.rmtree(rootfs / "proc")
    (rootfs / "proc").symlink_to(link)
    host_mounts = Path("/proc/self/mountinfo").read_text()
    t = RootfsTarget(rootfs)
    with pytest.raises(TargetEscapeError, match="symlink"):
        t.run(["true"])
    assert Path("/proc/self/mountinfo").read_text() == host_mounts
    assert_clean(rootfs)
