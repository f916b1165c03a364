"""The control engine: resolve (errors before anything is written), plan, apply (all or
nothing, with rollback), check, and the exceptions filter. Fake roots on tmp_path."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
from controls_fixtures import child_pids, tree_hash, write

from goldsmith.controls.base import Control, Rule
from goldsmith.controls.catalogue import Catalogue, load_catalogue
from goldsmith.controls.engine import (
    ApplyError,
    ResolvedControl,
    apply_all,
    check_all,
    plan_all,
    resolve,
    unexcepted_failures,
)
from goldsmith.controls.steps import Step
from goldsmith.errors import ProfileError, TargetError, ValidationFailedError
from goldsmith.model.profile import Profile
from goldsmith.model.profile_loader import load_profile
from goldsmith.model.records import Finding, Status
from goldsmith.targets.base import RunResult, Target
from goldsmith.targets.rootfs import RootfsTarget

CATALOGUE = """\
controls:
  - id: test.one
    title: first test file
    rationale: the first control writes a file and changes a mode
    level: 1
    rule: {type: managed-file, path: /etc/one.conf, content: "one={{ value }}\\n",
           context: {value: "1"}}
    references: {cis-debian13: ["1.1.1.1"]}
  - id: test.mode
    title: second test file mode
    rationale: the second control tightens the mode of an existing file
    level: 1
    rule: {type: file-mode, paths: [/etc/existing], max_mode: "0600"}
    references: {cis-debian13: ["1.1.1.2"]}
  - id: test.validated
    title: third test file, validated
    rationale: the third control writes a file through a validator command
    level: 2
    rule: {type: managed-file, path: /etc/new/dir/three.conf, content: "three\\n",
           validate: [/usr/bin/check, "%s"]}
    references: {cis-debian13: ["1.1.1.3"]}
"""


class RejectingTarget(RootfsTarget):
    """A fake root whose validator rejects any content containing 'bad'."""

    def write_bytes(
        self,
        path: str,
        data: bytes,
        *,
        mode: int = 0o644,
        uid: int = 0,
        gid: int = 0,
        validate: Sequence[str] | None = None,
    ) -> None:
        if validate is not None and b"bad" in data:
            raise ValidationFailedError(f"{path}: /usr/bin/check: bad option on line 1")
        super().write_bytes(path, data, mode=mode, uid=uid, gid=gid, validate=None)

    def run(self, argv: Sequence[str], **kw: object) -> RunResult:
        raise TargetError("no commands in a fake root")


@pytest.fixture
def catalogue(tmp_path: Path) -> Catalogue:
    d = tmp_path / "catalogue"
    d.mkdir()
    (d / "01-test.yaml").write_text(CATALOGUE)
    return load_catalogue(d)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    write(r, "/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")
    write(r, "/etc/group", "root:x:0:\n")
    write(r, "/etc/existing", "keep me\n", 0o644)
    write(r, "/etc/one.conf", "old content\n", 0o640)
    return r


def _profile(tmp_path: Path, controls: str) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text(f"name: t\ncontrols:\n{controls}")
    return p


def test_resolve_runs_every_control_not_disabled_with_params_merged(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    p = _profile(
        tmp_path,
        "  test.one: {params: {context: {value: '2'}}}\n  test.mode: {enabled: false}\n",
    )
    loaded = load_profile(str(p))
    got = resolve(loaded.profile, catalogue, loaded=loaded)
    assert [r.id for r in got] == ["test.one", "test.validated"]
    assert got[0].position == (str(p), 3, 3)
    assert type(got[0].rule).__name__ == "ManagedFileRule"
    assert got[0].rule.context == {"value": "2"}  # type: ignore[attr-defined]


def test_resolve_reuses_the_rule_the_loader_built_unless_the_profile_overrides_it(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    p = _profile(tmp_path, "  test.one: {params: {context: {value: '2'}}}\n")
    loaded = load_profile(str(p))
    got = {r.id: r.rule for r in resolve(loaded.profile, catalogue, loaded=loaded)}
    built = {cid: c.default_rule for cid, c in catalogue.controls.items()}
    assert all(r is not None for r in built.values())
    # no override: the very object the loader validated; an override: a new rule with it
    assert got["test.mode"] is built["test.mode"]
    assert got["test.validated"] is built["test.validated"]
    assert got["test.one"] is not built["test.one"]
    assert got["test.one"].context == {"value": "2"}  # type: ignore[attr-defined]
    assert built["test.one"].context == {"value": "1"}  # type: ignore[attr-defined]
    # equal to a rule built afresh from the catalogue's params
    fresh = Control(**{**vars(catalogue.controls["test.mode"]), "default_rule": None}).rule()
    assert fresh == got["test.mode"] and fresh is not got["test.mode"]


def test_unknown_control_id_names_file_line_and_suggests(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    p = _profile(tmp_path, "  test.onee: {}\n")
    loaded = load_profile(str(p))
    with pytest.raises(ProfileError) as ei:
        resolve(loaded.profile, catalogue, loaded=loaded)
    e = ei.value
    assert (e.file, e.line, e.key) == (str(p), 3, "controls.test.onee")
    assert e.hint is not None and "test.one" in e.hint
    assert e.exit_code == 2


def test_wrong_param_type_names_the_param(tmp_path: Path, catalogue: Catalogue) -> None:
    p = _profile(tmp_path, "  test.mode:\n    params:\n      max_mode: [1, 2]\n")
    loaded = load_profile(str(p))
    with pytest.raises(ProfileError) as ei:
        resolve(loaded.profile, catalogue, loaded=loaded)
    e = ei.value
    assert e.key == "controls.test.mode.params.max_mode"
    assert (e.file, e.line) == (str(p), 5)
    assert str(p) + ":5:" in e.message


def test_plan_writes_nothing_and_shows_diffs(root: Path, catalogue: Catalogue) -> None:
    resolved = resolve(Profile(name="t"), catalogue)
    before = tree_hash(root)
    planned = plan_all(RejectingTarget(root), resolved)
    assert tree_hash(root) == before
    assert [p.control for p in planned] == ["test.one", "test.mode", "test.validated"]
    one = planned[0]
    assert {(c.object, c.attribute) for c in one.changes} >= {("/etc/one.conf", "content")}
    assert "-old content\n+one=1\n" in one.diffs[0]
    assert "/dev/null" in planned[2].diffs[0]


def test_apply_then_check_pass_and_second_apply_is_empty(root: Path, catalogue: Catalogue) -> None:
    t = RejectingTarget(root)
    resolved = resolve(Profile(name="t"), catalogue)
    assert {f.status for f in check_all(t, resolved)} == {Status.FAIL}
    result = apply_all(t, resolved)
    assert set(result.per_control) == {"test.one", "test.mode", "test.validated"}
    assert (root / "etc/one.conf").read_text() == "one=1\n"
    assert (root / "etc/existing").stat().st_mode & 0o777 == 0o600
    findings = check_all(t, resolved)
    assert [f.status for f in findings] == [Status.PASS] * 3
    assert findings[0].references == ("cis-debian13: 1.1.1.1",)
    assert apply_all(t, resolved).changes == []
    assert plan_all(t, resolved) == []


def test_a_rejected_control_rolls_back_every_earlier_change(
    tmp_path: Path, root: Path, catalogue: Catalogue
) -> None:
    p = _profile(tmp_path, "  test.validated: {params: {content: 'bad\\n'}}\n")
    loaded = load_profile(str(p))
    resolved = resolve(loaded.profile, catalogue, loaded=loaded)
    before = tree_hash(root)
    with pytest.raises(ProfileError) as ei:
        apply_all(RejectingTarget(root), resolved)
    e = ei.value
    assert e.exit_code == 2
    assert e.key == "controls.test.validated" and (e.file, e.line) == (str(p), 3)
    assert "bad option on line 1" in e.message
    assert tree_hash(root) == before  # content, modes and the created /etc/new are undone
    assert not (root / "etc/new").exists()
    assert (root / "etc/one.conf").stat().st_mode & 0o777 == 0o640


def test_a_failing_command_is_an_apply_error_and_rolls_back(
    tmp_path: Path, root: Path, catalogue: Catalogue
) -> None:
    d = tmp_path / "cat2"
    d.mkdir()
    (d / "01.yaml").write_text(
        CATALOGUE
        + """\
  - id: test.pkg
    title: a package that cannot be installed
    rationale: installing runs a command, which the fake root refuses
    level: 1
    rule: {type: package, name: auditd, state: present}
    references: {cis-debian13: ["1.1.1.4"]}
"""
    )
    resolved = resolve(Profile(name="t"), load_catalogue(d))
    before = tree_hash(root)
    with pytest.raises(ApplyError) as ei:
        apply_all(RejectingTarget(root), resolved)
    assert "test.pkg" in ei.value.message
    assert tree_hash(root) == before


def test_rollback_restores_removed_trees_and_replaced_symlinks(root: Path) -> None:
    from goldsmith.controls.engine import JournalTarget

    write(root, "/srv/a/b/c.txt", "c\n", 0o600)
    (root / "srv/link").symlink_to("a/b/c.txt")
    before = tree_hash(root)
    j = JournalTarget(RootfsTarget(root))
    j.rmtree("/srv/a")
    j.write_text("/srv/link", "now a file\n")
    j.mkdir("/srv/x/y", parents=True)
    j.chmod("/etc/existing", 0o000)
    assert tree_hash(root) != before
    assert j.rollback() == []
    assert tree_hash(root) == before


def test_unexcepted_failures_respects_expiry(root: Path, catalogue: Catalogue) -> None:
    resolved = resolve(Profile(name="t"), catalogue)
    findings = check_all(RejectingTarget(root), resolved)
    exc = {
        "control": "test.one",
        "justification": "accepted for the test",
        "owner": "me",
        "approved_by": "you",
    }
    live = Profile(name="t", exceptions=[{**exc, "expires": "2099-01-01"}])
    expired = Profile(name="t", exceptions=[{**exc, "expires": "2000-01-01"}])
    today = dt.date(2026, 1, 1)
    assert [f.control for f in unexcepted_failures(live, findings, today=today)] == [
        "test.mode",
        "test.validated",
    ]
    assert len(unexcepted_failures(expired, findings, today=today)) == 3


class FakeSshdTarget(RootfsTarget):
    """A fake root with an 'sshd' whose -t rejects any config containing 'not-a-cipher'."""

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> RunResult:
        assert argv[:2] == ["/bin/sh", "-c"] and "/usr/sbin/sshd -t" in argv[2]
        conf = (self.root / "etc/ssh/sshd_config.d/00-test.conf").read_text()
        if "not-a-cipher" in conf:
            return RunResult(tuple(argv), 255, "", "line 1: Bad SSH2 cipher spec 'not-a-cipher'.\n")
        return RunResult(tuple(argv), 0, "", "")


SSHD_CATALOGUE = """\
controls:
  - id: test.one
    title: first test file
    rationale: the first control writes a file outside sshd's directory
    level: 1
    rule: {type: managed-file, path: /etc/one.conf, content: "one\\n"}
    references: {cis-debian13: ["1.1.1.1"]}
  - id: test.ciphers
    title: sshd ciphers for the test
    rationale: an sshd option the image's sshd checks after the apply
    level: 1
    rule: {type: managed-file, path: /etc/ssh/sshd_config.d/00-test.conf,
           content: "Ciphers {{ ciphers }}\\n", context: {ciphers: aes256-ctr}}
    references: {cis-debian13: ["5.1.6"]}
"""


@pytest.mark.parametrize("bad", [True, False])
def test_sshd_rejecting_the_result_rolls_back_and_names_the_control(
    tmp_path: Path, root: Path, bad: bool
) -> None:
    d = tmp_path / "sshd-cat"
    d.mkdir()
    (d / "01.yaml").write_text(SSHD_CATALOGUE)
    write(root, "/usr/sbin/sshd", "#!/bin/false\n", 0o755)
    value = "not-a-cipher" if bad else "aes128-ctr"
    p = _profile(tmp_path, f"  test.ciphers: {{params: {{context: {{ciphers: {value}}}}}}}\n")
    loaded = load_profile(str(p))
    resolved = resolve(loaded.profile, load_catalogue(d), loaded=loaded)
    before = tree_hash(root)
    t = FakeSshdTarget(root)
    if not bad:
        assert set(apply_all(t, resolved).per_control) == {"test.one", "test.ciphers"}
        assert "aes128-ctr" in (root / "etc/ssh/sshd_config.d/00-test.conf").read_text()
        return
    with pytest.raises(ProfileError) as ei:
        apply_all(t, resolved)
    e = ei.value
    assert e.exit_code == 2 and e.key == "controls.test.ciphers" and e.line == 3
    assert "Bad SSH2 cipher spec 'not-a-cipher'" in e.message
    assert tree_hash(root) == before


class PreflightSshdTarget(RootfsTarget):
    """A fake root whose 'sshd -t -f /dev/null -o ...' rejects the cipher 'not-a-cipher'."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.runs: list[tuple[str, ...]] = []

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> RunResult:
        self.runs.append(tuple(argv))
        if "Ciphers=not-a-cipher" in argv:
            return RunResult(tuple(argv), 255, "", "Bad SSH2 cipher spec 'not-a-cipher'.\n")
        return RunResult(tuple(argv), 0, "", "")


def test_sshd_options_are_tried_before_anything_is_written(tmp_path: Path, root: Path) -> None:
    d = tmp_path / "pre-cat"
    d.mkdir()
    (d / "01.yaml").write_text(
        CATALOGUE
        + """\
  - id: test.sshd-ciphers
    title: sshd ciphers option
    rationale: an sshd option the image's sshd is asked about before any write
    level: 1
    rule: {type: config-option, path: /etc/ssh/sshd_config, style: sshd, key: Ciphers,
           value: aes256-ctr}
    references: {cis-debian13: ["5.1.6"]}
"""
    )
    write(root, "/usr/sbin/sshd", "#!/bin/false\n", 0o755)
    write(root, "/etc/ssh/sshd_config", "Port 22\n", 0o644)
    p = _profile(tmp_path, "  test.sshd-ciphers: {params: {value: not-a-cipher}}\n")
    loaded = load_profile(str(p))
    resolved = resolve(loaded.profile, load_catalogue(d), loaded=loaded)
    t = PreflightSshdTarget(root)
    before = tree_hash(root)
    with pytest.raises(ProfileError) as ei:
        apply_all(t, resolved)
    e = ei.value
    assert e.key == "controls.test.sshd-ciphers" and (e.file, e.line) == (str(p), 3)
    assert "rejects Ciphers=not-a-cipher" in e.message and "Bad SSH2 cipher" in e.message
    assert tree_hash(root) == before
    assert all("-f" in r and "/dev/null" in r for r in t.runs)  # only the preflight ran


# checks split with a forked child ---------------------------------------------------------------


@dataclass(frozen=True)
class _PidRule(Rule):
    """Passes, and says which process checked it; ``die_in_child`` kills a forked checker."""

    type_name: ClassVar[str] = "test-pid"
    parent: int = 0
    die_in_child: bool = False
    boom: bool = False

    def check(self, t: Target) -> Finding:
        if self.boom:
            raise RuntimeError(f"a bug in {self.control}")
        if self.die_in_child and os.getpid() != self.parent:
            os._exit(7)
        return self.finding(Status.PASS, "ok", str(os.getpid()), "test")

    def steps(self, t: Target) -> list[Step]:
        return []


@dataclass(frozen=True)
class _MainPidRule(_PidRule):
    check_in_main_process: ClassVar[bool] = True


def _controls(rules: list[_PidRule]) -> list[ResolvedControl]:
    out = []
    for i, r in enumerate(rules):
        cid = f"test.c{i}"
        ctl = Control(cid, "t", "r", 1, "test-pid", references={"cis-debian13": (f"1.1.{i}",)})
        out.append(ResolvedControl(ctl, dataclasses.replace(r, control=cid)))
    return out


def test_checks_split_with_a_child_give_the_same_findings_in_order(root: Path) -> None:
    """The whole default profile over a fake root (most checks fail, some error): the same
    findings, in the same order, checked in one process or split with a forked child."""
    loaded = load_profile("nanoclaw-debian13")
    resolved = resolve(loaded.profile, load_catalogue(), loaded=loaded)
    one = check_all(RootfsTarget(root), resolved, jobs=1)
    two = check_all(RootfsTarget(root), resolved, jobs=2)
    assert len(one) == len(resolved) > 300
    assert [f.control for f in one] == [rc.id for rc in resolved]
    assert two == one
    assert {f.status for f in one} >= {Status.PASS, Status.FAIL}


def test_the_child_checks_about_half_and_main_process_rules_stay_here(root: Path) -> None:
    me = os.getpid()
    rules = [_PidRule(parent=me) for _ in range(6)] + [_MainPidRule(parent=me) for _ in range(4)]
    found = check_all(RootfsTarget(root), _controls(rules), jobs=2)
    pids = [int(f.evidence.observed) for f in found]
    assert [f.control for f in found] == [f"test.c{i}" for i in range(10)]
    assert all(p == me for p in pids[6:])  # the main-process rules
    assert {p for p in pids[:6]} - {me}, "no control was checked by a child"
    assert sum(p != me for p in pids) == 5  # balanced: 5 here, 5 there
    assert all(f.references == (f"cis-debian13: 1.1.{i}",) for i, f in enumerate(found))


def test_a_child_that_dies_costs_time_not_findings(root: Path) -> None:
    me = os.getpid()
    before = child_pids()
    rules = [_PidRule(parent=me, die_in_child=True) for _ in range(6)]
    found = check_all(RootfsTarget(root), _controls(rules), jobs=2)
    assert [f.status for f in found] == [Status.PASS] * 6
    assert all(int(f.evidence.observed) == me for f in found)  # all checked here in the end
    assert child_pids() <= before  # the dead child was reaped


def test_a_check_that_raises_raises_the_same_split_or_not(root: Path) -> None:
    me = os.getpid()
    before = child_pids()
    for boom_at in (0, 1):  # here, then in the child's share
        rules = [_PidRule(parent=me, boom=(i == boom_at)) for i in range(4)]
        for jobs in (1, 2):
            with pytest.raises(RuntimeError, match=f"a bug in test.c{boom_at}"):
                check_all(RootfsTarget(root), _controls(rules), jobs=jobs)
    assert child_pids() <= before


def test_a_process_with_other_threads_checks_everything_itself(root: Path) -> None:
    me = os.getpid()
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        found = check_all(RootfsTarget(root), _controls([_PidRule(parent=me)] * 6), jobs=2)
    finally:
        stop.set()
        other.join()
    assert [int(f.evidence.observed) for f in found] == [me] * 6
