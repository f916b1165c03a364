"""cron-at-permissions: cron.allow / at.allow exist, root-only; cron.deny / at.deny absent."""

from __future__ import annotations

from dataclasses import dataclass

from goldsmith.controls.base import Rule
from goldsmith.controls.fsutil import Mode, fmt_mode, owner_text, resolve_gid
from goldsmith.controls.steps import Chmod, Chown, Remove, Step, WriteFile
from goldsmith.model.records import FileType, Finding, Status
from goldsmith.targets.base import Target


@dataclass(frozen=True)
class CronAtPermissionsRule(Rule):
    type_name = "cron-at-permissions"

    allow: tuple[str, ...] = ("/etc/cron.allow", "/etc/at.allow")
    deny: tuple[str, ...] = ("/etc/cron.deny", "/etc/at.deny")
    #: maximum mode of the allow files
    mode: Mode = 0o640
    group: str = "root"
    #: users written to an allow file this rule creates (an existing file keeps its list)
    users: tuple[str, ...] = ("root",)

    def __post_init__(self) -> None:
        if any(not p.startswith("/") for p in self.allow + self.deny):
            raise ValueError("paths must be absolute")

    def _problems(self, t: Target) -> list[str]:
        gid = resolve_gid(t, self.group)
        out = []
        for p in self.allow:
            st = t.lstat(p)
            if st is None or st.type is not FileType.FILE:
                out.append(f"{p} missing" if st is None else f"{p} is a {st.type}")
                continue
            if st.mode & ~self.mode:
                out.append(f"{p} mode {fmt_mode(st.mode)}")
            if (st.uid, st.gid) != (0, gid):
                out.append(f"{p} owner {owner_text(t, st.uid, st.gid)}")
        out += [f"{p} present" for p in self.deny if t.lstat(p) is not None]
        return out

    def check(self, t: Target) -> Finding:
        problems = self._problems(t)
        return self.finding(
            Status.FAIL if problems else Status.PASS,
            f"{', '.join(self.allow)}: mode at most {fmt_mode(self.mode)} root:{self.group}; "
            f"{', '.join(self.deny)} absent",
            "; ".join(problems) or "as expected",
            "lstat of each file",
        )

    def steps(self, t: Target) -> list[Step]:
        gid = resolve_gid(t, self.group)
        steps: list[Step] = []
        for p in self.allow:
            st = t.lstat(p)
            if st is None:
                content = "".join(u + "\n" for u in self.users)
                steps.append(
                    WriteFile(
                        (self.change(p, "content", None, ",".join(self.users)),),
                        p,
                        content,
                        self.mode,
                        0,
                        gid,
                    )
                )
                continue
            if (st.uid, st.gid) != (0, gid):
                steps.append(
                    Chown(
                        (
                            self.change(
                                p, "owner", owner_text(t, st.uid, st.gid), owner_text(t, 0, gid)
                            ),
                        ),
                        p,
                        0,
                        gid,
                    )
                )
            if st.mode & ~self.mode:
                new = st.mode & self.mode
                steps.append(
                    Chmod((self.change(p, "mode", fmt_mode(st.mode), fmt_mode(new)),), p, new)
                )
        for p in self.deny:
            if t.lstat(p) is not None:
                steps.append(Remove((self.change(p, "file", "present", None),), p))
        return steps
