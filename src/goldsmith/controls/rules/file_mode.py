"""file-mode: a maximum mode (no bits beyond it) and owner/group over paths and globs."""

from __future__ import annotations

from dataclasses import dataclass

from goldsmith.controls.base import Rule
from goldsmith.controls.fsutil import Mode, fmt_mode, owner_text, resolve_gid, resolve_uid
from goldsmith.controls.steps import Chmod, Chown, Step
from goldsmith.model.records import FileType, Finding, Status
from goldsmith.targets.base import StatResult, Target


@dataclass(frozen=True)
class FileModeRule(Rule):
    type_name = "file-mode"

    paths: tuple[str, ...]
    #: the most permissive mode allowed: apply only ever removes bits
    max_mode: Mode
    owner: str | None = None
    group: str | None = None
    #: a path that matches nothing is a failure (default: nothing to check)
    must_exist: bool = False

    def __post_init__(self) -> None:
        if not self.paths or any(not p.startswith("/") for p in self.paths):
            raise ValueError("paths must be a non-empty list of absolute paths or globs")

    def _targets(self, t: Target) -> tuple[list[tuple[str, StatResult]], list[str]]:
        found: list[tuple[str, StatResult]] = []
        missing: list[str] = []
        seen: set[str] = set()
        for p in self.paths:
            names = t.glob(p) if any(c in p for c in "*?[") else [p]
            hit = False
            for name in names:
                st = t.lstat(name)
                if st is None or name in seen:
                    continue
                hit = True
                if st.type is FileType.SYMLINK:
                    continue  # the mode of a link means nothing; its target is its own entry
                seen.add(name)
                found.append((name, st))
            if not hit:
                missing.append(p)
        return found, missing

    def _want(self, t: Target) -> tuple[int | None, int | None]:
        return (
            None if self.owner is None else resolve_uid(t, self.owner),
            None if self.group is None else resolve_gid(t, self.group),
        )

    def _expected(self) -> str:
        text = f"mode at most {fmt_mode(self.max_mode)}"
        if self.owner is not None or self.group is not None:
            text += f", owner {self.owner or '*'}:{self.group or '*'}"
        return f"{', '.join(self.paths)}: {text}"

    def check(self, t: Target) -> Finding:
        found, missing = self._targets(t)
        uid, gid = self._want(t)
        bad: list[str] = []
        for name, st in found:
            if st.mode & ~self.max_mode:
                bad.append(f"{name} mode {fmt_mode(st.mode)}")
            if (uid is not None and st.uid != uid) or (gid is not None and st.gid != gid):
                bad.append(f"{name} owner {owner_text(t, st.uid, st.gid)}")
        if self.must_exist and missing:
            bad.extend(f"{p} missing" for p in missing)
        how = "lstat of each path (globs expanded in the target; symlinks skipped)"
        if not found and not bad:
            return self.finding(Status.NOT_APPLICABLE, self._expected(), "no file matches", how)
        observed = "; ".join(bad) if bad else f"{len(found)} file(s) within limits"
        return self.finding(Status.FAIL if bad else Status.PASS, self._expected(), observed, how)

    def steps(self, t: Target) -> list[Step]:
        found, _ = self._targets(t)
        uid, gid = self._want(t)
        steps: list[Step] = []
        for name, st in found:
            new = st.mode & self.max_mode
            nu = st.uid if uid is None else uid
            ng = st.gid if gid is None else gid
            chown = (nu, ng) != (st.uid, st.gid)
            if chown:
                steps.append(
                    Chown(
                        (
                            self.change(
                                name,
                                "owner",
                                owner_text(t, st.uid, st.gid),
                                owner_text(t, nu, ng),
                            ),
                        ),
                        name,
                        nu,
                        ng,
                    )
                )
            # chown clears setuid/setgid, so a kept special bit is set again afterwards
            if new != st.mode or (chown and new & 0o6000):
                steps.append(
                    Chmod((self.change(name, "mode", fmt_mode(st.mode), fmt_mode(new)),), name, new)
                )
        return steps
