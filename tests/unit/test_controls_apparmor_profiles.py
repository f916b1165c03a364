"""apparmor-profiles: every profile in /etc/apparmor.d enforcing or disabled; apply puts the
named ones in enforce mode (only their flags change) and disables the rest with links."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from apparmor_fixtures import CHRONYD, RUNC, SBUILD, UNIX_CHKPWD, apparmor_dir
from controls_fixtures import make_target, tree_hash, write

from goldsmith.controls import build_rule
from goldsmith.controls.catalogue import load_catalogue
from goldsmith.controls.rules.apparmor_profiles import enforce_text, modes_of
from goldsmith.errors import ProfileError, TargetError
from goldsmith.model.records import Status

AA = "/etc/apparmor.d"


def rule(**params: Any) -> Any:
    return build_rule({"type": "apparmor-profiles", **params}, control="t")


def read(root: Path, path: str) -> str:
    return (root / path.lstrip("/")).read_text()


# check ------------------------------------------------------------------------------------------


def test_complain_and_unconfined_profiles_fail_naming_them_and_their_mode(tmp_path: Path) -> None:
    apparmor_dir(tmp_path)
    found = rule().check(make_target(tmp_path))
    assert found.status is Status.FAIL
    observed = found.evidence.observed
    assert "2 of 3 profiles" in observed
    assert "runc (unconfined)" in observed and "unix-chkpwd (complain)" in observed
    assert "chronyd" not in observed  # flags=(attach_disconnected) is enforce mode
    assert "force-complain/<name>" in found.evidence.how
    assert "disabled" in found.evidence.expected


def test_enforcing_and_disabled_profiles_pass(tmp_path: Path) -> None:
    apparmor_dir(tmp_path)
    d = tmp_path / "etc/apparmor.d/disable"
    (d / "runc").symlink_to("../runc")
    write(tmp_path, f"{AA}/disable/unix-chkpwd", "")  # a plain file disables too
    found = rule().check(make_target(tmp_path))
    assert found.status is Status.PASS, found.evidence
    assert found.evidence.observed == "3 profiles: 1 enforcing, 2 disabled"


def test_force_complain_makes_an_enforce_mode_profile_fail(tmp_path: Path) -> None:
    apparmor_dir(tmp_path)
    for name in ("runc", "unix-chkpwd"):
        (tmp_path / f"etc/apparmor.d/disable/{name}").symlink_to(f"../{name}")
    (tmp_path / "etc/apparmor.d/force-complain/usr.sbin.chronyd").symlink_to("../usr.sbin.chronyd")
    found = rule().check(make_target(tmp_path))
    assert found.status is Status.FAIL
    assert "usr.sbin.chronyd (force-complain)" in found.evidence.observed


def test_directories_and_names_the_parser_skips_are_not_profiles(tmp_path: Path) -> None:
    write(tmp_path, f"{AA}/usr.sbin.chronyd", CHRONYD)
    for name in (
        "runc.dpkg-new",
        "runc.dpkg-old",
        "runc.dpkg-dist",
        "runc.rpmsave",
        "runc.rpmnew",
        "runc~",
        ".runc.swp",
        "README",
    ):
        write(tmp_path, f"{AA}/{name}", RUNC)
    write(tmp_path, f"{AA}/local/runc", RUNC)  # not directly in /etc/apparmor.d
    (tmp_path / "etc/apparmor.d/abstractions").mkdir()
    found = rule().check(make_target(tmp_path))
    assert found.status is Status.PASS, found.evidence
    assert found.evidence.observed == "1 profiles: 1 enforcing, 0 disabled"


def test_flags_in_comments_do_not_count_and_every_flags_list_of_a_file_does(
    tmp_path: Path,
) -> None:
    text = (
        "# profile old flags=(complain) {\n"
        "profile a /usr/bin/a { # flags=(unconfined)\n"
        "  ^hat flags = ( kill ) {\n  }\n"
        "  profile child flags=(attach_disconnected,prompt) {\n  }\n"
        "}\n"
    )
    assert modes_of(text) == ("kill", "prompt")
    write(tmp_path, f"{AA}/a", text)
    found = rule().check(make_target(tmp_path))
    assert found.status is Status.FAIL
    assert "a (kill, prompt)" in found.evidence.observed


def test_the_offender_list_is_capped_with_a_count(tmp_path: Path) -> None:
    for i in range(20):
        write(tmp_path, f"{AA}/p{i:02d}", RUNC.replace("runc", f"p{i:02d}"))
    found = rule().check(make_target(tmp_path))
    assert "20 of 20 profiles" in found.evidence.observed
    assert "p11 (unconfined)" in found.evidence.observed
    assert "p12" not in found.evidence.observed
    assert found.evidence.observed.endswith("and 8 more")


def test_no_apparmor_directory(tmp_path: Path) -> None:
    t = make_target(tmp_path)
    assert rule().check(t).status is Status.NOT_APPLICABLE
    assert rule().plan(t) == []
    found = rule(enforce=["unix-chkpwd"]).check(t)
    assert found.status is Status.FAIL and "unix-chkpwd" in found.evidence.observed
    with pytest.raises(TargetError, match="unix-chkpwd"):
        rule(enforce=["unix-chkpwd"]).plan(t)


# apply ------------------------------------------------------------------------------------------


def test_apply_enforces_the_named_profile_disables_the_rest_and_settles(tmp_path: Path) -> None:
    apparmor_dir(tmp_path)
    os.chmod(tmp_path / "etc/apparmor.d/unix-chkpwd", 0o640)
    t = make_target(tmp_path)
    r = rule(enforce=["unix-chkpwd"])
    before = tree_hash(tmp_path)
    found = r.check(t)
    planned = r.plan(t)
    assert tree_hash(tmp_path) == before
    assert found.status is Status.FAIL
    assert "unix-chkpwd (complain; enforce names it)" in found.evidence.observed
    assert "enforcing and not disabled: unix-chkpwd" in found.evidence.expected

    assert r.apply(t) == planned
    # unix-chkpwd: only the flags went, with the blank before them; mode kept
    want = UNIX_CHKPWD.replace("unix_chkpwd flags=(complain) {", "unix_chkpwd {")
    assert want != UNIX_CHKPWD
    assert read(tmp_path, f"{AA}/unix-chkpwd") == want
    assert (tmp_path / "etc/apparmor.d/unix-chkpwd").stat().st_mode & 0o777 == 0o640
    # runc: disabled as `ln -s ../runc /etc/apparmor.d/disable/` does; the file untouched
    assert os.readlink(tmp_path / "etc/apparmor.d/disable/runc") == "../runc"
    assert read(tmp_path, f"{AA}/runc") == RUNC
    # chronyd enforces already: left alone
    assert not os.path.lexists(tmp_path / "etc/apparmor.d/disable/usr.sbin.chronyd")
    assert read(tmp_path, f"{AA}/usr.sbin.chronyd") == CHRONYD
    assert sorted(os.listdir(tmp_path / "etc/apparmor.d/disable")) == ["runc"]

    changes = {(c.object, c.attribute): (c.before, c.after) for c in planned}
    assert changes == {
        (f"{AA}/unix-chkpwd", "line 14"): (
            "profile unix-chkpwd /{,usr/}{,s}bin/unix_chkpwd flags=(complain) {",
            "profile unix-chkpwd /{,usr/}{,s}bin/unix_chkpwd {",
        ),
        (f"{AA}/disable/runc", "link"): (None, "../runc"),
    }
    assert all(c.control == "t" for c in planned)

    after = r.check(t)
    assert after.status is Status.PASS, after.evidence
    assert after.evidence.observed == "3 profiles: 2 enforcing, 1 disabled"
    settled = tree_hash(tmp_path)
    assert r.plan(t) == [] and r.apply(t) == []
    assert tree_hash(tmp_path) == settled


def test_enforce_keeps_the_other_flags_and_their_separators(tmp_path: Path) -> None:
    transmission = (
        "profile transmission-daemon /usr/bin/transmission-daemon "
        "flags=(complain,attach_disconnected) {\n}\n"
        "profile transmission-cli /usr/bin/transmission-cli flags=(complain) {\n}\n"
    )
    xorg = "profile Xorg /usr/lib/xorg/Xorg flags=(complain,attach_disconnected, complain) {\n}\n"
    write(tmp_path, f"{AA}/transmission", transmission)
    write(tmp_path, f"{AA}/Xorg", xorg)
    write(tmp_path, f"{AA}/sbuild", SBUILD)
    t = make_target(tmp_path)
    r = rule(enforce=["transmission", "Xorg", "sbuild"])
    r.apply(t)
    assert read(tmp_path, f"{AA}/transmission") == (
        "profile transmission-daemon /usr/bin/transmission-daemon "
        "flags=(attach_disconnected) {\n}\n"
        "profile transmission-cli /usr/bin/transmission-cli {\n}\n"
    )
    assert read(tmp_path, f"{AA}/Xorg") == (
        "profile Xorg /usr/lib/xorg/Xorg flags=(attach_disconnected) {\n}\n"
    )
    assert read(tmp_path, f"{AA}/sbuild") == SBUILD.replace(
        "flags=(complain,attach_disconnected mediate_deleted)",
        "flags=(attach_disconnected mediate_deleted)",
    )
    assert r.check(t).status is Status.PASS
    assert not (tmp_path / "etc/apparmor.d/disable").exists()  # nothing needed disabling


def test_enforce_text_leaves_comments_and_other_lines_byte_identical() -> None:
    text = (
        "# flags=(complain) in a comment stays\r\n"
        "profile a flags=(complain) { # flags=(unconfined) stays too\r\n"
        "  mount options=(ro, complain) -> /mnt/,\r\n"
        "}"
    )
    new, edits = enforce_text(text)
    assert new == text.replace("profile a flags=(complain) {", "profile a {")
    assert edits == [
        (
            2,
            "profile a flags=(complain) { # flags=(unconfined) stays too",
            "profile a { # flags=(unconfined) stays too",
        )
    ]
    assert enforce_text(new) == (new, [])


def test_enforce_removes_force_complain_and_disable_entries_of_the_named_profile(
    tmp_path: Path,
) -> None:
    apparmor_dir(tmp_path)
    aa = tmp_path / "etc/apparmor.d"
    (aa / "force-complain/unix-chkpwd").symlink_to("../unix-chkpwd")
    (aa / "disable/unix-chkpwd").symlink_to("../unix-chkpwd")
    t = make_target(tmp_path)
    r = rule(enforce=["unix-chkpwd"])
    found = r.check(t)
    assert found.status is Status.FAIL
    assert "unix-chkpwd (disabled; enforce names it)" in found.evidence.observed
    changes = r.apply(t)
    assert (f"{AA}/force-complain/unix-chkpwd", "link", "../unix-chkpwd", None) in [
        (c.object, c.attribute, c.before, c.after) for c in changes
    ]
    assert not os.path.lexists(aa / "force-complain/unix-chkpwd")
    assert not os.path.lexists(aa / "disable/unix-chkpwd")
    assert "flags=" not in read(tmp_path, f"{AA}/unix-chkpwd").split("abi <abi/4.0>")[1]
    assert r.check(t).status is Status.PASS


def test_a_force_complain_entry_of_an_unnamed_profile_gets_it_disabled(tmp_path: Path) -> None:
    apparmor_dir(tmp_path)
    aa = tmp_path / "etc/apparmor.d"
    (aa / "force-complain/usr.sbin.chronyd").symlink_to("../usr.sbin.chronyd")
    t = make_target(tmp_path)
    r = rule(enforce=["unix-chkpwd"])
    r.apply(t)
    assert sorted(os.listdir(aa / "disable")) == ["runc", "usr.sbin.chronyd"]
    assert read(tmp_path, f"{AA}/usr.sbin.chronyd") == CHRONYD
    assert r.check(t).status is Status.PASS


def test_disable_rest_off_changes_only_the_named_profiles(tmp_path: Path) -> None:
    apparmor_dir(tmp_path)
    t = make_target(tmp_path)
    r = rule(enforce=["unix-chkpwd"], disable_rest=False)
    r.apply(t)
    assert os.listdir(tmp_path / "etc/apparmor.d/disable") == []
    found = r.check(t)
    assert found.status is Status.FAIL
    assert "runc (unconfined)" in found.evidence.observed
    assert "disable_rest is off" in found.evidence.observed
    assert r.plan(t) == []


def test_a_named_profile_that_does_not_exist_fails_and_refuses_to_apply(tmp_path: Path) -> None:
    apparmor_dir(tmp_path)
    t = make_target(tmp_path)
    r = rule(enforce=["unix-chkpwd", "nosuch"])
    found = r.check(t)
    assert found.status is Status.FAIL
    assert "enforce names nosuch: no such profile in /etc/apparmor.d" in found.evidence.observed
    before = tree_hash(tmp_path)
    with pytest.raises(TargetError, match="enforce names nosuch"):
        r.apply(t)
    assert tree_hash(tmp_path) == before


def test_a_named_profile_that_is_a_link_is_not_edited_through(tmp_path: Path) -> None:
    write(tmp_path, "/usr/share/apparmor/extra/foo", UNIX_CHKPWD)
    (tmp_path / "etc/apparmor.d").mkdir(parents=True)
    (tmp_path / "etc/apparmor.d/foo").symlink_to("/usr/share/apparmor/extra/foo")
    t = make_target(tmp_path)
    assert "foo (complain)" in rule().check(t).evidence.observed  # links are read
    with pytest.raises(TargetError, match="not a regular file"):
        rule(enforce=["foo"]).apply(t)


# params -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"enforce": ["../etc/shadow"]}, "not a profile file name"),
        ({"enforce": ["sub/unix-chkpwd"]}, "not a profile file name"),
        ({"enforce": [""]}, "not a profile file name"),
        ({"enforce": ["unix-chkpwd.dpkg-new"]}, "apparmor_parser skips it"),
        ({"enforce": [".hidden"]}, "apparmor_parser skips it"),
        ({"enforce": ["tunables"]}, "one of the directories"),
        ({"enforce": ["runc", "runc"]}, "twice"),
        ({"enforce": "unix-chkpwd"}, "tuple"),
        ({"disable_rest": "maybe"}, "boolean"),
        ({"profiles": ["x"]}, "unknown param"),
    ],
)
def test_bad_params_are_refused_naming_the_key(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ProfileError) as e:
        build_rule({"type": "apparmor-profiles", **params}, key="controls.x.params")
    assert message in e.value.message
    assert "controls.x.params" in (e.value.key or "")


def test_the_catalogue_control_enforces_unix_chkpwd_and_replaces_the_manual_entries() -> None:
    cat = load_catalogue()
    c = cat.get("apparmor.profiles-enforcing")
    assert c.level == 2
    assert c.rule().enforce == ("unix-chkpwd",)  # type: ignore[attr-defined]
    assert c.references["cis-debian13"] == ("1.3.1.3",)
    assert set(c.references["cis-debian12"]) == {"1.3.1.3", "1.3.1.4"}
    listed = {(b, n.ids[b]) for n in cat.not_automated for b in n.ids}
    assert ("cis-debian13", "1.3.1.3") not in listed
    assert ("cis-debian12", "1.3.1.3") not in listed
    assert ("cis-debian12", "1.3.1.4") not in listed


@pytest.mark.parametrize(
    ("profile", "enforce"),
    [
        ("nanoclaw-debian13", ("unix-chkpwd",)),
        ("nanoclaw-debian12", ()),  # bookworm's apparmor 3.0 has no unix-chkpwd profile
        ("ubuntu-2204-example", ()),
    ],
)
def test_the_shipped_profiles_run_the_control(profile: str, enforce: tuple[str, ...]) -> None:
    from goldsmith.controls.engine import resolve
    from goldsmith.model.profile_loader import load_profile

    loaded = load_profile(profile)
    (rc,) = [
        rc
        for rc in resolve(loaded.profile, load_catalogue(), loaded=loaded)
        if rc.id == "apparmor.profiles-enforcing"
    ]
    assert rc.rule.enforce == enforce  # type: ignore[attr-defined]
    assert rc.rule.disable_rest  # type: ignore[attr-defined]
