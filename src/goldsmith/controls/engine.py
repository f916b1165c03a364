"""Running a profile's controls against a target: resolve, plan, apply (all or nothing), check.

``resolve`` decides which catalogue controls run (every control the profile does not disable
with ``enabled: false``) and builds every rule up front, so a bad control id or param is a
:class:`ProfileError` naming ``file:line`` and ``controls.<id>.params.<name>`` before anything
is written.

``apply_all`` is all-or-nothing for files: every write, chmod, chown, mkdir, unlink, rmtree and
symlink goes through a journal that records the path's previous state first; if any control
fails, the journal is replayed backwards (content, mode, owner, link target; created paths
removed). Commands (package installs, useradd) cannot be journalled per file: before each one
the account databases are saved (so a failed ``useradd``/``groupadd`` run is undone), but other
effects of a command that already succeeded (an installed package's files) stay; the error
names those commands. mtimes of restored files are not restored.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import posixpath
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from goldsmith.controls.base import Control, Rule
from goldsmith.controls.catalogue import Catalogue
from goldsmith.controls.selection import Selection
from goldsmith.controls.steps import WriteFile
from goldsmith.errors import GoldsmithError, ProfileError, ValidationFailedError
from goldsmith.model.records import Change, Evidence, FileType, Finding, Status
from goldsmith.targets.base import RunResult, StatResult, Target

if TYPE_CHECKING:  # the check worker resolves from a Selection without loading profiles
    from goldsmith.model.profile import Profile
    from goldsmith.model.profile_loader import LoadedProfile

__all__ = [
    "ACCOUNT_FILES",
    "ApplyError",
    "ApplyResult",
    "PlannedControl",
    "ResolvedControl",
    "Selection",
    "apply_all",
    "check_all",
    "plan_all",
    "resolve",
    "resolve_selection",
    "unexcepted_failures",
]

log = logging.getLogger(__name__)

#: files a command may change that are saved before every command and restored on rollback
ACCOUNT_FILES = (
    "/etc/passwd",
    "/etc/group",
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/subuid",
    "/etc/subgid",
)


class ApplyError(GoldsmithError):
    """A control could not be applied; every file the run changed was restored."""

    exit_code = 1


@dataclass(frozen=True)
class ResolvedControl:
    control: Control
    rule: Rule
    #: the profile's params for this control (merged over the catalogue defaults in ``rule``)
    overrides: Mapping[str, Any] = field(default_factory=dict)
    #: where the profile names this control ("file", line, column), if it does
    position: tuple[str, int, int] | None = None

    @property
    def id(self) -> str:
        return self.control.id


@dataclass(frozen=True)
class ApplyResult:
    changes: list[Change]
    #: control id -> the changes it made, for every control that ran (in order)
    per_control: dict[str, list[Change]]


@dataclass(frozen=True)
class PlannedControl:
    control: str
    changes: list[Change]
    #: unified diffs of the files the control would write
    diffs: list[str]


# resolve --------------------------------------------------------------------------------------


def resolve(
    profile: Profile, catalogue: Catalogue, *, loaded: LoadedProfile | None = None
) -> list[ResolvedControl]:
    """The controls the profile runs, in catalogue order, with their rules built."""
    return resolve_selection(Selection.of(profile, loaded), catalogue)


def resolve_selection(selection: Selection, catalogue: Catalogue) -> list[ResolvedControl]:
    """:func:`resolve` from a :class:`Selection`; errors name the profile's file and line."""
    where = selection.positions.get
    for cid in selection.controls:
        if cid not in catalogue.controls:
            try:
                catalogue.get(cid)
            except ProfileError as exc:
                raise _located(exc, where(f"controls.{cid}")) from None
    out: list[ResolvedControl] = []
    for cid, control in catalogue.controls.items():
        enabled, params = selection.controls.get(cid, (True, {}))
        if not enabled:
            continue
        overrides = dict(params)
        pos = where(f"controls.{cid}")
        try:
            rule = control.rule(overrides)
        except ProfileError as exc:
            key = exc.key or f"controls.{cid}.params"
            # the most precise position the profile has: the param, else the control
            at = where(key) or where(f"controls.{cid}.params") or pos
            if not overrides:  # the catalogue default itself is bad: not the profile's fault
                at = None
            raise _located(exc, at) from None
        out.append(ResolvedControl(control, rule, overrides, pos))
    return out


def _located(exc: ProfileError, at: tuple[str, int, int] | None) -> ProfileError:
    message = exc.message
    if exc.key:
        message = message.split(f"{exc.key}: ", 1)[-1]
    if exc.file is not None and exc.key:
        message = message.split(f"{exc.key}: ", 1)[-1]
    if at is None:
        return ProfileError(message, key=exc.key, hint=exc.hint)
    return ProfileError(message, file=at[0], line=at[1], column=at[2], key=exc.key, hint=exc.hint)


# plan / check ---------------------------------------------------------------------------------


def plan_all(target: Target, resolved: Sequence[ResolvedControl]) -> list[PlannedControl]:
    """What every control would change, against the target as it is now. Writes nothing."""
    with target.cached():
        return _plan_all(target, resolved)


def _plan_all(target: Target, resolved: Sequence[ResolvedControl]) -> list[PlannedControl]:
    out: list[PlannedControl] = []
    for rc in resolved:
        steps = rc.rule.steps(target)
        changes = [c for s in steps for c in s.changes]
        if not changes:
            continue
        diffs = [_diff(target, s) for s in steps if isinstance(s, WriteFile)]
        out.append(PlannedControl(rc.id, changes, [d for d in diffs if d]))
    return out


def _diff(target: Target, step: WriteFile) -> str:
    st = target.lstat(step.path)
    before = target.read_text(step.path) if st is not None and st.type is FileType.FILE else ""
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            step.content.splitlines(keepends=True),
            fromfile=f"a{step.path}" if st is not None else "/dev/null",
            tofile=f"b{step.path}",
        )
    )


def check_all(
    target: Target, resolved: Sequence[ResolvedControl], *, jobs: int = 1
) -> list[Finding]:
    """One finding per control, in order. A check that cannot run is an ``error`` finding.

    With ``jobs`` of 2 or more, a forked child checks about half of the controls while this
    process checks the rest (see :func:`_check_split`); the findings are the same.
    """
    with target.cached():
        # fork only a single-threaded process: a thread holding a lock at the fork (a logging
        # handler's, a buffered stream's) would leave it held forever in the child
        if jobs > 1 and len(resolved) > 1 and threading.active_count() == 1:
            return _check_split(target, resolved)
        return _check_all(target, resolved)


def _check_split(target: Target, resolved: Sequence[ResolvedControl]) -> list[Finding]:
    """Check every other control (never one whose rule must stay in this process) in a forked
    child (:class:`goldsmith.forked.Forked`), beside this process checking the rest: checks only
    read, and each process has its own copy of the target's memo.

    If the child cannot be started, dies, or sends no complete answer, this process checks
    its share itself, so a failure costs time and never changes the findings; an exception a
    check raises (not a GoldsmithError, which is an ``error`` finding) is raised from here.
    """
    movable = [i for i, rc in enumerate(resolved) if not rc.rule.check_in_main_process]
    # the child takes half of all the controls, spread evenly over the movable ones (rules
    # of a kind sit together in the catalogue and cost alike)
    n = min(len(movable), len(resolved) // 2)
    chosen = {
        i for j, i in enumerate(movable) if (j + 1) * n // len(movable) > j * n // len(movable)
    }
    theirs = sorted(chosen)
    # this process's pinned checks last: a tree scan may wait for its prefetched walk, and the
    # other checks run meanwhile (findings go back in catalogue order whatever the order here)
    mine = [i for i in range(len(resolved)) if i not in chosen]
    mine.sort(key=lambda i: resolved[i].rule.check_in_main_process)
    if not theirs:
        return _check_all(target, resolved)
    from goldsmith.forked import Forked

    their_part = [resolved[i] for i in theirs]
    try:
        child = Forked(lambda: _check_all(target, their_part))
    except OSError:
        return _check_all(target, resolved)
    out: dict[int, Finding] = {}
    try:
        out.update(zip(mine, _check_all(target, [resolved[i] for i in mine]), strict=True))
        got = child.result()
    finally:
        child.cancel()  # this process failed first: stop the child, leave no zombie
    if not (
        isinstance(got, list)
        and len(got) == len(theirs)
        and all(isinstance(f, Finding) for f in got)
    ):
        log.debug("the checking child gave no answer; checking its %d controls here", len(theirs))
        got = _check_all(target, their_part)
    out.update(zip(theirs, got, strict=True))
    return [out[i] for i in range(len(resolved))]


def _check_all(target: Target, resolved: Sequence[ResolvedControl]) -> list[Finding]:
    out: list[Finding] = []
    refs: tuple[str, ...]
    for rc in resolved:
        refs = rc.control.reference_strings()
        try:
            found = rc.rule.check(target)
        except GoldsmithError as exc:
            found = Finding(
                control=rc.id,
                status=Status.ERROR,
                evidence=Evidence(expected="the check runs", observed=exc.message, how="check"),
            )
        out.append(dataclasses.replace(found, references=refs))
    return out


def unexcepted_failures(
    profile: Profile, findings: Sequence[Finding], *, today: Any = None
) -> list[Finding]:
    """Findings that neither pass nor are covered by an unexpired profile exception."""
    import datetime as dt

    day = today or dt.datetime.now(tz=dt.UTC).date()
    excepted = {e.control for e in profile.exceptions if e.expires >= day}
    ok = (Status.PASS, Status.NOT_APPLICABLE, Status.EXCEPTED)
    return [f for f in findings if f.status not in ok and f.control not in excepted]


# apply ----------------------------------------------------------------------------------------


def apply_all(target: Target, resolved: Sequence[ResolvedControl]) -> ApplyResult:
    """Apply every control in order; on any failure restore what the run changed, then raise.

    A validator rejecting content (``sshd -t``) is a :class:`ProfileError` (exit 2) naming the
    control; any other failure is an :class:`ApplyError` naming it. sshd options are tried on
    the image's sshd before anything is written (:func:`sshd_preflight`), because a rollback
    cannot undo package installs; the written configuration is tested again afterwards.
    Package rules run apt in the target: callers keep a ``target.session()`` and
    ``host_resolver(target)`` open.

    Expensive reads are memoised for the run (:meth:`Target.cached`); every write and command
    through the target (or the journal) forgets them, so each control sees the target as the
    controls before it left it.
    """
    with target.cached():
        return _apply_all(target, resolved)


def _apply_all(target: Target, resolved: Sequence[ResolvedControl]) -> ApplyResult:
    sshd_preflight(target, resolved)
    journal = JournalTarget(target)
    per_control: dict[str, list[Change]] = {}
    changes: list[Change] = []
    for rc in resolved:
        try:
            made = rc.rule.apply(journal)
        except GoldsmithError as exc:
            commands = journal.rollback()
            undone = ""
            if commands:
                undone = (
                    "; these commands had already run and their effects beyond the account "
                    "files are not undone: " + "; ".join(" ".join(c) for c in commands)
                )
            hint = f"nothing was changed{undone}" if not commands else undone.lstrip("; ")
            if isinstance(exc, ValidationFailedError):
                at = rc.position
                raise ProfileError(
                    f"rejected by the validator: {exc.message}",
                    file=at[0] if at else None,
                    line=at[1] if at else None,
                    column=at[2] if at else None,
                    key=f"controls.{rc.id}",
                    hint=hint,
                ) from exc
            raise ApplyError(f"control {rc.id} failed: {exc.message}", hint=hint) from exc
        per_control[rc.id] = made
        changes += made
    rejected = _sshd_rejects(target, changes)
    if rejected is not None:
        journal.rollback()
        culprit = _blame(resolved, per_control, rejected)
        at = culprit.position if culprit is not None else None
        raise ProfileError(
            f"the image's sshd rejects the configuration: {rejected}",
            file=at[0] if at else None,
            line=at[1] if at else None,
            column=at[2] if at else None,
            key=f"controls.{culprit.id}" if culprit is not None else None,
            hint="nothing was changed; check the option's value against sshd_config(5) of "
            "the image's OpenSSH",
        )
    return ApplyResult(changes, per_control)


#: sshd reads everything under here; a change there is tested with the image's own sshd
SSHD_DIR = "/etc/ssh/"
SSHD = "/usr/sbin/sshd"
#: a throwaway host key in the session's /run (sshd -t refuses to run without one)
_SSHD_TEST = (
    "mkdir -p -m 0755 /run/sshd && k=$(mktemp -u /run/goldsmith-hostkey.XXXXXX) && "
    'ssh-keygen -q -t ed25519 -N "" -f "$k" && {sshd} -t -h "$k" "$@"; rc=$?; '
    'rm -f "$k" "$k.pub"; exit $rc'
)


def _sshd_test(target: Target, extra: Sequence[str] = ()) -> str | None:
    """Run ``sshd -t`` (with ``extra`` args) in the target: its complaint, or None if fine."""
    if target.live:
        argv = [SSHD, "-t", *extra]
    else:
        argv = ["/bin/sh", "-c", _SSHD_TEST.format(sshd=SSHD), "sh", *extra]
    r = target.run(argv, check=False)
    if r.ok:
        return None
    return " ".join((r.stderr or r.stdout).split()) or f"exit status {r.returncode}"


def _sshd_rejects(target: Target, changes: Sequence[Change]) -> str | None:
    """sshd -t's complaint about the configuration written, or None if it accepts it (or
    nothing sshd reads changed, or the image has no sshd)."""
    if not any(c.object.startswith(SSHD_DIR) for c in changes) or not target.exists(SSHD):
        return None
    return _sshd_test(target)


def sshd_preflight(target: Target, resolved: Sequence[ResolvedControl]) -> None:
    """Before anything is written: every sshd option a control sets, given to the image's
    ``sshd -t -f /dev/null -o Key=value``. A rejected one is a ProfileError naming it."""
    from goldsmith.controls.configfile import Style
    from goldsmith.controls.rules.config_option import ConfigOptionRule

    opts = [
        (rc, ["-o", f"{rc.rule.key}={rc.rule.value}"])
        for rc in resolved
        if isinstance(rc.rule, ConfigOptionRule) and rc.rule.style is Style.SSHD
    ]
    if not opts or not target.exists(SSHD):
        return
    if _sshd_test(target, ["-f", "/dev/null", *[a for _, o in opts for a in o]]) is None:
        return
    for rc, o in opts:
        complaint = _sshd_test(target, ["-f", "/dev/null", *o])
        if complaint is not None:
            at = rc.position
            raise ProfileError(
                f"the image's sshd rejects {o[1]}: {complaint}",
                file=at[0] if at else None,
                line=at[1] if at else None,
                column=at[2] if at else None,
                key=f"controls.{rc.id}",
                hint="nothing was changed; check the value against sshd_config(5) of the "
                "image's OpenSSH",
            )


def _blame(
    resolved: Sequence[ResolvedControl], per_control: Mapping[str, list[Change]], message: str
) -> ResolvedControl | None:
    """The control most likely at fault: one that changed sshd's files, preferring one whose
    profile params appear in sshd's message, then one the profile overrides."""
    touched = [
        rc
        for rc in resolved
        if any(c.object.startswith(SSHD_DIR) for c in per_control.get(rc.id, ()))
    ]

    def named(rc: ResolvedControl) -> bool:
        return any(isinstance(v, str) and v and v in message for v in rc.overrides.values())

    for pick in (named, lambda rc: bool(rc.overrides), lambda rc: True):
        found = [rc for rc in touched if pick(rc)]
        if found:
            return found[0]
    return None


@dataclass(frozen=True)
class _Saved:
    path: str
    st: StatResult | None
    data: bytes | None = None
    link: str | None = None
    children: tuple[_Saved, ...] = ()


class JournalTarget(Target):
    """A target that records each path's previous state before changing it, and can undo."""

    def __init__(self, inner: Target) -> None:
        self.inner = inner
        self.live = inner.live
        self._saved: list[_Saved] = []
        self._seen: set[str] = set()
        self._commands: list[tuple[str, ...]] = []

    @property
    def root(self) -> Any:
        return self.inner.root

    def memo_owner(self) -> Target:
        # reads go straight through, and the rollback writes to ``inner`` directly: share its
        # memo so that either way of writing empties the one memo both read
        return self.inner.memo_owner()

    @property
    def description(self) -> str:
        return self.inner.description

    # journal ------------------------------------------------------------------------------
    def _snapshot(self, path: str, deep: bool) -> _Saved:
        st = self.inner.lstat(path)
        if st is None:
            return _Saved(path, None)
        if st.type is FileType.FILE:
            return _Saved(path, st, data=self.inner.read_bytes(path))
        if st.type is FileType.SYMLINK:
            return _Saved(path, st, link=self.inner.readlink(path))
        if st.type is FileType.DIR and deep:
            kids = tuple(
                self._snapshot(posixpath.join(path, n), True) for n in self.inner.listdir(path)
            )
            return _Saved(path, st, children=kids)
        return _Saved(path, st)

    def _record(self, path: str, *, deep: bool = False, force: bool = False) -> None:
        path = posixpath.normpath(path)
        if path in self._seen and not force:
            return
        # a path that does not exist yet: record its topmost missing ancestor as absent
        probe = path
        while True:
            parent = posixpath.dirname(probe)
            if parent == probe or self.inner.lstat(parent) is not None:
                break
            probe = parent
        if probe != path and probe not in self._seen:
            self._seen.add(probe)
            self._saved.append(_Saved(probe, None))
        self._seen.add(path)
        self._saved.append(self._snapshot(path, deep))

    def rollback(self) -> list[tuple[str, ...]]:
        """Restore every recorded path (newest record first); the commands that had run."""
        for saved in reversed(self._saved):
            self._restore(saved)
        self._saved.clear()
        self._seen.clear()
        return list(self._commands)

    def _restore(self, s: _Saved) -> None:
        t = self.inner
        now = t.lstat(s.path)
        if s.st is None:
            if now is not None:
                t.rmtree(s.path)
            return
        if now is not None and (now.type is not s.st.type or s.st.type is not FileType.DIR):
            if now.type is FileType.DIR:
                t.rmtree(s.path)
            else:
                t.unlink(s.path)
            now = None
        if s.st.type is FileType.FILE:
            assert s.data is not None
            t.write_bytes(s.path, s.data, mode=s.st.mode, uid=s.st.uid, gid=s.st.gid)
            t.chmod(s.path, s.st.mode)  # setuid/setgid bits after the owner
        elif s.st.type is FileType.SYMLINK:
            assert s.link is not None
            t.symlink(s.link, s.path)
            t.chown(s.path, s.st.uid, s.st.gid)
        elif s.st.type is FileType.DIR:
            if now is None:
                t.mkdir(s.path, s.st.mode)
            for child in s.children:
                self._restore(child)
            t.chown(s.path, s.st.uid, s.st.gid)
            t.chmod(s.path, s.st.mode)
        else:  # pragma: no cover - steps never touch device nodes, fifos or sockets
            log.warning("cannot restore %s (%s)", s.path, s.st.type)

    # reading: straight through ------------------------------------------------------------
    def read_bytes(self, path: str) -> bytes:
        return self.inner.read_bytes(path)

    def exists(self, path: str) -> bool:
        return self.inner.exists(path)

    def lstat(self, path: str) -> StatResult | None:
        return self.inner.lstat(path)

    def stat(self, path: str) -> StatResult | None:
        return self.inner.stat(path)

    def readlink(self, path: str) -> str:
        return self.inner.readlink(path)

    def listdir(self, path: str) -> list[str]:
        return self.inner.listdir(path)

    def glob(self, pattern: str) -> list[str]:
        return self.inner.glob(pattern)

    # writing: journalled ------------------------------------------------------------------
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
        self._record(path)
        self.inner.write_bytes(path, data, mode=mode, uid=uid, gid=gid, validate=validate)

    def chmod(self, path: str, mode: int) -> None:
        self._record(self._followed(path))
        self.inner.chmod(path, mode)

    def chown(self, path: str, uid: int, gid: int) -> None:
        self._record(path)
        self.inner.chown(path, uid, gid)

    def mkdir(self, path: str, mode: int = 0o755, *, parents: bool = False) -> None:
        self._record(path)
        self.inner.mkdir(path, mode, parents=parents)

    def unlink(self, path: str) -> None:
        self._record(path)
        self.inner.unlink(path)

    def rmtree(self, path: str) -> None:
        self._record(path, deep=True, force=True)
        self.inner.rmtree(path)

    def symlink(self, target: str, path: str) -> None:
        self._record(path)
        self.inner.symlink(target, path)

    def _followed(self, path: str) -> str:
        """chmod follows a symlink: journal what it points to (inside the target)."""
        for _ in range(40):
            st = self.inner.lstat(path)
            if st is None or st.type is not FileType.SYMLINK:
                return path
            link = self.inner.readlink(path)
            path = posixpath.normpath(posixpath.join(posixpath.dirname(path), link))
        return path

    # commands -----------------------------------------------------------------------------
    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> RunResult:
        for f in ACCOUNT_FILES:
            self._record(f)
        self._commands.append(tuple(argv))
        return self.inner.run(argv, input=input, env=env, timeout=timeout, check=check)

    def session(self) -> Any:
        return self.inner.session()

    def commands(self) -> Iterator[tuple[str, ...]]:
        yield from self._commands
