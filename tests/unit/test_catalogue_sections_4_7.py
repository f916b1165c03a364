"""The catalogue data of CIS sections 4 to 7 (firewall, access, logging, maintenance):
coverage of both benchmarks, the seed's settings, and an apply/check cycle of every
file-level control on a fake root."""

from __future__ import annotations

from pathlib import Path

import pytest
from controls_fixtures import make_target, tree_hash, write

from goldsmith.controls.base import Control
from goldsmith.controls.catalogue import (
    Benchmark,
    Catalogue,
    catalogue_dir,
    coverage,
    load_catalogue,
)
from goldsmith.model.profile_loader import load_profile
from goldsmith.model.records import Status

SECTIONS = ("4", "5", "6", "7")
FILES = ("04-firewall.yaml", "05-access.yaml", "06-logging.yaml", "07-maintenance.yaml")


@pytest.fixture(scope="module")
def cat(tmp_path_factory: pytest.TempPathFactory) -> Catalogue:
    d = tmp_path_factory.mktemp("cat")
    for name in FILES:
        (d / name).write_text((catalogue_dir() / name).read_text(encoding="utf-8"))
    return load_catalogue(d)


def control(cat: Catalogue, cid: str) -> Control:
    return cat.get(cid)


@pytest.mark.parametrize("benchmark", ["cis-debian13", "cis-debian12"])
def test_every_server_recommendation_of_sections_4_to_7_is_accounted_for(
    cat: Catalogue, benchmark: Benchmark
) -> None:
    cov = coverage(cat, benchmark)
    mine = [r.id for r in cov.recommendations if r.id.split(".")[0] in SECTIONS]
    assert mine, "the benchmark list has rows for sections 4-7"
    assert [i for i in cov.missing if i in mine] == []
    assert cov.conflicting == ()
    # every not-automated entry of these files names a real recommendation of the benchmark
    ids = {r.id for r in cov.recommendations}
    for n in cat.not_automated:
        if benchmark in n.ids:
            assert n.ids[benchmark] in ids, n
            assert n.ids[benchmark].split(".")[0] in SECTIONS


def test_each_recommendation_is_listed_as_not_automated_at_most_once(cat: Catalogue) -> None:
    for benchmark in ("cis-debian13", "cis-debian12"):
        listed = [n.ids[benchmark] for n in cat.not_automated if benchmark in n.ids]
        assert len(listed) == len(set(listed)), benchmark


def test_every_control_has_cis_soc2_and_both_iso_references(cat: Catalogue) -> None:
    for c in cat.controls.values():
        refs = c.references
        assert refs.get("cis-debian13") or refs.get("cis-debian12"), c.id
        for kind in ("soc2", "iso27001-2013", "iso27001-2022"):
            assert refs.get(kind), (c.id, kind)
        assert c.rationale.strip().rstrip(".") != c.title.strip().rstrip("."), c.id


def test_ufw_is_not_applicable_because_the_firewall_is_nftables(cat: Catalogue) -> None:
    cov = coverage(cat, "cis-debian13")
    for rec in ("4.1.1", "4.1.2", "4.1.3", "4.1.4", "4.1.5"):
        assert cov.not_automated[rec].kind == "not_applicable"
    assert control(cat, "firewall.ufw-absent").params["state"] == "absent"
    text = control(cat, "nftables.ruleset").rule().text()  # type: ignore[attr-defined]
    assert "flush ruleset" not in text  # Docker's iptables-nft tables must survive a reload
    assert "tcp dport 2222 ct state new accept" in text
    for chain in ("input", "forward", "output"):
        assert f"type filter hook {chain} priority filter; policy drop;" in text
    assert 'iifname "docker0" accept' in text


def test_aide_is_installed_and_hashes_the_audit_tools(cat: Catalogue) -> None:
    assert control(cat, "aide.installed").params["name"] == "aide"
    tools = {c.params["key"] for c in cat.controls.values() if c.id.startswith("aide.audit-tool-")}
    assert {f"/usr/sbin/{t}" for t in ("auditctl", "auditd", "ausearch", "aureport")} <= tools
    # 6.3.2: the baseline is created on the deployed host's first boot, then checked daily
    cov = coverage(cat, "cis-debian13")
    assert "6.3.2" not in cov.not_automated
    unit = control(cat, "aide.first-boot-baseline").params
    assert unit["path"] == "/etc/systemd/system/goldsmith-aide-init.service"
    text = unit["content"]
    assert "ConditionPathExists=!/var/lib/aide/aide.db" in text  # once, never over a baseline
    assert "ExecStart=/usr/sbin/aideinit --yes --force" in text
    assert "After=" in text and "goldsmith-ssh-hostkeys.service" in text
    assert "UMask=0027" in text  # its log in /var/log/aide must be 0640 (logfiles.permissions)
    enabled = control(cat, "aide.first-boot-baseline-enabled").params
    assert dict(enabled) == {
        "unit": "goldsmith-aide-init.service",
        "state": "enabled",
        "wanted_by": ["multi-user.target"],  # as the unit's [Install]: apply --check plans it
    }
    assert "WantedBy=multi-user.target" in text
    assert control(cat, "aide.periodic-check").params["unit"] == "dailyaidecheck.timer"
    ids = list(cat.controls)
    assert ids.index("aide.first-boot-baseline") < ids.index("aide.first-boot-baseline-enabled")


SEED_SSHD = {
    "sshd.port": "2222",
    "sshd.permit-root-login": "no",
    "sshd.log-level": "VERBOSE",
    "sshd.max-auth-tries": "3",
    "sshd.allow-groups": "sshusers",
    "sshd.password-authentication": "no",
}


@pytest.mark.parametrize(("cid", "value"), SEED_SSHD.items())
def test_seed_sshd_settings_are_the_defaults(cat: Catalogue, cid: str, value: str) -> None:
    assert control(cat, cid).params["value"] == value


def test_audit_rules_cover_the_seed(cat: Catalogue) -> None:
    def rules(cid: str) -> list[str]:
        return list(control(cat, cid).params["rules"])

    assert any("-S execve" in r and "-C" not in r for r in rules("auditd.execve"))
    agent = " ".join(rules("auditd.agent-watch"))
    assert "-w /opt/nanoclaw " in agent
    assert "-w /etc/nanoclaw " in agent
    privileged = " ".join(rules("auditd.privileged-commands"))
    for binary in ("/usr/bin/sudo", "/usr/bin/su", "/usr/bin/passwd", "/usr/bin/mount"):
        assert f"path={binary} " in privileged
    logins = " ".join(rules("auditd.logins") + rules("auditd.session"))
    for path in ("/var/run/faillock", "/var/log/wtmp", "/var/log/btmp", "lastlog"):
        assert path in logins
    assert "/etc/sudoers" in " ".join(rules("auditd.sudoers-scope"))
    assert "/etc/shadow" in " ".join(rules("auditd.identity"))
    assert "time-change" in " ".join(rules("auditd.time-change"))
    assert "init_module" in " ".join(rules("auditd.kernel-modules"))
    assert "-S mount" in " ".join(rules("auditd.mounts"))
    # -e 2 alone in the file that sorts last among the rule files
    immutable = control(cat, "auditd.immutable")
    assert rules("auditd.immutable") == ["-e 2"]
    names = [c.params["name"] for c in cat.controls.values() if c.rule_type == "audit-rules"]
    assert max(names) == immutable.params["name"]


def test_default_profile_settings_build_and_agree_on_the_ssh_port(cat: Catalogue) -> None:
    prof = load_profile("nanoclaw-debian13").profile
    mine = {cid: s for cid, s in prof.controls.items() if cid in cat.controls}
    assert "sshd.port" in mine
    for cid, settings in mine.items():
        control(cat, cid).rule(settings.params)  # builds, or raises ProfileError
    port = mine["sshd.port"].params["value"]
    assert port == "2222"
    assert mine["nftables.ruleset"].params["context"]["ssh_port"] == port
    assert mine["fail2ban.sshd-jail"].params["context"]["ssh_port"] == port


# apply / check cycle on a fake root -------------------------------------------------------------

DEBIAN_SSHD = """Include /etc/ssh/sshd_config.d/*.conf
#PermitRootLogin prohibit-password
KbdInteractiveAuthentication no
UsePAM yes
X11Forwarding yes
PrintMotd no
AcceptEnv LANG LC_*
Subsystem\tsftp\t/usr/lib/openssh/sftp-server
PermitRootLogin yes
"""

#: rule types that only touch files (no chroot command runs, no validate argv)
FILE_TYPES = ("config-option", "managed-file", "audit-rules", "file-mode")


def fake_root(root: Path) -> None:
    write(root, "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n")
    write(root, "/etc/group", "root:x:0:\nshadow:x:42:\nadm:x:4:\n")
    for f, mode in (("/etc/shadow", 0o666), ("/etc/gshadow", 0o640), ("/etc/passwd-", 0o664)):
        write(root, f, "root:*::\n", mode)
    write(root, "/etc/group-", "root:x:0:\n", 0o664)
    write(root, "/etc/shadow-", "root:*::\n", 0o644)
    write(root, "/etc/gshadow-", "root:*::\n", 0o644)
    write(root, "/etc/shells", "/bin/sh\n/usr/sbin/nologin\n", 0o664)
    write(root, "/etc/security/opasswd", "", 0o644)
    write(root, "/etc/ssh/sshd_config", DEBIAN_SSHD, 0o644)
    write(root, "/etc/ssh/ssh_host_ed25519_key", "k", 0o644)
    write(root, "/etc/ssh/ssh_host_ed25519_key.pub", "k", 0o666)
    write(root, "/etc/login.defs", "UMASK\t\t022\nPASS_MAX_DAYS\t99999\nENCRYPT_METHOD SHA512\n")
    write(root, "/etc/default/useradd", "# INACTIVE=-1\nSHELL=/bin/sh\n")
    write(root, "/etc/security/pwquality.conf", "# minlen = 8\n")
    write(root, "/etc/audit/auditd.conf", "max_log_file = 8\nmax_log_file_action = ROTATE\n")
    write(root, "/etc/audit/rules.d/audit.rules", "-D\n-b 8192\n", 0o644)
    write(root, "/etc/systemd/journald.conf", "[Journal]\n#Storage=auto\n")
    write(root, "/etc/systemd/system.conf", "[Manager]\n#DefaultUMask=0022\n")
    write(root, "/var/log/syslog", "x", 0o644)
    write(root, "/var/log/audit/audit.log", "x", 0o644)
    (root / "var/log/audit").chmod(0o755)
    for b in ("auditctl", "aureport", "ausearch", "auditd", "augenrules"):
        write(root, f"/usr/sbin/{b}", "#!/bin/sh\n", 0o775)
    for d in ("usr/local/sbin", "usr/local/bin", "usr/bin", "usr/lib", "usr/libexec", "usr/share"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "usr/bin").chmod(0o775)
    (root / "root").mkdir(exist_ok=True)
    (root / "etc/sudoers.d").mkdir(exist_ok=True)


def test_file_level_controls_apply_then_pass_and_a_second_apply_changes_nothing(
    cat: Catalogue, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    fake_root(root)
    t = make_target(root)
    controls = [
        c
        for c in cat.controls.values()
        if c.rule_type in FILE_TYPES and not c.params.get("validate")
    ]
    assert len(controls) > 80
    failing_before = [c.id for c in controls if c.check(t).status is Status.FAIL]
    assert "sshd.permit-root-login" in failing_before
    assert "permissions.shadow" in failing_before

    for c in controls:
        c.apply(t)
    for c in controls:
        found = c.check(t)
        assert found.status in (Status.PASS, Status.NOT_APPLICABLE), (c.id, found.evidence)
        assert c.plan(t) == [], c.id
    assert all(c.check(t).status is Status.PASS for c in controls if c.id in failing_before)

    before = tree_hash(root)
    assert [ch for c in controls for ch in c.apply(t)] == []
    assert tree_hash(root) == before

    sshd = (root / "etc/ssh/sshd_config").read_text()
    assert "PermitRootLogin no" in sshd  # the conflicting value in the main file was rewritten
    # the settings live in sshd_config itself, where OpenSCAP's checks read them too
    assert "Port 2222" in sshd
    assert (root / "etc/ssh/sshd_config").stat().st_mode & 0o777 == 0o600
    assert (root / "etc/shadow").stat().st_mode & 0o777 == 0o640
    assert (root / "etc/shadow").stat().st_gid == 42
    assert "/usr/sbin/nologin" not in (root / "etc/shells").read_text()
    assert (
        (root / "etc/audit/rules.d/99-goldsmith-finalize.rules")
        .read_text()
        .rstrip()
        .endswith("-e 2")
    )


def test_the_catalogue_files_are_shipped_beside_the_loader() -> None:
    for name in FILES:
        assert (catalogue_dir() / name).is_file(), name


def test_every_reviewed_setuid_program_has_a_privileged_audit_rule(cat: Catalogue) -> None:
    """CIS 6.2.3.6 / 6.2.3.10 (and OpenSCAP's audit_rules_privileged_commands, which counts
    them) want one rule per setuid/setgid program: the reviewed allow list of the suid/sgid
    scan and the audit rules must name the same programs."""
    allowed = set(control(cat, "files.suid-sgid-reviewed").params["allow"])
    audited = set()
    for line in control(cat, "auditd.privileged-commands").params["rules"]:
        fields = line.split()
        assert fields[:2] == ["-a", "always,exit"] and "perm=x" in fields, line
        audited.add(next(f.removeprefix("path=") for f in fields if f.startswith("path=")))
    assert allowed, "the suid/sgid scan has an allow list"
    assert sorted(allowed - audited) == [], "setuid/setgid programs without an audit rule"
    assert sorted(audited - allowed) == [], "audited as privileged but not setuid/setgid"
