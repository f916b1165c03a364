"""file-content: forbidden and required lines over paths and globs; check-only by default,
opt-in removal of matching lines that keeps mode and owner and records each line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from controls_fixtures import make_target, tree_hash, write

from goldsmith.controls import build_rule
from goldsmith.controls.catalogue import load_catalogue
from goldsmith.errors import ProfileError, TargetError
from goldsmith.model.records import Status

SUDOERS = (
    "Defaults\tenv_reset\n"
    "# %admin ALL=(ALL) NOPASSWD: ALL\n"
    "root\tALL=(ALL:ALL) ALL\n"
    "%sudo\tALL=(ALL:ALL) ALL\n"
    "@includedir /etc/sudoers.d\n"
)


def rule(**params: Any) -> Any:
    return build_rule({"type": "file-content", **params}, control="t")


def sudoers(root: Path) -> None:
    write(root, "/etc/sudoers", SUDOERS, 0o440)
    write(root, "/etc/sudoers.d/README", "# files here are read\n", 0o440)


NOPASSWD = {"paths": ["/etc/sudoers", "/etc/sudoers.d/*"], "absent_pattern": r"\bNOPASSWD\b"}


def test_absent_pattern_passes_when_only_a_comment_matches(tmp_path: Path) -> None:
    sudoers(tmp_path)
    found = rule(**NOPASSWD).check(make_target(tmp_path))
    assert found.status is Status.PASS
    assert "read 2 file(s)" in found.evidence.how


def test_absent_pattern_fails_naming_file_and_line_and_plans_nothing(tmp_path: Path) -> None:
    sudoers(tmp_path)
    write(tmp_path, "/etc/sudoers.d/agent", "nanoclaw ALL=(root) NOPASSWD: /usr/bin/docker\n")
    t = make_target(tmp_path)
    found = rule(**NOPASSWD).check(t)
    assert found.status is Status.FAIL
    assert "/etc/sudoers.d/agent:1: nanoclaw ALL=(root) NOPASSWD" in found.evidence.observed
    assert "check-only" in found.evidence.observed
    assert rule(**NOPASSWD).plan(t) == []


def test_comments_count_when_asked_and_case_can_be_ignored(tmp_path: Path) -> None:
    sudoers(tmp_path)
    t = make_target(tmp_path)
    assert rule(**NOPASSWD, ignore_comments=False).check(t).status is Status.FAIL
    lower = {"paths": ["/etc/sudoers"], "absent_pattern": "defaults\tenv_reset"}
    assert rule(**lower).check(t).status is Status.PASS
    assert rule(**lower, ignore_case=True).check(t).status is Status.FAIL


def test_no_file_is_not_applicable_for_absent_and_a_failure_for_present(tmp_path: Path) -> None:
    t = make_target(tmp_path)
    assert rule(**NOPASSWD).check(t).status is Status.NOT_APPLICABLE
    present = rule(paths=["/etc/sudoers"], present_pattern="use_pty")
    assert present.check(t).status is Status.FAIL


def test_present_pattern(tmp_path: Path) -> None:
    sudoers(tmp_path)
    t = make_target(tmp_path)
    assert rule(paths=["/etc/sudoers"], present_pattern=r"^Defaults\s+env_reset").check(
        t
    ).status is (Status.PASS)
    missing = rule(paths=["/etc/sudoers"], present_pattern=r"^Defaults\s+use_pty")
    assert missing.check(t).status is Status.FAIL
    assert missing.plan(t) == []


def test_remove_matching_cycle_keeps_mode_and_records_each_line(tmp_path: Path) -> None:
    sudoers(tmp_path)
    write(
        tmp_path,
        "/etc/sudoers.d/agent",
        "Defaults use_pty\nnanoclaw ALL=(root) NOPASSWD: /bin/a\nbob ALL=NOPASSWD: ALL\n",
        0o440,
    )
    r = rule(**NOPASSWD, remove_matching=True)
    t = make_target(tmp_path)
    before = tree_hash(tmp_path)
    assert r.check(t).status is Status.FAIL
    planned = r.plan(t)
    assert tree_hash(tmp_path) == before
    assert [(c.object, c.attribute, c.after) for c in planned] == [
        ("/etc/sudoers.d/agent", "line 2", None),
        ("/etc/sudoers.d/agent", "line 3", None),
    ]
    assert r.apply(t) == planned
    assert r.check(t).status is Status.PASS
    agent = tmp_path / "etc/sudoers.d/agent"
    assert agent.read_text() == "Defaults use_pty\n"
    assert agent.stat().st_mode & 0o7777 == 0o440
    settled = tree_hash(tmp_path)
    assert r.apply(t) == []
    assert tree_hash(tmp_path) == settled
    assert (tmp_path / "etc/sudoers").read_text() == SUDOERS  # comment line kept


PWQ = "# minlen = 8\n# enforce_for_root\nminlen = 14"  # no final newline, as an editor may leave it


def test_append_line_cycle_adds_once_to_the_first_path_and_keeps_mode(tmp_path: Path) -> None:
    write(tmp_path, "/etc/security/pwquality.conf", PWQ, 0o640)
    r = rule(
        paths=["/etc/security/pwquality.conf", "/etc/security/pwquality.conf.d/*.conf"],
        present_pattern=r"^\s*enforce_for_root\s*$",
        append_line="enforce_for_root",
    )
    t = make_target(tmp_path)
    before = tree_hash(tmp_path)
    found = r.check(t)
    assert found.status is Status.FAIL  # the commented line does not count
    assert "check-only" not in found.evidence.observed
    planned = r.plan(t)
    assert tree_hash(tmp_path) == before
    assert [(c.object, c.attribute, c.before, c.after) for c in planned] == [
        ("/etc/security/pwquality.conf", "line 4", None, "enforce_for_root")
    ]
    assert r.apply(t) == planned
    conf = tmp_path / "etc/security/pwquality.conf"
    assert conf.read_text() == PWQ + "\nenforce_for_root\n"
    assert conf.stat().st_mode & 0o7777 == 0o640
    assert r.check(t).status is Status.PASS
    settled = tree_hash(tmp_path)
    assert r.apply(t) == []
    assert tree_hash(tmp_path) == settled


def test_append_line_is_not_needed_when_a_drop_in_has_the_line(tmp_path: Path) -> None:
    write(tmp_path, "/etc/security/pwquality.conf", PWQ + "\n", 0o644)
    write(tmp_path, "/etc/security/pwquality.conf.d/50-x.conf", "enforce_for_root\n", 0o644)
    r = rule(
        paths=["/etc/security/pwquality.conf", "/etc/security/pwquality.conf.d/*.conf"],
        present_pattern=r"^\s*enforce_for_root\s*$",
        append_line="enforce_for_root",
    )
    t = make_target(tmp_path)
    assert r.check(t).status is Status.PASS
    assert r.plan(t) == []


def test_append_line_creates_a_missing_file_with_only_that_line(tmp_path: Path) -> None:
    r = rule(paths=["/etc/security/pwquality.conf"], present_pattern="^x$", append_line="x")
    t = make_target(tmp_path)
    assert r.check(t).status is Status.FAIL
    before = tree_hash(tmp_path)
    planned = r.plan(t)
    assert tree_hash(tmp_path) == before
    assert [(c.object, c.attribute, c.after) for c in planned] == [
        ("/etc/security/pwquality.conf", "line 1", "x")
    ]
    r.apply(t)
    conf = tmp_path / "etc/security/pwquality.conf"
    assert conf.read_text() == "x\n"
    assert conf.stat().st_mode & 0o7777 == 0o644
    assert r.check(t).status is Status.PASS


def test_append_line_refuses_a_directory_in_the_files_place(tmp_path: Path) -> None:
    (tmp_path / "etc/security/pwquality.conf").mkdir(parents=True)
    r = rule(paths=["/etc/security/pwquality.conf"], present_pattern="^x$", append_line="x")
    with pytest.raises(TargetError, match="not a regular file"):
        r.plan(make_target(tmp_path))


@pytest.mark.parametrize(
    "params",
    [
        {"paths": ["/etc/x"], "absent_pattern": "a", "append_line": "a"},
        {"paths": ["/etc/*.conf"], "present_pattern": "a", "append_line": "a"},
        {"paths": ["/etc/x"], "present_pattern": "^a$", "append_line": "b"},
        {"paths": ["/etc/x"], "present_pattern": "a", "append_line": "# a"},
        {"paths": ["/etc/x"], "present_pattern": "a", "append_line": "a\na"},
    ],
)
def test_bad_append_line_params_are_profile_errors(params: dict[str, Any]) -> None:
    with pytest.raises(ProfileError):
        rule(**params)


@pytest.mark.parametrize(
    "params",
    [
        {"paths": ["/etc/x"]},
        {"paths": ["/etc/x"], "absent_pattern": "a", "present_pattern": "b"},
        {"paths": ["/etc/x"], "absent_pattern": "("},
        {"paths": ["etc/x"], "absent_pattern": "a"},
        {"paths": ["/etc/x"], "present_pattern": "a", "remove_matching": True},
        {"paths": ["/etc/x"], "absent_pattern": "a", "validate": ["visudo", "-cf"]},
    ],
)
def test_bad_params_are_profile_errors(params: dict[str, Any]) -> None:
    with pytest.raises(ProfileError):
        rule(**params)


RSYSLOG_LINES = [
    'module(load="imtcp")',
    "module(load=imudp)",
    'input(type="imtcp" port="514")',
    "$ModLoad imtcp",
    "$InputTCPServerRun 514",
    "$UDPServerRun 514",
]


@pytest.mark.parametrize("line", RSYSLOG_LINES)
def test_catalogue_rsyslog_control_finds_every_listener_form(line: str, tmp_path: Path) -> None:
    c = load_catalogue().get("rsyslog.no-remote-input")
    write(tmp_path, "/etc/rsyslog.conf", 'module(load="imuxsock")\n#module(load="imtcp")\n')
    t = make_target(tmp_path)
    assert c.check(t).status is Status.PASS
    write(tmp_path, "/etc/rsyslog.d/50-remote.conf", line + "\n")
    assert c.check(t).status is Status.FAIL


@pytest.mark.parametrize(
    ("cid", "line"),
    [
        ("sudo.nopasswd-absent", "%sudo ALL=(ALL) NOPASSWD: ALL"),
        ("sudo.authenticate-not-disabled", "Defaults !authenticate"),
        ("sudo.authenticate-not-disabled", "Defaults:bob ! authenticate"),
    ],
)
def test_catalogue_sudo_controls(cid: str, line: str, tmp_path: Path) -> None:
    c = load_catalogue().get(cid)
    sudoers(tmp_path)
    t = make_target(tmp_path)
    assert c.check(t).status is Status.PASS
    write(tmp_path, "/etc/sudoers.d/local", line + "\n", 0o440)
    assert c.check(t).status is Status.FAIL
