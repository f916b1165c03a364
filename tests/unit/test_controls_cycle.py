"""Every file-level primitive on a small fake root: fail -> apply -> pass, idempotent,
and check/plan never write (a hash of the whole tree stays the same)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from apparmor_fixtures import apparmor_dir
from controls_fixtures import make_target, tree_hash, write

from goldsmith.controls import RULE_TYPES, build_rule
from goldsmith.model.records import Status

PASSWD = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
GROUP = "root:x:0:\ndaemon:x:1:\nadm:x:4:\n"
OS_RELEASE = 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_ID="13"\n'


def base_root(root: Path) -> None:
    write(root, "/etc/passwd", PASSWD)
    write(root, "/etc/group", GROUP)
    write(root, "/etc/os-release", OS_RELEASE)


@dataclass(frozen=True)
class Case:
    id: str
    spec: dict[str, Any]
    setup: Callable[[Path], None]


def _sysctl(root: Path) -> None:
    write(root, "/usr/lib/sysctl.d/50-default.conf", "net.ipv4.conf.all.accept_redirects = 1\n")
    (root / "etc/sysctl.d").mkdir(parents=True)


def _sshd(root: Path) -> None:
    write(
        root,
        "/etc/ssh/sshd_config",
        "# sshd config\nInclude /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin yes\n"
        "Match User backup\n    PermitRootLogin no\n",
    )
    (root / "etc/ssh/sshd_config.d").mkdir()


def _sshd_absent(root: Path) -> None:
    write(root, "/etc/ssh/sshd_config", "Include /etc/ssh/sshd_config.d/*.conf\nUsePAM yes\n")
    (root / "etc/ssh/sshd_config.d").mkdir()


def _login_defs(root: Path) -> None:
    write(root, "/etc/login.defs", "# shadow\nPASS_MAX_DAYS\t99999\nPASS_MIN_DAYS\t0\n")


def _journald(root: Path) -> None:
    write(root, "/etc/systemd/journald.conf", "# journald\n[Journal]\n#Storage=auto\n")


def _pwquality(root: Path) -> None:
    write(root, "/etc/security/pwquality.conf", "# minlen = 8\ndifok = 1\n")


def _shadow(root: Path) -> None:
    write(root, "/etc/shadow", "root:*:19000:0:99999:7:::\n", 0o644)
    write(root, "/etc/cron.d/a", "", 0o755)
    write(root, "/etc/cron.d/b", "", 0o600)


def _unit(root: Path) -> None:
    write(
        root,
        "/usr/lib/systemd/system/foo.service",
        "[Unit]\nDescription=foo\n[Service]\nExecStart=/bin/true\n"
        "[Install]\nWantedBy=multi-user.target\nAlias=bar.service\n",
    )


def _unit_enabled(root: Path) -> None:
    _unit(root)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True)
    (wants / "foo.service").symlink_to("/usr/lib/systemd/system/foo.service")


def _fstab(root: Path) -> None:
    write(
        root,
        "/etc/fstab",
        "# /etc/fstab: static file system information.\n"
        "UUID=1234  /      ext4   errors=remount-ro  0 1\n"
        "tmpfs      /tmp   tmpfs  defaults,size=512M  0 0\n",
    )


def _nothing(root: Path) -> None:
    return None


def _cron(root: Path) -> None:
    write(root, "/etc/cron.deny", "nobody\n")
    write(root, "/etc/at.allow", "root\n", 0o666)


def _banner(root: Path) -> None:
    write(root, "/etc/issue", "Debian GNU/Linux 13 \\n \\l\n")
    write(root, "/etc/motd", "The programs included with the Debian GNU/Linux system\n", 0o664)


CASES = [
    Case(
        "sysctl",
        {"type": "sysctl", "key": "net.ipv4.conf.all.accept_redirects", "value": 0},
        _sysctl,
    ),
    Case(
        "config-option-sshd",
        {
            "type": "config-option",
            "path": "/etc/ssh/sshd_config",
            "style": "sshd",
            "key": "PermitRootLogin",
            "value": "no",
            "dropin": "/etc/ssh/sshd_config.d/00-goldsmith.conf",
        },
        _sshd,
    ),
    Case(
        "config-option-sshd-dropin",
        {
            "type": "config-option",
            "path": "/etc/ssh/sshd_config",
            "style": "sshd",
            "key": "MaxAuthTries",
            "value": "4",
            "dropin": "/etc/ssh/sshd_config.d/00-goldsmith.conf",
            "mode": "0600",
        },
        _sshd_absent,
    ),
    Case(
        "config-option-space",
        {
            "type": "config-option",
            "path": "/etc/login.defs",
            "style": "space",
            "key": "PASS_MAX_DAYS",
            "value": 365,
        },
        _login_defs,
    ),
    Case(
        "config-option-systemd",
        {
            "type": "config-option",
            "path": "/etc/systemd/journald.conf",
            "style": "systemd",
            "section": "Journal",
            "key": "Storage",
            "value": "persistent",
        },
        _journald,
    ),
    Case(
        "config-option-equals",
        {
            "type": "config-option",
            "path": "/etc/security/pwquality.conf",
            "key": "minlen",
            "value": 14,
        },
        _pwquality,
    ),
    Case(
        "managed-file",
        {
            "type": "managed-file",
            "path": "/etc/goldsmith/agent.conf",
            "mode": "0600",
            "content": "user={{ user }}\n",
            "context": {"user": "nanoclaw"},
        },
        _nothing,
    ),
    Case(
        "managed-file-template",
        {
            "type": "managed-file",
            "path": "/etc/modprobe.d/x.conf",
            "template": "modprobe-disable.conf.j2",
            "context": {"module": "dccp"},
        },
        _nothing,
    ),
    Case(
        "file-mode",
        {
            "type": "file-mode",
            "paths": ["/etc/shadow", "/etc/cron.d/*"],
            "max_mode": "0640",
            "owner": "root",
            "group": "root",
        },
        _shadow,
    ),
    Case("service-enabled", {"type": "service", "unit": "foo.service", "state": "enabled"}, _unit),
    Case(
        "service-disabled",
        {"type": "service", "unit": "foo.service", "state": "disabled"},
        _unit_enabled,
    ),
    Case(
        "service-masked",
        {"type": "service", "unit": "foo.service", "state": "masked"},
        _unit_enabled,
    ),
    Case("kernel-module", {"type": "kernel-module", "name": "cramfs"}, _nothing),
    Case(
        "mount-options",
        {"type": "mount-options", "mountpoint": "/tmp", "options": ["nodev", "nosuid", "noexec"]},
        _fstab,
    ),
    Case(
        "audit-rules",
        {
            "type": "audit-rules",
            "name": "50-identity",
            "rules": [
                "-w /etc/passwd -p wa -k identity",
                "-a always,exit -F arch=b64 -S adjtimex -S settimeofday -k time-change",
            ],
        },
        _nothing,
    ),
    Case(
        "directory",
        {
            "type": "directory",
            "path": "/var/log/nanoclaw",
            "mode": "0750",
            "owner": "root",
            "group": "adm",
            "append_only": True,
        },
        _nothing,
    ),
    Case(
        "systemd-dropin",
        {
            "type": "systemd-dropin",
            "unit": "nanoclaw.service",
            "name": "hardening",
            "settings": {
                "Service": {
                    "NoNewPrivileges": "yes",
                    "ExecStart": ["", "/usr/bin/node dist/index.js"],
                }
            },
        },
        _nothing,
    ),
    Case("cron-at-permissions", {"type": "cron-at-permissions"}, _cron),
    Case("banner", {"type": "banner"}, _banner),
    Case(
        "apparmor-profiles",
        {"type": "apparmor-profiles", "enforce": ["unix-chkpwd"]},
        apparmor_dir,
    ),
]

#: primitives whose apply runs a command in the image (apt-get, useradd, pam-auth-update):
#: cycled on a real rootfs in tests/integration/test_controls_rootfs.py
COMMAND_TYPES = {"package", "user", "group", "pam"}
#: primitives with check-only conditions beside fixable ones: their fixable conditions are
#: cycled (fail -> apply -> pass, idempotent, check/plan write nothing) in their own files,
#: tests/unit/test_controls_{account_db,file_content,tree_scan}.py
OWN_CYCLE_TYPES = {"account-db", "file-content", "tree-scan"}


def test_every_primitive_has_a_cycle_case() -> None:
    covered = {c.spec["type"] for c in CASES} | COMMAND_TYPES | OWN_CYCLE_TYPES
    assert covered == set(RULE_TYPES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cycle(case: Case, tmp_path: Path) -> None:
    base_root(tmp_path)
    case.setup(tmp_path)
    t = make_target(tmp_path)
    rule = build_rule(case.spec, control=f"test.{case.id}")

    before = tree_hash(tmp_path)
    first = rule.check(t)
    planned = rule.plan(t)
    assert tree_hash(tmp_path) == before, "check/plan wrote to the target"
    assert first.status is Status.FAIL, first.evidence
    assert first.control == f"test.{case.id}"
    assert planned and all(c.control == f"test.{case.id}" for c in planned)

    applied = rule.apply(t)
    assert applied == planned
    assert tree_hash(tmp_path) != before

    after = rule.check(t)
    assert after.status is Status.PASS, after.evidence
    assert rule.plan(t) == []
    settled = tree_hash(tmp_path)
    assert rule.apply(t) == []
    assert tree_hash(tmp_path) == settled
    for f in (first, after):
        assert f.evidence.expected and f.evidence.observed and f.evidence.how
