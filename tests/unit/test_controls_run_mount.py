"""Rules that search /run (sysctl.d, systemd unit and drop-in dirs, modprobe.d) work inside a
chroot session of an offline rootfs, where /run is a tmpfs mount point the confined target
refuses to enter; on a live system /run is still read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from controls_fixtures import LiveRootfsTarget, write

from goldsmith.controls import build_rule
from goldsmith.controls.fsutil import image_dirs
from goldsmith.controls.rules.sysctl import SYSCTL_DIRS
from goldsmith.model.records import Status
from goldsmith.targets.rootfs import RootfsTarget

UNIT = (
    "[Unit]\nDescription=x\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
)


def fake_image(root: Path) -> None:
    for d in ("proc", "sys", "dev/pts", "run", "usr/sbin", "etc/sysctl.d", "etc/systemd/system"):
        (root / d).mkdir(parents=True, exist_ok=True)
    write(root, "/usr/lib/sysctl.d/50-default.conf", "kernel.kptr_restrict = 1\n")
    write(root, "/etc/sysctl.d/99-x.conf", "net.ipv4.ip_forward = 0\n")
    write(root, "/usr/lib/systemd/system/demo.service", UNIT)
    write(root, "/usr/lib/modprobe.d/x.conf", "install cramfs /bin/false\nblacklist cramfs\n")
    write(root, "/etc/systemd/journald.conf", "[Journal]\nStorage=persistent\n")
    write(root, "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n")
    write(root, "/etc/group", "root:x:0:\n")


def test_image_dirs_drop_run_offline_only(tmp_path: Path) -> None:
    offline = RootfsTarget(tmp_path)
    live = LiveRootfsTarget(tmp_path)
    assert "/run/sysctl.d" not in image_dirs(offline, SYSCTL_DIRS)
    assert image_dirs(offline, SYSCTL_DIRS)[0] == "/etc/sysctl.d"
    assert image_dirs(live, SYSCTL_DIRS) == SYSCTL_DIRS


def test_live_target_still_reads_run(tmp_path: Path) -> None:
    fake_image(tmp_path)
    write(tmp_path, "/run/sysctl.d/99-x.conf", "net.ipv4.ip_forward = 1\n")
    write(tmp_path, "/proc/sys/net/ipv4/ip_forward", "0\n")
    rule = build_rule({"type": "sysctl", "key": "net.ipv4.ip_forward", "value": "0"})
    # /etc/sysctl.d/99-x.conf shadows /run/sysctl.d/99-x.conf (same name, earlier dir)...
    assert rule.check(LiveRootfsTarget(tmp_path)).status is Status.PASS
    # ...but a name only /run has counts on a live system, and nowhere in an image
    os.rename(tmp_path / "run/sysctl.d/99-x.conf", tmp_path / "run/sysctl.d/99-z.conf")
    found = rule.check(LiveRootfsTarget(tmp_path))
    assert found.status is Status.FAIL
    assert "/run/sysctl.d/99-z.conf" in found.evidence.observed
    assert rule.check(RootfsTarget(tmp_path)).status is Status.PASS


@pytest.mark.skipif(os.geteuid() != 0, reason="a chroot session mounts /proc, /sys, /dev, /run")
def test_rules_inside_a_chroot_session(tmp_path: Path) -> None:
    fake_image(tmp_path)
    t = RootfsTarget(tmp_path)
    specs = [
        {"type": "sysctl", "key": "net.ipv4.ip_forward", "value": "0"},
        {"type": "service", "unit": "demo.service", "state": "enabled"},
        {"type": "kernel-module", "name": "cramfs"},
        {
            "type": "config-option",
            "path": "/etc/systemd/journald.conf",
            "section": "Journal",
            "key": "Storage",
            "value": "persistent",
            "style": "systemd",
        },
        {"type": "tree-scan", "scan": "world-writable"},
    ]
    rules = [build_rule(s, control="it") for s in specs]
    outside = [r.check(t).status for r in rules]
    with t.session():
        assert os.path.ismount(tmp_path / "run")  # the session really mounted it
        inside = [r.check(t) for r in rules]
        plans = [r.plan(t) for r in rules]
    assert [f.status for f in inside] == outside
    by_type = dict(zip([s["type"] for s in specs], inside, strict=True))
    assert by_type["sysctl"].status is Status.PASS
    assert by_type["service"].status is Status.FAIL  # not enabled yet: a real verdict
    assert "/run" not in by_type["service"].evidence.how
    # enabling it is planned as a link, not refused at /run
    assert [c.object for c in plans[1]] == [
        "/etc/systemd/system/multi-user.target.wants/demo.service"
    ]
    assert by_type["tree-scan"].status is Status.PASS
