"""Live checks and their parsers, on outputs captured from real boots (tests/assets/boot)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from goldsmith.boot.checks import (
    AideBaselineCheck,
    AppArmorProfilesCheck,
    AuditImmutableCheck,
    AuditRulesCheck,
    Context,
    EnabledUnitsActiveCheck,
    Expectations,
    HostKeysCheck,
    ListeningSocketsCheck,
    LiveCheck,
    MountOptionsCheck,
    NoFailedUnitsCheck,
    PathCheck,
    SetidFilesCheck,
    SshdConfigCheck,
    SysctlCheck,
    canonical_audit_rule,
    expectations_from_profile,
    parse_apparmor_profiles,
    parse_auditctl_list,
    parse_auditctl_status,
    parse_findmnt,
    parse_ss,
    parse_sshd_t,
    run_checks,
    sshd_value_matches,
)
from goldsmith.boot.ssh import CommandResult, offered_methods
from goldsmith.controls.catalogue import load_catalogue
from goldsmith.model.profile_loader import load_profile
from goldsmith.model.records import Status

ASSETS = Path(__file__).parent.parent / "assets" / "boot"
STOCK = ASSETS / "stock"


def asset(name: str, kind: str = "stock") -> str:
    return (ASSETS / kind / name).read_text()


class FakeGuest:
    """Answers commands by their first word (or a full line) from captured outputs."""

    def __init__(self, answers: dict[str, str | tuple[int, str]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def run(
        self, command: Sequence[str] | str, *, timeout: float = 60, sudo: bool = False
    ) -> CommandResult:
        line = command if isinstance(command, str) else " ".join(command)
        self.calls.append(line)
        for key, ans in self.answers.items():
            if line.startswith(key):
                rc, out = ans if isinstance(ans, tuple) else (0, ans)
                return CommandResult((line,), rc, out, "", 0.0)
        return CommandResult((line,), 127, "", f"{line}: not found", 0.0)


def expectations(**kw: object) -> Expectations:
    base: dict[str, object] = {
        "ssh_port": 22,
        "sshd": {},
        "sysctl": {},
        "mounts": {"/var/log": ("nodev", "nosuid", "noexec")},
        "audit_rules": (),
        "audit_rules_files": (),
        "setid_files": frozenset(),
        "filesystems": ("/",),
        "image_host_keys": (),
    }
    base.update(kw)
    return Expectations(**base)  # type: ignore[arg-type]


def run_one(check: LiveCheck, guest: FakeGuest, **kw: object):  # type: ignore[no-untyped-def]
    return run_checks(guest, Context(expectations(**kw)), [check])[0]


# --- parsers -------------------------------------------------------------------------------


def test_ss_capture_parses_addresses_scopes_and_loopback() -> None:
    socks = parse_ss(asset("ss.txt"))
    assert len(socks) == 14
    by = {(s.proto, s.address, s.port): s for s in socks}
    assert by[("udp", "127.0.0.53", 53)].interface == "lo"
    assert by[("udp", "127.0.0.53", 53)].loopback
    assert by[("udp", "10.0.2.15", 68)].interface == "ens2"
    assert by[("tcp", "::", 22)].address == "::" and not by[("tcp", "::", 22)].loopback
    assert by[("udp", "::1", 323)].loopback


def test_ss_process_column() -> None:
    line = 'tcp LISTEN 0 128 0.0.0.0:2222 0.0.0.0:* users:(("sshd",pid=612,fd=6))'
    assert parse_ss(line)[0].process == "sshd"


def test_sshd_t_capture() -> None:
    conf = parse_sshd_t(asset("sshd_T.txt"))
    assert conf["port"] == ["22"]
    assert conf["listenaddress"] == ["[::]:22", "0.0.0.0:22"]
    assert conf["permitrootlogin"] == ["without-password"]
    assert conf["passwordauthentication"] == ["yes"]


@pytest.mark.parametrize(
    ("key", "expected", "observed", "ok"),
    [
        ("loglevel", "VERBOSE", ["VERBOSE"], True),
        ("permitrootlogin", "no", ["without-password"], False),
        ("logingracetime", "1m", ["60"], True),
        ("clientaliveinterval", "15", ["15"], True),
        ("allowgroups", "sshusers", ["sshusers"], True),
        ("allowgroups", "sshusers", ["sshusers admins"], False),
        ("ciphers", "aes256-ctr,aes128-ctr", ["aes256-ctr,aes128-ctr"], True),
        ("ciphers", "aes256-ctr,aes128-ctr", ["aes128-ctr,aes256-ctr,chacha20"], False),
        ("port", "2222", [], False),
    ],
)
def test_sshd_value_matching(key: str, expected: str, observed: list[str], ok: bool) -> None:
    assert sshd_value_matches(key, expected, observed) is ok


def test_sshd_modifier_lists_are_not_compared() -> None:
    assert sshd_value_matches("ciphers", "-chacha20-poly1305@openssh.com", ["aes256-ctr"]) is None


def test_findmnt_last_mount_of_a_target_wins() -> None:
    text = "/dev/shm rw,nosuid,nodev\n/dev/shm rw,nosuid,nodev,noexec\n/var/log rw,noexec\n"
    got = parse_findmnt(text)
    assert got["/dev/shm"] == {"rw", "nosuid", "nodev", "noexec"}


def test_auditctl_status_and_list_captures() -> None:
    st = parse_auditctl_status(asset("auditctl_s.txt"))
    assert st["enabled"] == "1" and st["backlog_limit"] == "8192"
    assert parse_auditctl_list(asset("auditctl_l.txt")) == []


@pytest.mark.parametrize(
    ("in_file", "listed"),
    [
        ("-w /etc/passwd -p wa -k identity", "-w /etc/passwd -p wa -k identity"),
        (
            "-a always,exit -F arch=b64 -S adjtimex -S settimeofday -k time-change",
            "-a always,exit -F arch=b64 -S adjtimex,settimeofday -F key=time-change",
        ),
        (
            "-a exit,always -F arch=b64 -S mount -F auid>=1000 -F auid!=unset -k mounts",
            "-a always,exit -F arch=b64 -S mount -F auid>=1000 -F auid!=-1 -F key=mounts",
        ),
        (
            "-a always,exit -F arch=b32 -S chmod -F auid!=4294967295 -k perm_mod",
            "-a always,exit -F arch=b32 -S chmod -F auid!=-1 -F key=perm_mod",
        ),
        # as listed by auditctl -l on the booted default image (Debian 13, audit 4.0)
        (
            "-a always,exit -F arch=b64 -C euid!=uid -F auid!=unset -S execve -k user_emulation",
            "-a always,exit -F arch=b64 -S execve -C uid!=euid -F auid!=-1 -F key=user_emulation",
        ),
        (
            "-a always,exit -F path=/usr/bin/chcon -F perm=x -F auid>=1000 -F auid!=unset "
            "-k perm_chng",
            "-a always,exit -S all -F path=/usr/bin/chcon -F perm=x -F auid>=1000 -F auid!=-1 "
            "-F key=perm_chng",
        ),
        # seen in the booted image: the kernel lists a watched directory without its slash
        ("-w /etc/sudoers.d/ -p wa -k scope", "-w /etc/sudoers.d -p wa -k scope"),
    ],
)
def test_audit_rules_from_files_compare_equal_to_auditctl_listing(
    in_file: str, listed: str
) -> None:
    assert canonical_audit_rule(in_file) == canonical_audit_rule(listed)


def test_audit_rules_differing_in_a_field_do_not_compare_equal() -> None:
    a = canonical_audit_rule("-a always,exit -F arch=b64 -S mount -F auid>=1000 -k m")
    b = canonical_audit_rule("-a always,exit -F arch=b64 -S mount -F auid>=500 -k m")
    assert a != b
    assert canonical_audit_rule("-e 2") is None and canonical_audit_rule("-D") is None
    # -C compares two fields: swapping them is the same rule, changing the operator is not
    c1 = canonical_audit_rule("-a always,exit -S execve -C euid!=uid -k e")
    c2 = canonical_audit_rule("-a always,exit -S execve -C euid=uid -k e")
    assert c1 != c2
    # a different watched path is a different rule, slash or not
    assert canonical_audit_rule("-w /etc/pam.d/ -p wa -k i") != canonical_audit_rule(
        "-w /etc/pam -p wa -k i"
    )
    assert canonical_audit_rule("-w / -p wa -k r") == "-w / -p aw -k r"


def test_offered_methods_from_a_refused_login() -> None:
    assert offered_methods("u@h: Permission denied (publickey,password).\r\n") == (
        "publickey",
        "password",
    )
    assert offered_methods("Connection refused") is None


# --- checks on captures --------------------------------------------------------------------


def test_sockets_stock_flags_llmnr_and_the_stock_ssh_port() -> None:
    guest = FakeGuest({"ss": asset("ss.txt")})
    res = run_one(ListeningSocketsCheck(), guest, ssh_port=2222)
    assert res.status is Status.FAIL
    bad = res.detail["not_allowed"]
    assert "tcp 0.0.0.0:5355" in bad and "tcp 0.0.0.0:22" in bad
    # loopback listeners and the DHCP client socket are allowed
    assert not [b for b in bad if "127.0.0" in b or ":68" in b or "::1" in b]
    res22 = run_one(
        ListeningSocketsCheck(extra_allowed=(("tcp", 5355), ("udp", 5355))), guest, ssh_port=22
    )
    assert res22.status is Status.PASS


def test_setid_check_equal_to_inventory_and_flags_extra() -> None:
    found = asset("suid.txt")
    want = frozenset(ln for ln in found.splitlines() if ln)
    guest = FakeGuest({"find": found})
    assert run_one(SetidFilesCheck(), guest, setid_files=want).status is Status.PASS
    res = run_one(SetidFilesCheck(), guest, setid_files=want - {"/usr/bin/su"})
    assert res.status is Status.FAIL and res.detail["unexpected"] == ["/usr/bin/su"]


def test_units_check_on_capture_treats_timers_sockets_and_skipped_oneshots() -> None:
    show = "\n\n".join(
        [
            "Id=ssh.service\nActiveState=active\nSubState=running\nType=notify\nResult=success"
            "\nConditionResult=yes",
            "Id=sshd-keygen.service\nActiveState=inactive\nSubState=dead\nType=oneshot\n"
            "Result=success\nConditionResult=no",
            "Id=fstrim.timer\nActiveState=active\nSubState=waiting\nType=\nResult=success\n"
            "ConditionResult=yes",
            "Id=docker.service\nActiveState=failed\nSubState=failed\nType=notify\n"
            "Result=exit-code\nConditionResult=yes",
        ]
    )
    guest = FakeGuest(
        {
            "systemctl list-unit-files": "ssh.service enabled enabled\n"
            "sshd-keygen.service enabled enabled\nfstrim.timer enabled enabled\n"
            "docker.service enabled enabled\ngetty@.service enabled enabled\n",
            "systemctl show": show,
        }
    )
    res = run_one(EnabledUnitsActiveCheck(), guest)
    assert res.status is Status.FAIL
    assert res.observed == "docker.service failed/failed (exit-code)"
    assert "getty@.service" not in guest.calls[1]


def test_unit_list_capture_has_no_templates() -> None:
    from goldsmith.boot.checks import parse_unit_files

    units = parse_unit_files(asset("enabled.txt"))
    assert "ssh.service" in units and "fstrim.timer" in units
    assert not [u for u in units if "@" in u]


def test_no_failed_units_and_immutable_audit_on_stock() -> None:
    guest = FakeGuest(
        {"systemctl --failed": asset("failed.txt"), "auditctl -s": asset("auditctl_s.txt")}
    )
    assert run_one(NoFailedUnitsCheck(), guest).status is Status.PASS
    res = run_one(AuditImmutableCheck(), guest)
    assert res.status is Status.FAIL and res.observed.startswith("enabled 1")


def test_audit_rules_check_counts_missing_rules() -> None:
    guest = FakeGuest({"auditctl -l": asset("auditctl_l.txt")})
    res = run_one(
        AuditRulesCheck(), guest, audit_rules=("-D", "-w /etc/passwd -p wa -k identity", "-e 2")
    )
    assert res.status is Status.FAIL
    assert res.detail["missing"] == ["-w /etc/passwd -p wa -k identity"]
    assert run_one(AuditRulesCheck(), guest, audit_rules=("-D", "-e 2")).status is Status.PASS


def test_mount_check_on_capture() -> None:
    guest = FakeGuest({"findmnt": "/var/log " + asset("findmnt_opts.txt")})
    assert run_one(MountOptionsCheck(), guest).status is Status.PASS
    res = run_one(MountOptionsCheck(), guest, mounts={"/var/log": ("nodev",), "/tmp": ("noexec",)})
    assert res.status is Status.FAIL and res.observed == "/tmp: not mounted"


def test_host_keys_after_boot_time_pass_and_keys_in_image_fail() -> None:
    out = asset("hostkeys.txt") + "btime 1795596400\n"
    guest = FakeGuest({"stat": out})
    assert run_one(HostKeysCheck(), guest).status is Status.PASS
    res = run_one(HostKeysCheck(), guest, image_host_keys=("/etc/ssh/ssh_host_rsa_key",))
    assert res.status is Status.FAIL
    late = FakeGuest({"stat": asset("hostkeys.txt") + "btime 1795596500\n"})
    assert run_one(HostKeysCheck(), late).status is Status.FAIL


def test_sysctl_mismatch_is_excepted_only_with_an_exception() -> None:
    guest = FakeGuest({"sysctl": "net.ipv4.ip_forward = 1\nkernel.randomize_va_space = 2\n"})
    want = {
        "net.ipv4.ip_forward": ("0", "sysctl.ip-forward"),
        "kernel.randomize_va_space": ("2", "sysctl.aslr"),
    }
    res = run_one(SysctlCheck(), guest, sysctl=want)
    assert res.status is Status.FAIL and "net.ipv4.ip_forward" in res.detail["wrong"]
    res = run_one(
        SysctlCheck(), guest, sysctl=want, exceptions={"sysctl.ip-forward": "rootful Docker"}
    )
    assert res.status is Status.EXCEPTED


def test_sshd_check_on_stock_capture_fails_on_the_hardened_values() -> None:
    guest = FakeGuest({"sshd -T": asset("sshd_T.txt")})
    res = run_one(
        SshdConfigCheck(), guest, sshd={"permitrootlogin": "no", "usepam": "yes", "port": "2222"}
    )
    assert res.status is Status.FAIL
    assert res.detail["wrong"] == {"permitrootlogin": "without-password", "port": "22"}


def test_a_check_that_raises_is_an_error_and_the_rest_still_run() -> None:
    guest = FakeGuest({"stat": (0, "garbage")})
    results = run_checks(
        guest, Context(expectations()), [PathCheck(path="/x"), NoFailedUnitsCheck()]
    )
    assert results[0].status is Status.ERROR and results[0].id == "live.path./x"
    assert results[1].status is Status.ERROR  # systemctl unanswered: exit 127


def test_path_check_for_an_integration() -> None:
    guest = FakeGuest({"stat": "750 nanoclaw adm directory\n"})
    ok = run_one(PathCheck(path="/var/log/nanoclaw", mode=0o750, owner="nanoclaw"), guest)
    assert ok.status is Status.PASS
    bad = run_one(PathCheck(path="/var/log/nanoclaw", mode=0o700), guest)
    assert bad.status is Status.FAIL


def test_expectations_from_the_default_profile() -> None:
    profile = load_profile("nanoclaw-debian13").profile
    port, sshd, sysctl = expectations_from_profile(profile, load_catalogue())
    assert port == 2222
    assert sshd["permitrootlogin"] == "no" and sshd["allowgroups"] == "sshusers"
    assert sshd["passwordauthentication"] == "no"
    assert sysctl["kernel.randomize_va_space"][0] == "2"
    assert len(sysctl) >= 20


AIDE_DONE = "Id=goldsmith-aide-init.service\nActiveState=inactive\nSubState=dead\nType=oneshot\n"


@pytest.mark.parametrize(
    ("show", "stat", "status"),
    [
        (AIDE_DONE + "Result=success\nConditionResult=yes\n", "600 root root 1842540\n", "pass"),
        # skipped on this first boot: the image itself shipped a database (shared by every host)
        (AIDE_DONE + "Result=success\nConditionResult=no\n", "600 root root 1842540\n", "fail"),
        (AIDE_DONE + "Result=exit-code\nConditionResult=yes\n", "600 root root 10\n", "fail"),
        (AIDE_DONE + "Result=success\nConditionResult=yes\n", "644 root root 1842540\n", "fail"),
        (AIDE_DONE + "Result=success\nConditionResult=yes\n", "600 root root 0\n", "fail"),
        (AIDE_DONE + "Result=success\nConditionResult=yes\n", (1, ""), "fail"),
        # still running after the wait
        (
            AIDE_DONE.replace("inactive", "activating") + "Result=success\n",
            "600 root root 9\n",
            "fail",
        ),
    ],
)
def test_aide_baseline_check(show: str, stat: str | tuple[int, str], status: str) -> None:
    guest = FakeGuest({"systemctl is-enabled": "enabled\n", "for i in": show, "stat": stat})
    res = run_one(AideBaselineCheck(wait_s=10), guest)
    if status == "pass":
        assert res.status is Status.PASS, res.observed
    else:
        assert res.status is Status.FAIL, res.observed
    # it waited for the unit (bounded) before it looked at the database
    assert guest.calls[1].startswith("for i in $(seq 2)") and "activating" in guest.calls[1]
    assert guest.calls[2] == "stat -c %a %U %G %s /var/lib/aide/aide.db"


def test_aide_baseline_check_is_not_applicable_without_the_unit() -> None:
    guest = FakeGuest({"systemctl is-enabled": (1, "not-found\n")})
    res = run_one(AideBaselineCheck(), guest)
    assert res.status is Status.NOT_APPLICABLE
    assert "not-found" in res.observed
    assert len(guest.calls) == 1


class FlakyBusGuest(FakeGuest):
    """systemctl times out on D-Bus the first ``fails`` times, as PID 1 does under TCG."""

    def __init__(self, answers: dict[str, str | tuple[int, str]], fails: int) -> None:
        super().__init__(answers)
        self.fails = fails

    def run(
        self, command: Sequence[str] | str, *, timeout: float = 60, sudo: bool = False
    ) -> CommandResult:
        line = command if isinstance(command, str) else " ".join(command)
        if line.startswith("systemctl --failed") and self.fails > 0:
            self.fails -= 1
            self.calls.append(line)
            return CommandResult(
                (line,), 1, "", "Failed to list units: Connection timed out\n", 25.0
            )
        return super().run(command, timeout=timeout, sudo=sudo)


def test_systemctl_is_asked_again_after_a_dbus_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("goldsmith.boot.checks.time.sleep", lambda s: None)
    once = FlakyBusGuest({"systemctl --failed": ""}, fails=1)
    assert run_one(NoFailedUnitsCheck(), once).status is Status.PASS
    assert once.calls.count("systemctl --failed --no-legend --no-pager --plain") == 2
    # a real failure is not retried, and a timeout that persists is an error, not a pass
    always = FlakyBusGuest({"systemctl --failed": ""}, fails=5)
    res = run_one(NoFailedUnitsCheck(), always)
    assert res.status is Status.ERROR and "Connection timed out" in res.observed
    assert len(always.calls) == 3
    broken = FakeGuest({"systemctl --failed": (1, "")})
    assert run_one(NoFailedUnitsCheck(), broken).status is Status.ERROR
    assert len(broken.calls) == 1


APPARMOR_LOADED = """docker-default (enforce)
unix-chkpwd (complain)
runc (unconfined)
plasmashell//QtWebEngineProcess (complain)
/usr/sbin/chronyd (enforce)
"""


def test_apparmor_profiles_check_fails_on_profiles_that_do_not_enforce() -> None:
    guest = FakeGuest({"cat /sys/kernel/security/apparmor/profiles": APPARMOR_LOADED})
    res = run_one(AppArmorProfilesCheck(), guest)
    assert res.status is Status.FAIL
    assert res.observed.startswith("3 of 5 not enforcing")
    assert "unix-chkpwd (complain)" in res.observed and "runc (unconfined)" in res.observed
    assert "docker-default" not in res.observed
    assert parse_apparmor_profiles(APPARMOR_LOADED)["/usr/sbin/chronyd"] == "enforce"


def test_apparmor_profiles_check_passes_when_all_enforce() -> None:
    enforcing = "docker-default (enforce)\n/usr/sbin/chronyd (enforce)\nunix-chkpwd (enforce)\n"
    guest = FakeGuest({"cat /sys/kernel/security/apparmor/profiles": enforcing})
    res = run_one(AppArmorProfilesCheck(), guest)
    assert res.status is Status.PASS, res.observed
    assert res.observed == "3 profiles loaded, all enforcing"
    # nothing loaded at all is not "all enforcing": AppArmor confines nothing then
    guest = FakeGuest({"cat /sys/kernel/security/apparmor/profiles": ""})
    assert run_one(AppArmorProfilesCheck(), guest).status is Status.FAIL


def test_apparmor_profiles_check_without_apparmor() -> None:
    # installed but the kernel runs without it: a failure
    guest = FakeGuest({"cat": (1, ""), "test -d /etc/apparmor.d": ""})
    res = run_one(AppArmorProfilesCheck(), guest)
    assert res.status is Status.FAIL and "not the kernel's active LSM" in res.observed
    # not installed at all: not applicable
    guest = FakeGuest({"cat": (1, ""), "test -d": (1, "")})
    assert run_one(AppArmorProfilesCheck(), guest).status is Status.NOT_APPLICABLE
