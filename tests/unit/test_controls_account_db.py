"""account-db: every condition fails on a broken account database with evidence naming the
entry, passes on a sane one; file-level fixes cycle; command fixes plan the right argv;
check-only conditions plan nothing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from controls_fixtures import make_target, tree_hash, write

from goldsmith.controls import build_rule
from goldsmith.controls.rules.account_db import Condition, root_paths
from goldsmith.controls.steps import RunCommand
from goldsmith.errors import ProfileError
from goldsmith.model.records import Status

PASSWD = (
    "root:x:0:0:root:/root:/bin/bash\n"
    "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    "sync:x:4:65534:sync:/bin:/bin/sync\n"
    "nanoclaw:x:998:998::/var/lib/nanoclaw:/usr/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    "alice:x:1000:1000:Alice:/home/alice:/bin/bash\n"
)
SHADOW = (
    "root:*:20454:0:99999:7:::\n"
    "daemon:*:20454:0:99999:7:::\n"
    "sync:*:20454:0:99999:7:::\n"
    "nanoclaw:!:20454::::::\n"
    "nobody:*:20454:0:99999:7:::\n"
    "alice:$y$j9T$abc$def:20454:0:99999:7:::\n"
)
GROUP = "root:x:0:\ndaemon:x:1:\nshadow:x:42:\nnanoclaw:x:998:\nnogroup:x:65534:\nalice:x:1000:\n"
GSHADOW = "root:*::\ndaemon:*::\nshadow:*::\nnanoclaw:!::\nnogroup:*::\nalice:!::\n"
SHELLS = "/bin/sh\n/usr/bin/sh\n/bin/bash\n/usr/bin/bash\n"
LOGIN_DEFS = "UID_MIN 1000\nENV_SUPATH PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin\n"


def sane(root: Path) -> None:
    write(root, "/etc/passwd", PASSWD)
    write(root, "/etc/shadow", SHADOW, 0o640)
    write(root, "/etc/group", GROUP)
    write(root, "/etc/gshadow", GSHADOW, 0o640)
    write(root, "/etc/shells", SHELLS)
    write(root, "/etc/login.defs", LOGIN_DEFS)
    write(root, "/root/.profile", "mesg n 2> /dev/null || true\n", 0o644)
    (root / "root").chmod(0o700)
    write(root, "/home/alice/.bashrc", "# alice\n", 0o644)
    (root / "home/alice").chmod(0o750)
    os.chown(root / "home/alice", 1000, 1000)
    os.chown(root / "home/alice/.bashrc", 1000, 1000)
    for d in ("usr/local/sbin", "usr/local/bin", "usr/sbin", "usr/bin"):
        (root / d).mkdir(parents=True, exist_ok=True)
        (root / d).chmod(0o755)


def rule(condition: str, **params: Any) -> Any:
    return build_rule({"type": "account-db", "condition": condition, **params}, control="t")


def edit(root: Path, path: str, old: str, new: str) -> None:
    p = root / path.lstrip("/")
    text = p.read_text()
    assert old in text, (path, old)
    p.write_text(text.replace(old, new))


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to other users needs root")


@needs_root
@pytest.mark.parametrize("condition", [c.value for c in Condition])
def test_every_condition_passes_on_a_sane_database(condition: str, tmp_path: Path) -> None:
    sane(tmp_path)
    t = make_target(tmp_path)
    found = rule(condition, today="2026-01-01").check(t)
    assert found.status is Status.PASS, found.evidence
    assert rule(condition, today="2026-01-01").plan(t) == []


#: condition, file, old text, new text, a word the evidence must name
CHECK_ONLY = [
    ("root-only-uid0", "/etc/passwd", "daemon:x:1:1", "daemon:x:0:1", "daemon has uid 0"),
    ("root-only-gid0-account", "/etc/passwd", "daemon:x:1:1", "daemon:x:1:0", "daemon"),
    ("root-only-gid0-group", "/etc/group", "daemon:x:1:", "daemon:x:0:", "group daemon"),
    ("groups-exist", "/etc/passwd", "alice:x:1000:1000", "alice:x:1000:4242", "4242"),
    ("no-duplicate-uids", "/etc/passwd", "nanoclaw:x:998", "nanoclaw:x:1000", "alice"),
    ("no-duplicate-gids", "/etc/group", "nanoclaw:x:998:", "nanoclaw:x:1000:", "nanoclaw"),
    ("no-duplicate-user-names", "/etc/passwd", "nobody:x:", "alice:x:", "/etc/passwd:5"),
    ("no-duplicate-group-names", "/etc/group", "nogroup:x:", "alice:x:", "/etc/group:5"),
    (
        "last-change-in-past",
        "/etc/shadow",
        "alice:$y$j9T$abc$def:20454",
        "alice:$y$:20820",
        "alice",
    ),
]


@needs_root
@pytest.mark.parametrize(
    ("condition", "path", "old", "new", "named"), CHECK_ONLY, ids=[c[0] for c in CHECK_ONLY]
)
def test_check_only_conditions_fail_with_evidence_and_plan_nothing(
    condition: str, path: str, old: str, new: str, named: str, tmp_path: Path
) -> None:
    sane(tmp_path)
    edit(tmp_path, path, old, new)
    t = make_target(tmp_path)
    r = rule(condition, today="2026-12-31")
    found = r.check(t)
    assert found.status is Status.FAIL
    assert named in found.evidence.observed
    assert "need a human decision" in found.evidence.observed
    assert r.plan(t) == []


def test_last_change_uses_the_given_date_or_the_clock(tmp_path: Path) -> None:
    write(tmp_path, "/etc/shadow", "alice:$y$:20820:0:99999:7:::\n")  # 2027-01-02
    t = make_target(tmp_path)
    assert rule("last-change-in-past", today="2027-01-02").check(t).status is Status.PASS
    late = rule("last-change-in-past", today="2027-01-01").check(t)
    assert late.status is Status.FAIL
    assert "2027-01-02" in late.evidence.observed
    clock = rule("last-change-in-past").check(t)
    assert "the clock" in clock.evidence.how
    with pytest.raises(ProfileError):
        rule("last-change-in-past", today="yesterday")


#: condition, file, old, new, the argv the fix must run
COMMAND_FIXES = [
    (
        "system-accounts-nologin",
        "/etc/passwd",
        "nanoclaw:x:998:998::/var/lib/nanoclaw:/usr/sbin/nologin",
        "nanoclaw:x:998:998::/var/lib/nanoclaw:/bin/sh",
        ("usermod", "-s", "/usr/sbin/nologin", "nanoclaw"),
    ),
    (
        "system-accounts-nologin",
        "/etc/passwd",
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/bash",
        ("usermod", "-s", "/usr/sbin/nologin", "nobody"),
    ),
    (
        "system-accounts-locked",
        "/etc/shadow",
        "nanoclaw:!:",
        "nanoclaw:$y$abc:",
        ("usermod", "-L", "nanoclaw"),
    ),
    ("no-empty-passwords", "/etc/shadow", "daemon:*:", "daemon::", ("passwd", "-l", "daemon")),
    ("root-access-controlled", "/etc/shadow", "root:*:", "root::", ("usermod", "-L", "root")),
    ("shadow-group-empty", "/etc/group", "shadow:x:42:", "shadow:x:42:alice", None),
    ("shadowed-passwords", "/etc/passwd", "alice:x:", "alice:$y$abc:", ("pwconv",)),
    ("root-only-gid0-account", "/etc/passwd", "root:x:0:0:", "root:x:0:1:", None),
]


@needs_root
@pytest.mark.parametrize(
    ("condition", "path", "old", "new", "argv"),
    COMMAND_FIXES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(COMMAND_FIXES)],
)
def test_command_fixes_plan_the_tool_an_administrator_would_run(
    condition: str,
    path: str,
    old: str,
    new: str,
    argv: tuple[str, ...] | None,
    tmp_path: Path,
) -> None:
    sane(tmp_path)
    edit(tmp_path, path, old, new)
    t = make_target(tmp_path)
    r = rule(condition)
    assert r.check(t).status is Status.FAIL
    steps = r.steps(t)
    assert len(steps) == 1
    assert isinstance(steps[0], RunCommand)
    expected = {
        "shadow-group-empty": ("gpasswd", "-M", "", "shadow"),
        "root-only-gid0-account": ("usermod", "-g", "0", "root"),
    }
    assert steps[0].argv == (argv or expected[condition])
    assert steps[0].changes and all(c.control == "t" for c in steps[0].changes)


def test_pwconv_is_one_step_for_all_unshadowed_accounts(tmp_path: Path) -> None:
    write(
        tmp_path, "/etc/passwd", "a:pw1:1:1::/:/bin/sh\nb:pw2:2:2::/:/bin/sh\nc:x:3:3::/:/bin/sh\n"
    )
    r = rule("shadowed-passwords")
    steps = r.steps(make_target(tmp_path))
    assert len(steps) == 1
    assert [c.object for c in steps[0].changes] == ["a", "b"]


@needs_root
def test_shadow_group_as_primary_group_is_check_only(tmp_path: Path) -> None:
    sane(tmp_path)
    edit(tmp_path, "/etc/passwd", "alice:x:1000:1000", "alice:x:1000:42")
    t = make_target(tmp_path)
    found = rule("shadow-group-empty").check(t)
    assert found.status is Status.FAIL
    assert "alice has shadow as primary group" in found.evidence.observed
    assert rule("shadow-group-empty").plan(t) == []


@needs_root
def test_system_accounts_exempt_and_uid_min_from_login_defs(tmp_path: Path) -> None:
    sane(tmp_path)
    write(tmp_path, "/etc/login.defs", "UID_MIN 500\n")
    edit(tmp_path, "/etc/passwd", "alice:x:1000:1000", "alice:x:600:1000")
    t = make_target(tmp_path)
    assert rule("system-accounts-nologin").check(t).status is Status.PASS  # sync: exempt
    write(tmp_path, "/etc/login.defs", "UID_MIN 2000\n")
    found = rule("system-accounts-nologin").check(t)
    assert found.status is Status.FAIL
    assert "alice" in found.evidence.observed
    assert (
        rule("system-accounts-nologin", exempt=["root", "sync", "alice"]).check(t).status
        is Status.PASS
    )


def cycle(r: Any, root: Path) -> None:
    t = make_target(root)
    before = tree_hash(root)
    first = r.check(t)
    planned = r.plan(t)
    assert tree_hash(root) == before, "check/plan wrote to the target"
    assert first.status is Status.FAIL, first.evidence
    assert planned
    assert r.apply(t) == planned
    after = r.check(t)
    assert after.status is Status.PASS, after.evidence
    assert r.plan(t) == []
    settled = tree_hash(root)
    assert r.apply(t) == []
    assert tree_hash(root) == settled


@needs_root
def test_home_dirs_cycle(tmp_path: Path) -> None:
    sane(tmp_path)
    (tmp_path / "home/alice").chmod(0o777)
    os.chown(tmp_path / "home/alice", 0, 0)
    with (tmp_path / "etc/passwd").open("a") as f:
        f.write("bob:x:1001:1000::/home/bob:/bin/sh\n")
    cycle(rule("home-dirs"), tmp_path)
    st = (tmp_path / "home/alice").stat()
    assert (st.st_mode & 0o7777, st.st_uid) == (0o750, 1000)
    bob = (tmp_path / "home/bob").stat()
    assert (bob.st_mode & 0o7777, bob.st_uid, bob.st_gid) == (0o750, 1001, 1000)


@needs_root
def test_dot_files_cycle_and_forward_is_check_only(tmp_path: Path) -> None:
    sane(tmp_path)
    (tmp_path / "home/alice/.bashrc").chmod(0o666)
    write(tmp_path, "/home/alice/.netrc", "machine x\n", 0o644)
    os.chown(tmp_path / "home/alice/.netrc", 1000, 1000)
    write(tmp_path, "/home/alice/.profile", "x\n", 0o644)  # owned by root: not alice's
    (tmp_path / "home/alice/.ssh").mkdir(mode=0o700)  # a directory: not a dot file
    cycle(rule("dot-files"), tmp_path)
    assert (tmp_path / "home/alice/.bashrc").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "home/alice/.netrc").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "home/alice/.profile").stat().st_uid == 1000

    write(tmp_path, "/home/alice/.rhosts", "+ +\n", 0o600)
    os.chown(tmp_path / "home/alice/.rhosts", 1000, 1000)
    t = make_target(tmp_path)
    found = rule("dot-files").check(t)
    assert found.status is Status.FAIL
    assert "/home/alice/.rhosts exists" in found.evidence.observed
    assert rule("dot-files").plan(t) == []  # deleting a user's file is not ours to do


@needs_root
def test_root_path_integrity(tmp_path: Path) -> None:
    sane(tmp_path)
    (tmp_path / "usr/local/bin").chmod(0o777)
    cycle(rule("root-path-integrity"), tmp_path)
    assert (tmp_path / "usr/local/bin").stat().st_mode & 0o777 == 0o755

    write(tmp_path, "/root/.profile", 'PATH="$PATH:.:/opt/missing"\nexport PATH\n')
    t = make_target(tmp_path)
    found = rule("root-path-integrity").check(t)
    assert found.status is Status.FAIL
    assert "PATH contains '.'" in found.evidence.observed
    assert "/opt/missing does not exist" in found.evidence.observed
    assert rule("root-path-integrity").plan(t) == []


def test_root_paths_expand_path_and_read_login_defs(tmp_path: Path) -> None:
    write(tmp_path, "/etc/login.defs", LOGIN_DEFS)
    write(tmp_path, "/root/.profile", 'export PATH="$PATH:/opt/bin"\n')
    paths = root_paths(make_target(tmp_path))
    assert paths[0] == (
        "/etc/login.defs ENV_SUPATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin",
    )
    assert paths[-1] == (
        "/root/.profile:1",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/opt/bin",
    )


def test_unknown_condition_is_a_profile_error() -> None:
    with pytest.raises(ProfileError) as e:
        rule("no-such-thing")
    assert e.value.key == "rule.condition"


@needs_root
def test_lock_of_a_password_kept_in_passwd_shadows_it_first(tmp_path: Path) -> None:
    sane(tmp_path)
    edit(tmp_path, "/etc/passwd", "daemon:x:1:1", "daemon:$y$abc:1:1")
    edit(tmp_path, "/etc/passwd", "nanoclaw:x:998", "nanoclaw:$y$def:998")
    steps = rule("system-accounts-locked").steps(make_target(tmp_path))
    argvs = [s.argv for s in steps if isinstance(s, RunCommand)]
    # one pwconv, before the locks: a later pwconv would copy the hash over the lock
    assert argvs == [("pwconv",), ("usermod", "-L", "daemon"), ("usermod", "-L", "nanoclaw")]


@needs_root
def test_a_system_account_with_a_shell_never_gets_its_home_changed(tmp_path: Path) -> None:
    sane(tmp_path)
    edit(
        tmp_path,
        "/etc/passwd",
        "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin",
        "daemon:x:1:1:daemon:/usr/sbin:/bin/sh",
    )
    write(tmp_path, "/usr/sbin/.hidden", "x", 0o666)
    t = make_target(tmp_path)
    for condition in ("home-dirs", "dot-files"):
        found = rule(condition).check(t)
        assert found.status is Status.FAIL
        assert "system account: not changed automatically" in found.evidence.observed
        assert rule(condition).plan(t) == []
