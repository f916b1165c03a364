"""Targeted behaviour of single primitives, the registry, and the config editor."""

from __future__ import annotations

from pathlib import Path

import pytest
from controls_fixtures import LiveRootfsTarget, make_target, tree_hash, write
from hypothesis import given, settings
from hypothesis import strategies as st

from goldsmith.controls import Control, build_rule
from goldsmith.controls.configfile import ConfigText, Style
from goldsmith.controls.rules.accounts import GroupRule, UserRule
from goldsmith.controls.rules.audit_rules import normalise_rule
from goldsmith.controls.rules.file_mode import FileModeRule
from goldsmith.controls.rules.mount_options import MountOptionsRule
from goldsmith.controls.rules.package import PackageRule, PackageState
from goldsmith.controls.rules.pam import PamRule
from goldsmith.controls.rules.service import ServiceRule, ServiceState
from goldsmith.errors import ProfileError, TargetError
from goldsmith.model.records import Status
from goldsmith.targets.base import RunResult

PASSWD = "root:x:0:0::/root:/bin/bash\nnanoclaw:x:995:995::/opt/nanoclaw:/usr/sbin/nologin\n"
GROUP = "root:x:0:\nnanoclaw:x:995:\n"


# file-mode -----------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(mode=st.integers(0, 0o7777), maximum=st.integers(0, 0o7777))
def test_file_mode_only_removes_bits(
    tmp_path_factory: pytest.TempPathFactory, mode: int, maximum: int
) -> None:
    root = tmp_path_factory.mktemp("fm")
    p = write(root, "/etc/f", "x")
    p.chmod(mode)
    t = make_target(root)
    FileModeRule(paths=("/etc/f",), max_mode=maximum).apply(t)
    after = p.stat().st_mode & 0o7777
    assert after == mode & maximum  # a subset of both: nothing added
    assert FileModeRule(paths=("/etc/f",), max_mode=maximum).plan(t) == []


def test_file_mode_skips_symlinks_and_no_match_is_not_applicable(tmp_path: Path) -> None:
    write(tmp_path, "/etc/real", "x", 0o600)
    (tmp_path / "etc/link").symlink_to("/etc/real")
    t = make_target(tmp_path)
    assert FileModeRule(paths=("/etc/link",), max_mode=0o600).plan(t) == []
    f = FileModeRule(paths=("/etc/nothing*",), max_mode=0o600).check(t)
    assert f.status is Status.NOT_APPLICABLE
    f = FileModeRule(paths=("/etc/nothing",), max_mode=0o600, must_exist=True).check(t)
    assert f.status is Status.FAIL


# fstab ---------------------------------------------------------------------------------------
FSTAB = (
    "# /etc/fstab\n"
    "\n"
    "UUID=a /        ext4  errors=remount-ro 0 1\n"
    "# /var/tmp was on a partition\n"
    "UUID=b /var/tmp ext4  defaults          0 2\n"
    "UUID=c /var/log ext4  nodev             0 2\n"
)


def test_fstab_edit_keeps_other_lines_and_comments(tmp_path: Path) -> None:
    write(tmp_path, "/etc/fstab", FSTAB)
    t = make_target(tmp_path)
    rule = MountOptionsRule(mountpoint="/var/tmp/", options=("nodev", "nosuid", "noexec"))
    rule.apply(t)
    new = (tmp_path / "etc/fstab").read_text().splitlines()
    old = FSTAB.splitlines()
    assert new[:4] == old[:4] and new[5] == old[5]
    assert new[4] == "UUID=b /var/tmp ext4  defaults,nodev,nosuid,noexec          0 2"
    assert rule.check(t).status is Status.PASS


def test_fstab_missing_mountpoint_is_check_only(tmp_path: Path) -> None:
    write(tmp_path, "/etc/fstab", FSTAB)
    t = make_target(tmp_path)
    rule = MountOptionsRule(mountpoint="/home", options=("nodev",))
    f = rule.check(t)
    assert f.status is Status.FAIL and "partition" in f.evidence.observed
    assert rule.plan(t) == []


# services ------------------------------------------------------------------------------------
UNIT = (
    "[Unit]\nDescription=x\n[Install]\nWantedBy=multi-user.target sockets.target\n"
    "RequiredBy=network.target\nAlias=other.service\n"
)


def test_service_links_for_wantedby_requiredby_alias(tmp_path: Path) -> None:
    write(tmp_path, "/lib/systemd/system/x.service", UNIT)
    t = make_target(tmp_path)
    ServiceRule(unit="x.service", state=ServiceState.ENABLED).apply(t)
    etc = tmp_path / "etc/systemd/system"
    links = sorted(str(p.relative_to(etc)) for p in etc.rglob("*") if p.is_symlink())
    assert links == [
        "multi-user.target.wants/x.service",
        "network.target.requires/x.service",
        "other.service",
        "sockets.target.wants/x.service",
    ]
    assert {(etc / p).readlink().as_posix() for p in links} == {"/lib/systemd/system/x.service"}
    rule = ServiceRule(unit="x.service", state=ServiceState.DISABLED)
    assert rule.check(t).status is Status.FAIL
    rule.apply(t)
    assert not [p for p in etc.rglob("*") if p.is_symlink()]


def test_service_static_and_absent_units(tmp_path: Path) -> None:
    write(tmp_path, "/usr/lib/systemd/system/s.service", "[Service]\nExecStart=/bin/true\n")
    t = make_target(tmp_path)
    assert ServiceRule(unit="s.service").check(t).status is Status.PASS
    f = ServiceRule(unit="s.service", state=ServiceState.ENABLED).check(t)
    assert f.status is Status.FAIL and "no [Install]" in f.evidence.observed
    assert ServiceRule(unit="gone.service").check(t).status is Status.PASS
    rule = ServiceRule(unit="gone.service", state=ServiceState.MASKED)
    rule.apply(t)
    assert (tmp_path / "etc/systemd/system/gone.service").readlink().as_posix() == "/dev/null"


def test_service_wanted_by_plans_a_unit_another_control_writes(tmp_path: Path) -> None:
    """goldsmith's own unit (written by a managed-file control) can be planned for before
    the file exists, as apply --check does for the whole profile; the check fails until the
    unit file is there, and once it is, its own [Install] section decides."""
    t = make_target(tmp_path)
    rule = ServiceRule(
        unit="gs.service", state=ServiceState.ENABLED, wanted_by=("multi-user.target",)
    )
    link = "/etc/systemd/system/multi-user.target.wants/gs.service"
    assert [(c.object, c.after) for c in rule.plan(t)] == [(link, "/etc/systemd/system/gs.service")]
    without = ServiceRule(unit="gs.service", state=ServiceState.ENABLED)
    with pytest.raises(TargetError, match="cannot enable it"):
        without.plan(t)
    rule.apply(t)  # a dangling link: the unit file is not written yet
    assert rule.check(t).status is Status.FAIL
    write(tmp_path, "/etc/systemd/system/gs.service", UNIT.replace("x", "gs"))
    found = rule.check(t)
    assert found.status is Status.FAIL  # its [Install] also wants sockets.target etc.
    rule.apply(t)
    assert rule.check(t).status is Status.PASS
    assert rule.plan(t) == []


@pytest.mark.parametrize(
    "params",
    [
        {"unit": "a.service", "state": "disabled", "wanted_by": ["multi-user.target"]},
        {"unit": "a.service", "state": "enabled", "wanted_by": ["not a unit"]},
    ],
)
def test_service_wanted_by_bad_params(params: dict[str, object]) -> None:
    with pytest.raises(ProfileError):
        build_rule({"type": "service", **params}, control="t")


def test_service_live_uses_systemctl(tmp_path: Path) -> None:
    argv = ("systemctl", "is-enabled", "avahi-daemon.service")
    t = LiveRootfsTarget(tmp_path, {argv: RunResult(argv, 0, "enabled\n", "")})
    rule = ServiceRule(unit="avahi-daemon.service", state=ServiceState.MASKED, now=True)
    assert rule.check(t).status is Status.FAIL
    assert [s.argv for s in rule.steps(t)] == [  # type: ignore[attr-defined]
        ("systemctl", "mask", "--now", "avahi-daemon.service")
    ]


# command-based primitives: check and plan (the full cycle runs on a real rootfs) -------------
DPKG = (
    "Package: telnet\nStatus: install ok installed\nVersion: 0.17+2.5-1\n\n"
    "Package: rsh-client\nStatus: deinstall ok config-files\nVersion: 0.17-24\n\n"
    "Package: auditd\nStatus: install ok installed\nVersion: 1:4.0.2-2\n"
)


def test_package_reads_dpkg_status(tmp_path: Path) -> None:
    write(tmp_path, "/var/lib/dpkg/status", DPKG)
    t = make_target(tmp_path)
    assert PackageRule(name="auditd").check(t).status is Status.PASS
    assert PackageRule(name="nis", state=PackageState.ABSENT).check(t).status is Status.PASS
    f = PackageRule(name="rsh-client", state=PackageState.ABSENT).check(t)
    assert f.status is Status.FAIL and "config-files" in f.evidence.observed
    steps = PackageRule(name="telnet", state=PackageState.ABSENT).steps(t)
    assert [s.argv for s in steps] == [("apt-get", "purge", "-y", "-q", "telnet")]  # type: ignore[attr-defined]
    steps = PackageRule(name="aide").steps(t)
    assert [s.argv for s in steps] == [  # type: ignore[attr-defined]
        ("apt-get", "install", "-y", "-q", "--no-install-recommends", "aide")
    ]


def test_user_and_group_plans(tmp_path: Path) -> None:
    write(tmp_path, "/etc/passwd", PASSWD)
    write(tmp_path, "/etc/group", GROUP)
    t = make_target(tmp_path)
    ok = UserRule(name="nanoclaw", group="nanoclaw", home="/opt/nanoclaw")
    assert ok.check(t).status is Status.PASS and ok.plan(t) == []
    rule = UserRule(name="nanoclaw", shell="/bin/bash", uid=990)
    f = rule.check(t)
    assert f.status is Status.FAIL and "shell /usr/sbin/nologin" in f.evidence.observed
    assert [s.argv for s in rule.steps(t)] == [  # type: ignore[attr-defined]
        ("usermod", "--uid", "990", "--shell", "/bin/bash", "nanoclaw")
    ]
    new = UserRule(name="agent", group="nanoclaw", home="/opt/agent")
    assert [s.argv for s in new.steps(t)] == [  # type: ignore[attr-defined]
        (
            "useradd",
            "--system",
            "--no-create-home",
            "--gid",
            "nanoclaw",
            "--home-dir",
            "/opt/agent",
            "--shell",
            "/usr/sbin/nologin",
            "agent",
        )
    ]
    assert GroupRule(name="nanoclaw").check(t).status is Status.PASS
    assert [s.argv for s in GroupRule(name="docker", gid=998).steps(t)] == [  # type: ignore[attr-defined]
        ("groupadd", "--system", "--gid", "998", "docker")
    ]


COMMON_AUTH = (
    "auth\trequisite\t\t\tpam_faillock.so preauth\n"
    "auth\t[success=1 default=ignore]\tpam_unix.so nullok\n"
    "auth\t[default=die]\tpam_faillock.so authfail deny=5\n"
    "auth\trequisite\t\t\tpam_deny.so\n"
)


def faillock() -> PamRule:
    return PamRule(
        name="faillock",
        title="Lock accounts after failed logins",
        priority=1024,
        sections={
            "Auth-Type": "Primary",
            "Auth": ["[default=die] pam_faillock.so authfail deny=5"],
        },
    )


def test_pam_check_reads_common_files(tmp_path: Path) -> None:
    t = make_target(tmp_path)
    rule = faillock()
    write(tmp_path, "/usr/share/pam-configs/faillock", rule._content())
    write(tmp_path, "/etc/pam.d/common-auth", COMMON_AUTH)
    assert rule.check(t).status is Status.PASS
    assert rule.plan(t) == []
    write(tmp_path, "/etc/pam.d/common-auth", COMMON_AUTH.replace(" deny=5", ""))
    f = rule.check(t)
    assert f.status is Status.FAIL and "pam_faillock.so authfail deny=5" in f.evidence.observed
    assert [getattr(s, "argv", None) for s in rule.steps(t)] == [
        ("pam-auth-update", "--package", "--enable", "faillock")
    ]


def test_pam_accepts_the_initial_line_of_the_first_profile_of_a_block(tmp_path: Path) -> None:
    # pam-auth-update writes <Type>-Initial for the first profile of a block: Debian's own
    # common-auth has "pam_unix.so nullok", without the Auth line's try_first_pass
    t = make_target(tmp_path)
    rule = PamRule(
        name="unix",
        title="Unix authentication",
        priority=256,
        sections={
            "Auth-Type": "Primary",
            "Auth": ["[success=end default=ignore] pam_unix.so try_first_pass"],
            "Auth-Initial": ["[success=end default=ignore] pam_unix.so"],
        },
    )
    write(tmp_path, "/usr/share/pam-configs/unix", rule._content())
    write(tmp_path, "/etc/pam.d/common-auth", "auth\t[success=1 default=ignore]\tpam_unix.so\n")
    assert rule.check(t).status is Status.PASS
    assert rule.plan(t) == []
    write(tmp_path, "/etc/pam.d/common-auth", "auth\trequisite\tpam_deny.so\n")
    assert rule.check(t).status is Status.FAIL


def test_pam_profile_file_format(tmp_path: Path) -> None:
    text = faillock()._content()
    assert text == (
        "Name: Lock accounts after failed logins\nDefault: yes\nPriority: 1024\n"
        "Auth-Type: Primary\nAuth:\n\t[default=die] pam_faillock.so authfail deny=5\n"
    )


# audit rules ---------------------------------------------------------------------------------
def test_audit_rule_normalisation_matches_auditctl_listing() -> None:
    written = "-a always,exit -F arch=b64 -S settimeofday -S adjtimex  -k time-change"
    listed = "-a always,exit -F arch=b64 -S adjtimex,settimeofday -F key=time-change"
    assert normalise_rule(written) == normalise_rule(listed)
    assert normalise_rule("# comment") is None
    assert normalise_rule("-e 2") == "-e 2"


def test_audit_rules_live_compares_loaded_rules(tmp_path: Path) -> None:
    rule = build_rule(
        {"type": "audit-rules", "name": "x", "rules": ["-w /etc/sudoers -p wa -k scope"]}
    )
    argv = ("auditctl", "-l")
    t = LiveRootfsTarget(tmp_path, {argv: RunResult(argv, 0, "No rules\n", "")})
    rule.apply(t)
    f = rule.check(t)
    assert f.status is Status.FAIL and "not loaded" in f.evidence.observed
    t.answers[argv] = RunResult(argv, 0, "-w /etc/sudoers -p wa -k scope\n", "")
    assert rule.check(t).status is Status.PASS


def test_audit_rules_live_accepts_the_kernels_rewritten_listing(tmp_path: Path) -> None:
    """auditctl -l reorders fields, swaps -C operands, prints unset as -1 and adds -S all."""
    rules = [
        "-a always,exit -F arch=b64 -C euid!=uid -F auid!=unset -S execve -k user_emulation",
        "-a always,exit -F path=/usr/bin/chcon -F perm=x -F auid>=1000 -F auid!=unset -k perm_chng",
    ]
    rule = build_rule({"type": "audit-rules", "name": "x", "rules": rules})
    argv = ("auditctl", "-l")
    listed = (
        "-a always,exit -F arch=b64 -S execve -C uid!=euid -F auid!=-1 -F key=user_emulation\n"
        "-a always,exit -S all -F path=/usr/bin/chcon -F perm=x -F auid>=1000 -F auid!=-1 "
        "-F key=perm_chng\n"
    )
    t = LiveRootfsTarget(tmp_path, {argv: RunResult(argv, 0, listed, "")})
    rule.apply(t)
    assert rule.check(t).status is Status.PASS
    # a different threshold is a different rule: still reported as not loaded
    t.answers[argv] = RunResult(argv, 0, listed.replace("auid>=1000", "auid>=500"), "")
    f = rule.check(t)
    assert f.status is Status.FAIL and "path=/usr/bin/chcon" in f.evidence.observed


# registry and Control ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "key"),
    [
        ({"type": "sysctl", "key": "a", "value": "0", "colour": "red"}, "c.params.colour"),
        ({"type": "sysctl", "value": "0"}, "c.params.key"),
        ({"type": "sysctl", "key": "kernel.x", "value": "0", "file": "/tmp/x"}, "c.params"),
        ({"type": "nope"}, "c.params.type"),
        ({"key": "x"}, "c.params.type"),
        ({"type": "file-mode", "paths": ["/x"], "max_mode": "0999"}, "c.params.max_mode"),
        ({"type": "service", "unit": "x.service", "state": "on"}, "c.params.state"),
    ],
)
def test_registry_errors_name_the_key(spec: dict[str, object], key: str) -> None:
    with pytest.raises(ProfileError) as e:
        build_rule(spec, key="c.params")
    assert e.value.key == key


def test_control_builds_rule_with_overrides_and_references(tmp_path: Path) -> None:
    c = Control(
        id="sysctl.ip-forward",
        title="IP forwarding off",
        rationale="not a router",
        level=1,
        rule_type="sysctl",
        params={"key": "net.ipv4.ip_forward", "value": "0"},
        references={"cis-debian13": ("3.3.1",), "iso27001-2022": ("A.8.20",)},
    )
    t = make_target(tmp_path)
    f = c.check(t)
    assert f.control == "sysctl.ip-forward" and f.status is Status.FAIL
    assert f.references == ("cis-debian13: 3.3.1", "iso27001-2022: A.8.20")
    h = tree_hash(tmp_path)
    assert c.plan(t, {"value": 1})[0].after == "1"
    assert tree_hash(tmp_path) == h
    with pytest.raises(ProfileError):
        Control(
            id="x",
            title="",
            rationale="",
            level=1,
            rule_type="sysctl",
            references={"nist": ("AC-1",)},
        )


# config editor properties --------------------------------------------------------------------
_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ_", min_size=1, max_size=8)
_line = st.one_of(
    st.builds(lambda k, v: f"{k} {v}", _word, _word),
    st.builds(lambda k, v: f"  {k}={v}", _word, _word),
    st.builds(
        lambda c: f"# {c}", st.text(max_size=10).filter(lambda s: "\n" not in s and "\r" not in s)
    ),
    st.just(""),
    st.builds(lambda u: f"Match User {u}", _word),
)


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(_line, max_size=12), trailing=st.booleans(), key=_word, value=_word)
def test_config_editor_round_trip_and_idempotence(
    lines: list[str], trailing: bool, key: str, value: str
) -> None:
    text = "\n".join(lines) + ("\n" if trailing else "")
    ct = ConfigText(text, Style.SSHD)
    assert ct.render() == text
    globals_ = [e for e in ct.entries() if not e.in_match and e.key.lower() == key.lower()]
    if globals_:
        ct.set_value(globals_[0].index, value)
    else:
        ct.insert(key, value)
    once = ct.render()
    again = ConfigText(once, Style.SSHD)
    first = next(e for e in again.entries() if not e.in_match and e.key.lower() == key.lower())
    assert first.value == value
    # lines the edit did not target are unchanged, in order
    kept = [x for x in once.split("\n") if x and x not in text.split("\n")]
    assert len(kept) <= 1
    # applying the same edit again changes nothing
    again.set_value(first.index, value)
    assert again.render() == once
