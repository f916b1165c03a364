"""The control catalogue as a whole: coverage of both benchmarks, the references every control
carries, the loader's errors, and an apply/check cycle of the file-level controls of CIS
sections 1 to 3 on a fake root."""

from __future__ import annotations

from pathlib import Path

import pytest
from controls_fixtures import GOOD_CATALOGUE, make_target, tree_hash, write

from goldsmith.controls.catalogue import (
    Benchmark,
    Catalogue,
    NotAutomatedKind,
    benchmark_recommendations,
    catalogue_dir,
    coverage,
    load_catalogue,
)
from goldsmith.errors import ProfileError
from goldsmith.model.records import Status

BENCHMARKS: tuple[Benchmark, ...] = ("cis-debian13", "cis-debian12")


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return load_catalogue()


# coverage ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_every_server_recommendation_is_automated_or_listed_with_a_reason(
    cat: Catalogue, benchmark: Benchmark
) -> None:
    cov = coverage(cat, benchmark)
    assert cov.total == len(benchmark_recommendations(benchmark)) > 300
    assert cov.missing == ()
    assert cov.conflicting == ()
    assert len(cov.automated) + len(cov.not_automated) == cov.total
    for n in cov.not_automated.values():
        assert len(n.reason) > 60, n  # a reason, not a label


def test_at_least_90_percent_of_debian13_server_recommendations_are_automated(
    cat: Catalogue,
) -> None:
    cov = coverage(cat, "cis-debian13")
    assert cov.percent_automated >= 90.0, (len(cov.automated), cov.total)
    assert cov.count(NotAutomatedKind.MANUAL) + cov.count(NotAutomatedKind.NOT_APPLICABLE) == len(
        cov.not_automated
    )


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_each_recommendation_is_listed_as_not_automated_at_most_once(
    cat: Catalogue, benchmark: Benchmark
) -> None:
    listed = [n.ids[benchmark] for n in cat.not_automated if benchmark in n.ids]
    assert len(listed) == len(set(listed))
    known = {r.id for r in benchmark_recommendations(benchmark)}
    assert set(listed) <= known


def test_every_control_has_cis_soc2_and_both_iso_references(cat: Catalogue) -> None:
    assert len(cat.controls) > 250
    for c in cat.controls.values():
        refs = c.references
        assert refs.get("cis-debian13") or refs.get("cis-debian12"), c.id
        for kind in ("soc2", "iso27001-2013", "iso27001-2022"):
            assert refs.get(kind), (c.id, kind)
        assert c.rationale.strip().rstrip(".") != c.title.strip().rstrip("."), c.id


def test_every_rule_builds_with_its_defaults(cat: Catalogue) -> None:
    for c in cat.controls.values():
        assert c.rule().type_name == c.rule_type, c.id


def test_docker_needs_stay_in_the_catalogue_to_be_waived_by_exceptions(cat: Catalogue) -> None:
    # rootful Docker turns ip_forward on and needs overlayfs: the controls stay (value 0,
    # module refused); the NanoClaw profile waives them with explicit exceptions
    fwd = cat.get("sysctl.ip-forward")
    assert (fwd.params["key"], fwd.params["value"]) == ("net.ipv4.ip_forward", "0")
    assert cat.get("kmod.overlay").params["name"] == "overlay"
    d13 = coverage(cat, "cis-debian13")
    assert d13.automated["3.3.1.1"] == ("sysctl.ip-forward",)
    assert d13.automated["1.1.1.6"] == ("kmod.overlay",)


def test_the_seed_sysctl_keys_are_in_the_nanoclaw_hardening_file(cat: Catalogue) -> None:
    seed = {
        "net.ipv4.ip_forward": "0",
        "net.ipv4.conf.all.send_redirects": "0",
        "net.ipv4.conf.all.accept_source_route": "0",
        "kernel.dmesg_restrict": "1",
        "fs.protected_hardlinks": "1",
        "fs.protected_symlinks": "1",
        "net.ipv4.conf.all.log_martians": "1",
    }
    sysctls = [c for c in cat.controls.values() if c.rule_type == "sysctl"]
    got = {c.params["key"]: c.params["value"] for c in sysctls}
    for key, value in seed.items():
        assert got.get(key) == value, key
    for c in sysctls:
        assert c.rule().file == "/etc/sysctl.d/99-nanoclaw-hardening.conf"  # type: ignore[attr-defined]


def test_partitions_the_image_does_not_have_are_not_applicable_with_the_reason(
    cat: Catalogue,
) -> None:
    cov = coverage(cat, "cis-debian13")
    for rec in ("1.1.2.4.1", "1.1.2.4.2"):
        assert cov.not_automated[rec].kind is NotAutomatedKind.NOT_APPLICABLE
    assert "docker" in cov.not_automated["1.1.2.4.2"].reason.lower()
    for rec, mp in (
        ("1.1.2.1.4", "/tmp"),
        ("1.1.2.6.1", "/var/log"),
        ("1.1.2.2.4", "/dev/shm"),
        ("1.1.2.3.2", "/home"),
    ):
        (cid,) = cov.automated[rec]
        assert cat.get(cid).params["mountpoint"] == mp


# loader errors ----------------------------------------------------------------------------------

GOOD = GOOD_CATALOGUE


def test_a_valid_file_loads(tmp_path: Path) -> None:
    (tmp_path / "01-a.yaml").write_text(GOOD)
    got = load_catalogue(tmp_path)
    assert list(got.controls) == ["sysctl.test-key"]
    assert got.origins["sysctl.test-key"].endswith("01-a.yaml:2")


@pytest.mark.parametrize(
    ("old", "new", "key", "line", "words"),
    [
        # a rule whose parameters do not build
        ('value: "1"}', 'value: "1", colour: red}', "rule", 6, "colour"),
        # an unknown rule type
        ("{type: sysctl,", "{type: sysctl-ish,", "rule", 6, "sysctl-ish"),
        # an unknown key in an entry
        ("    level: 1\n", "    level: 1\n    severity: high\n", "severity", 6, "extra"),
        # a CIS id that is not a server recommendation of the benchmark
        ('["1.5.5"]', '["9.9.9"]', "references.cis-debian13", 8, "9.9.9"),
    ],
)
def test_a_bad_entry_names_file_line_and_key(
    tmp_path: Path, old: str, new: str, key: str, line: int, words: str
) -> None:
    assert old in GOOD
    (tmp_path / "01-a.yaml").write_text(GOOD.replace(old, new, 1))
    with pytest.raises(ProfileError) as err:
        load_catalogue(tmp_path)
    e = err.value
    assert e.file is not None and e.file.endswith("01-a.yaml")
    assert e.line == line
    assert e.key is not None and key in e.key
    assert words in str(e).lower() or words in (e.hint or "").lower()


def test_a_duplicate_control_id_across_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "01-a.yaml").write_text(GOOD)
    (tmp_path / "02-b.yaml").write_text(GOOD)
    with pytest.raises(ProfileError) as err:
        load_catalogue(tmp_path)
    assert err.value.file is not None and err.value.file.endswith("02-b.yaml")
    assert "duplicate control id 'sysctl.test-key'" in str(err.value)
    assert "01-a.yaml:2" in (err.value.hint or "")


def test_a_recommendation_listed_as_not_automated_twice_is_refused(tmp_path: Path) -> None:
    na = (
        'not_automated:\n  - cis-debian13: "1.4.1"\n    kind: manual\n'
        "    reason: a reason that is long enough to pass the schema\n"
    )
    (tmp_path / "01-a.yaml").write_text(na)
    (tmp_path / "02-b.yaml").write_text(na)
    with pytest.raises(ProfileError, match="listed as not automated twice"):
        load_catalogue(tmp_path)


# sections 1-3 on a fake root --------------------------------------------------------------------

#: rule types of sections 1-3 that only touch files (no chroot command, no package database)
FILE_TYPES = (
    "sysctl",
    "kernel-module",
    "managed-file",
    "file-mode",
    "config-option",
    "banner",
    "mount-options",
    "file-content",
    "cron-at-permissions",
)
SECTION_FILES = ("01-initial-setup.yaml", "02-services.yaml", "03-network.yaml")

FSTAB = """# <file system> <mount point> <type> <options> <dump> <pass>
UUID=1 / ext4 errors=remount-ro 0 1
tmpfs /tmp tmpfs defaults,size=512M 0 0
tmpfs /dev/shm tmpfs defaults 0 0
UUID=2 /var/tmp ext4 nodev 0 2
UUID=3 /var/log ext4 defaults 0 2
UUID=4 /var/log/audit ext4 nodev,nosuid,noexec 0 2
UUID=5 /home ext4 defaults 0 2
"""
SOURCES = """deb http://deb.debian.org/debian trixie main

deb http://deb.debian.org/debian-security trixie-security main
deb [signed-by=/usr/share/keyrings/x.pgp] http://example.org/x trixie main
"""


def fake_root(root: Path) -> None:
    write(root, "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n")
    write(root, "/etc/group", "root:x:0:\nadm:x:4:\n")
    write(root, "/etc/os-release", 'ID=debian\nVERSION_ID="13"\n')
    write(root, "/etc/fstab", FSTAB)
    write(root, "/etc/apt/sources.list", SOURCES)
    write(root, "/etc/apt/trusted.gpg.d/debian.asc", "key", 0o666)
    write(root, "/usr/share/keyrings/debian-archive-keyring.pgp", "key", 0o644)
    (root / "usr/share/keyrings").chmod(0o775)
    (root / "etc/apt/sources.list.d").mkdir(parents=True)
    write(root, "/etc/issue", "Debian GNU/Linux 13 \\n \\l\n")
    write(root, "/etc/motd", "The programs included with the Debian GNU/Linux system\n", 0o664)
    write(root, "/etc/crontab", "17 * * * * root cd / && run-parts /etc/cron.hourly\n")
    write(root, "/etc/cron.daily/dpkg", "#!/bin/sh\n", 0o755)
    (root / "etc/cron.daily").chmod(0o755)
    write(root, "/boot/grub/grub.cfg", "linux /vmlinuz root=UUID=1\n", 0o644)
    write(root, "/etc/chrony/chrony.conf", "pool 2.debian.pool.ntp.org iburst\n")
    write(root, "/etc/systemd/coredump.conf", "[Coredump]\n#Storage=external\n")
    write(root, "/etc/sysctl.d/50-local.conf", "net.ipv4.ip_forward = 1\n")


def test_section_1_to_3_file_controls_apply_then_pass_and_a_second_apply_changes_nothing(
    tmp_path: Path,
) -> None:
    d = tmp_path / "cat"
    d.mkdir()
    for name in SECTION_FILES:
        (d / name).write_text((catalogue_dir() / name).read_text(encoding="utf-8"))
    cat = load_catalogue(d)
    root = tmp_path / "root"
    fake_root(root)
    t = make_target(root)
    controls = [c for c in cat.controls.values() if c.rule_type in FILE_TYPES]
    assert len(controls) > 60
    failing_before = {c.id for c in controls if c.check(t).status is Status.FAIL}
    for cid in (
        "sysctl.ip-forward",
        "kmod.overlay",
        "mounts.tmp",
        "mounts.dev-shm",
        "mounts.var-log",
        "apt.sources-signed-by",
        "apt.keyring-files",
        "cron.crontab-permissions",
        "cron.cron-daily-permissions",
        "bootloader.config-permissions",
        "banners.login",
        "coredump.storage",
    ):
        assert cid in failing_before, cid
    assert cat.get("chrony.time-sources").check(t).status is Status.PASS

    for c in controls:
        c.apply(t)
    for c in controls:
        found = c.check(t)
        assert found.status in (Status.PASS, Status.NOT_APPLICABLE), (c.id, found.evidence)
        assert c.plan(t) == [], c.id
    before = tree_hash(root)
    assert [ch for c in controls for ch in c.apply(t)] == []
    assert tree_hash(root) == before

    fstab = (root / "etc/fstab").read_text()
    assert "tmpfs /tmp tmpfs defaults,size=512M,nodev,nosuid,noexec 0 0" in fstab
    assert "UUID=1 / ext4 errors=remount-ro 0 1" in fstab  # untouched
    sources = (root / "etc/apt/sources.list").read_text()
    assert "deb http" not in sources
    assert "signed-by=/usr/share/keyrings/x.pgp" in sources  # a signed line stays
    deb822 = (root / "etc/apt/sources.list.d/debian.sources").read_text()
    assert "Signed-By: /usr/share/keyrings/debian-archive-keyring.pgp" in deb822
    assert "Suites: trixie-security" in deb822
    assert (root / "etc/cron.daily").stat().st_mode & 0o777 == 0o700
    assert (root / "boot/grub/grub.cfg").stat().st_mode & 0o777 == 0o600
    assert "install overlay /bin/false" in (root / "etc/modprobe.d/overlay.conf").read_text()
    hardening = (root / "etc/sysctl.d/99-nanoclaw-hardening.conf").read_text()
    assert "net.ipv4.ip_forward = 0" in hardening
    assert "net.ipv6.conf.default.accept_ra = 0" in hardening


@pytest.mark.parametrize("name", ["nanoclaw-debian13", "nanoclaw-debian12"])
def test_the_image_apt_sources_name_the_profile_suite(name: str, cat: Catalogue) -> None:
    """A Debian 12 image whose own sources said trixie would upgrade itself to trixie."""
    from goldsmith.model.profile_loader import load_profile

    profile = load_profile(name).profile
    settings = profile.controls.get("apt.sources-deb822")
    rule = cat.get("apt.sources-deb822").rule(dict(settings.params) if settings else None)
    ctx = rule.context  # type: ignore[attr-defined]
    suite = profile.base.suite
    assert ctx["suite"] == suite
    # the security suite is the profile's too, and named as Lynis PKGS-7388 recognises it
    assert ctx["security_mirror"] == "http://security.debian.org/debian-security"
