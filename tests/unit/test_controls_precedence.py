"""Targeted cases: which file wins, in the order each reader (systemd, sshd, kmod) uses."""

from __future__ import annotations

from pathlib import Path

from controls_fixtures import LiveRootfsTarget, make_target, write

from goldsmith.controls.configfile import Style
from goldsmith.controls.rules.config_option import ConfigOptionRule
from goldsmith.controls.rules.directory import DirectoryRule
from goldsmith.controls.rules.kernel_module import KernelModuleRule
from goldsmith.controls.rules.sysctl import SysctlRule
from goldsmith.model.records import Status

KEY = "net.ipv4.ip_forward"


def sysctl(root: Path) -> SysctlRule:
    return SysctlRule(key=KEY, value="0", control="sysctl.ip-forward")


# sysctl --------------------------------------------------------------------------------------
def test_sysctl_etc_file_beats_packaged_default(tmp_path: Path) -> None:
    write(tmp_path, "/usr/lib/sysctl.d/99-zz-vendor.conf", f"{KEY} = 1\n")
    write(tmp_path, "/etc/sysctl.d/99-nanoclaw-hardening.conf", f"{KEY} = 0\n")
    # same name in /usr/lib is hidden by /etc; a different later name is not
    write(tmp_path, "/usr/lib/sysctl.d/99-nanoclaw-hardening.conf", f"{KEY} = 1\n")
    f = sysctl(tmp_path).check(make_target(tmp_path))
    # 99-zz-vendor sorts after 99-nanoclaw: it wins, wherever it lives
    assert f.status is Status.FAIL
    assert "99-zz-vendor.conf" in f.evidence.observed


def test_sysctl_same_name_earlier_dir_wins(tmp_path: Path) -> None:
    write(tmp_path, "/usr/lib/sysctl.d/50-default.conf", f"{KEY} = 1\n")
    write(tmp_path, "/etc/sysctl.d/50-default.conf", f"{KEY} = 0\n")
    f = sysctl(tmp_path).check(make_target(tmp_path))
    assert f.status is Status.PASS
    assert "/etc/sysctl.d/50-default.conf" in f.evidence.observed
    assert "/usr/lib/sysctl.d/50-default.conf" not in f.evidence.how


def test_sysctl_later_file_overrides_and_sysctl_conf_is_last(tmp_path: Path) -> None:
    t = make_target(tmp_path)
    write(tmp_path, "/usr/lib/sysctl.d/10-a.conf", f"{KEY} = 1\n")
    rule = sysctl(tmp_path)
    rule.apply(t)
    assert rule.check(t).status is Status.PASS
    # (/run/sysctl.d counts only on a live system: see test_controls_run_mount.py)
    write(tmp_path, "/usr/local/lib/sysctl.d/zz-late.conf", f"{KEY}=1\n")
    assert rule.check(t).status is Status.FAIL
    (tmp_path / "usr/local/lib/sysctl.d/zz-late.conf").unlink()
    write(tmp_path, "/etc/sysctl.conf", "net/ipv4/ip_forward = 1\n")
    f = rule.check(t)
    assert f.status is Status.FAIL and "/etc/sysctl.conf" in f.evidence.observed
    # apply cannot beat a later file; plan is empty, the failure stays visible
    assert rule.plan(t) == []


def test_sysctl_masked_file_and_explicit_beats_glob(tmp_path: Path) -> None:
    write(tmp_path, "/usr/lib/sysctl.d/50-bad.conf", f"{KEY} = 1\n")
    (tmp_path / "etc/sysctl.d").mkdir(parents=True)
    (tmp_path / "etc/sysctl.d/50-bad.conf").symlink_to("/dev/null")
    write(tmp_path, "/etc/sysctl.d/10-mine.conf", f"{KEY} = 0\n")
    write(tmp_path, "/etc/sysctl.d/90-glob.conf", "net.ipv4.ip_*ward = 1\n")
    assert sysctl(tmp_path).check(make_target(tmp_path)).status is Status.PASS


def test_sysctl_managed_file_is_sorted_and_shared(tmp_path: Path) -> None:
    t = make_target(tmp_path)
    SysctlRule(key="kernel.yama.ptrace_scope", value="2").apply(t)
    SysctlRule(key="fs.suid_dumpable", value="0").apply(t)
    SysctlRule(key="fs.suid_dumpable", value="0").apply(t)
    lines = (tmp_path / "etc/sysctl.d/99-nanoclaw-hardening.conf").read_text().splitlines()
    assert lines[1:] == ["fs.suid_dumpable = 0", "kernel.yama.ptrace_scope = 2"]


def test_sysctl_live_compares_proc(tmp_path: Path) -> None:
    write(tmp_path, "/etc/sysctl.d/99-nanoclaw-hardening.conf", f"{KEY} = 0\n")
    write(tmp_path, "/proc/sys/net/ipv4/ip_forward", "1\n")
    t = LiveRootfsTarget(tmp_path)
    f = sysctl(tmp_path).check(t)
    assert f.status is Status.FAIL and "running kernel: 1" in f.evidence.observed
    write(tmp_path, "/proc/sys/net/ipv4/ip_forward", "0\n")
    assert sysctl(tmp_path).check(t).status is Status.PASS


def test_sysctl_offline_says_running_value_not_checked(tmp_path: Path) -> None:
    f = sysctl(tmp_path).check(make_target(tmp_path))
    assert f.status is Status.FAIL
    assert "offline" in f.evidence.how


# sshd ----------------------------------------------------------------------------------------
DROPIN = "/etc/ssh/sshd_config.d/00-goldsmith.conf"


def sshd_rule(**kw: object) -> ConfigOptionRule:
    args: dict[str, object] = {
        "path": "/etc/ssh/sshd_config",
        "style": Style.SSHD,
        "key": "PermitRootLogin",
        "value": "no",
        "dropin": DROPIN,
    }
    args.update(kw)
    return ConfigOptionRule(**args)  # type: ignore[arg-type]


def test_sshd_include_is_processed_at_its_position(tmp_path: Path) -> None:
    write(
        tmp_path,
        "/etc/ssh/sshd_config",
        "Include /etc/ssh/sshd_config.d/*.conf\npermitrootlogin yes\n",
    )
    write(tmp_path, "/etc/ssh/sshd_config.d/50-cloud.conf", "PermitRootLogin prohibit-password\n")
    write(tmp_path, "/etc/ssh/sshd_config.d/10-site.conf", "PermitRootLogin NO\n")
    f = sshd_rule().check(make_target(tmp_path))
    # 10-site comes first (lexical) and first wins; value compare is case-insensitive
    assert f.status is Status.PASS
    assert "10-site.conf:1" in f.evidence.observed


def test_sshd_setting_before_include_wins_over_dropin(tmp_path: Path) -> None:
    write(tmp_path, "/etc/ssh/sshd_config", "PermitRootLogin yes\nInclude sshd_config.d/*.conf\n")
    write(tmp_path, DROPIN, "PermitRootLogin no\n")
    t = make_target(tmp_path)
    rule = sshd_rule()
    f = rule.check(t)
    assert f.status is Status.FAIL and "sshd_config:1" in f.evidence.observed
    rule.apply(t)
    assert rule.check(t).status is Status.PASS
    assert (tmp_path / "etc/ssh/sshd_config").read_text().startswith("PermitRootLogin no\n")


def test_sshd_conflicting_main_value_after_dropin_is_made_consistent(tmp_path: Path) -> None:
    write(
        tmp_path,
        "/etc/ssh/sshd_config",
        "Include /etc/ssh/sshd_config.d/*.conf\nPasswordAuthentication yes\n",
    )
    (tmp_path / "etc/ssh/sshd_config.d").mkdir()
    t = make_target(tmp_path)
    rule = sshd_rule(key="PasswordAuthentication")
    changes = rule.apply(t)
    # the main file's value was the effective one: it is set in place, no second copy
    assert [(c.object, c.before, c.after) for c in changes] == [
        ("/etc/ssh/sshd_config", "yes", "no")
    ]
    assert rule.check(t).status is Status.PASS


def test_sshd_match_blocks_do_not_count_and_insert_goes_before_match(tmp_path: Path) -> None:
    write(tmp_path, "/etc/ssh/sshd_config", "UsePAM yes\nMatch User backup\n\tPermitRootLogin no\n")
    t = make_target(tmp_path)
    rule = sshd_rule(dropin=None)
    f = rule.check(t)
    assert f.status is Status.FAIL and f.evidence.observed == "not set"
    rule.apply(t)
    assert (tmp_path / "etc/ssh/sshd_config").read_text() == (
        "UsePAM yes\nPermitRootLogin no\nMatch User backup\n\tPermitRootLogin no\n"
    )
    assert rule.check(t).status is Status.PASS


def test_sshd_dropin_not_included_falls_back_to_main_file(tmp_path: Path) -> None:
    write(tmp_path, "/etc/ssh/sshd_config", "UsePAM yes\n")
    t = make_target(tmp_path)
    sshd_rule().apply(t)
    assert not (tmp_path / DROPIN.lstrip("/")).exists()
    assert "PermitRootLogin no" in (tmp_path / "etc/ssh/sshd_config").read_text()


def test_sshd_match_inside_included_file_ends_with_that_file(tmp_path: Path) -> None:
    write(
        tmp_path,
        "/etc/ssh/sshd_config",
        "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin no\n",
    )
    write(tmp_path, "/etc/ssh/sshd_config.d/01-x.conf", "Match User a\n  PermitRootLogin yes\n")
    f = sshd_rule().check(make_target(tmp_path))
    assert f.status is Status.PASS and "sshd_config:2" in f.evidence.observed


def test_sshd_validator_is_passed_to_the_write(tmp_path: Path) -> None:
    write(tmp_path, "/etc/ssh/sshd_config", "UsePAM yes\n")
    rule = sshd_rule(dropin=None, validate=("/usr/sbin/sshd", "-t", "-f", "%s"))
    steps = rule.steps(make_target(tmp_path))
    assert [getattr(s, "validate", None) for s in steps] == [("/usr/sbin/sshd", "-t", "-f", "%s")]


# systemd-style drop-ins (last wins) ----------------------------------------------------------
def test_journald_dropin_overrides_main_file(tmp_path: Path) -> None:
    write(tmp_path, "/etc/systemd/journald.conf", "[Journal]\nStorage=persistent\n")
    write(
        tmp_path, "/usr/lib/systemd/journald.conf.d/50-vendor.conf", "[Journal]\nStorage=volatile\n"
    )
    t = make_target(tmp_path)
    rule = ConfigOptionRule(
        path="/etc/systemd/journald.conf",
        style=Style.SYSTEMD,
        section="Journal",
        key="Storage",
        value="persistent",
    )
    f = rule.check(t)
    assert f.status is Status.FAIL and "50-vendor.conf" in f.evidence.observed
    rule.apply(t)
    assert rule.check(t).status is Status.PASS


# /etc/default (shell style) -----------------------------------------------------------------
USERADD = "# useradd defaults\nSHELL=/bin/sh\n# INACTIVE=-1\nINACTIVE = 45\n"


def test_shell_style_reads_only_what_useradd_and_sh_read_and_adds_key_equals_value(
    tmp_path: Path,
) -> None:
    """useradd ignores "INACTIVE = 45" (its key would be "INACTIVE "), and a shell sourcing
    the file would run a command called INACTIVE: that line is no setting, so the check
    fails and apply adds INACTIVE=45 (the stray line is left for a person to remove)."""
    write(tmp_path, "/etc/default/useradd", USERADD)
    t = make_target(tmp_path)
    rule = ConfigOptionRule(
        path="/etc/default/useradd", style=Style.SHELL, key="INACTIVE", value="45"
    )
    assert rule.check(t).status is Status.FAIL
    planned = rule.plan(t)
    assert [(c.object, c.attribute, c.after) for c in planned] == [
        ("/etc/default/useradd", "INACTIVE", "45")
    ]
    rule.apply(t)
    assert (tmp_path / "etc/default/useradd").read_text() == USERADD + "INACTIVE=45\n"
    assert rule.check(t).status is Status.PASS
    assert rule.plan(t) == []


def test_shell_style_edits_an_existing_assignment_in_place(tmp_path: Path) -> None:
    write(tmp_path, "/etc/default/sysstat", '# comment\nENABLED="false"\nHISTORY=7\n')
    t = make_target(tmp_path)
    rule = ConfigOptionRule(
        path="/etc/default/sysstat", style=Style.SHELL, key="ENABLED", value='"true"'
    )
    rule.apply(t)
    assert (tmp_path / "etc/default/sysstat").read_text() == (
        '# comment\nENABLED="true"\nHISTORY=7\n'
    )


# kmod ----------------------------------------------------------------------------------------
def test_modprobe_first_install_wins(tmp_path: Path) -> None:
    write(
        tmp_path,
        "/usr/lib/modprobe.d/00-vendor.conf",
        "install usb-storage /sbin/modprobe --ignore-install usb-storage\n",
    )
    t = make_target(tmp_path)
    rule = KernelModuleRule(name="usb-storage")
    rule.apply(t)
    f = rule.check(t)
    # 00-vendor.conf sorts before usb-storage.conf: its install line is the one kmod runs
    assert f.status is Status.FAIL and "00-vendor.conf" in f.evidence.observed
    # the same name in /etc hides the vendor file
    write(tmp_path, "/etc/modprobe.d/00-vendor.conf", "# masked by the admin\n")
    assert rule.check(t).status is Status.PASS


def test_modprobe_dash_and_underscore_are_the_same_module(tmp_path: Path) -> None:
    write(
        tmp_path, "/lib/modprobe.d/x.conf", "install usb_storage /bin/true\nblacklist usb_storage\n"
    )
    assert KernelModuleRule(name="usb-storage").check(make_target(tmp_path)).status is Status.PASS


# tmpfiles ------------------------------------------------------------------------------------
def test_tmpfiles_h_line_first_one_wins(tmp_path: Path) -> None:
    write(tmp_path, "/etc/passwd", "root:x:0:0::/root:/bin/sh\n")
    write(tmp_path, "/etc/group", "root:x:0:\n")
    t = make_target(tmp_path)
    rule = DirectoryRule(path="/var/log/nanoclaw", append_only=True)
    rule.apply(t)
    text = (tmp_path / "etc/tmpfiles.d/goldsmith-var-log-nanoclaw.conf").read_text()
    assert "h /var/log/nanoclaw - - - - +a\n" in text
    assert rule.check(t).status is Status.PASS
    write(tmp_path, "/etc/tmpfiles.d/00-admin.conf", "h /var/log/nanoclaw - - - - -a\n")
    f = rule.check(t)
    assert f.status is Status.FAIL and "-a" in f.evidence.observed
