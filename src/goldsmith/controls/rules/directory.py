"""directory: a directory with mode and owner, optionally append-only at every boot.

The append-only flag is set by a tmpfiles.d ``h <path> - - - - +a`` line rather than chattr
on the rootfs: the flag does not survive copying the tree into a disk image, and a boot-time
line also re-applies it if someone clears it. The same file carries a ``d`` line so the
directory exists with its mode and owner even on a freshly mounted /var/log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from goldsmith.controls.base import Rule
from goldsmith.controls.fsutil import (
    Mode,
    dropin_files,
    file_steps,
    fmt_mode,
    owner_text,
    read_optional,
    resolve_gid,
    resolve_uid,
)
from goldsmith.controls.steps import Chmod, Chown, MakeDir, Step
from goldsmith.controls.templating import render
from goldsmith.model.records import FileType, Finding, Status
from goldsmith.targets.base import Target

TMPFILES_DIRS = (
    "/etc/tmpfiles.d",
    "/run/tmpfiles.d",
    "/usr/local/lib/tmpfiles.d",
    "/usr/lib/tmpfiles.d",
    "/lib/tmpfiles.d",
)


def first_h_line(t: Target, path: str) -> tuple[str | None, list[str]]:
    """The attribute argument of the first ``h`` line for ``path`` (tmpfiles: first wins)."""
    files = dropin_files(t, TMPFILES_DIRS, ".conf")
    for f in files:
        for raw in (read_optional(t, f) or "").splitlines():
            w = raw.split()
            if len(w) >= 7 and w[0] in ("h", "H") and w[1].rstrip("/") == path.rstrip("/"):
                return w[6], files
    return None, files


@dataclass(frozen=True)
class DirectoryRule(Rule):
    type_name = "directory"

    path: str
    mode: Mode = 0o750
    owner: str = "root"
    group: str = "root"
    append_only: bool = False
    #: default /etc/tmpfiles.d/goldsmith-<path with / as ->.conf
    tmpfiles: str | None = None

    def __post_init__(self) -> None:
        if not self.path.startswith("/") or self.path == "/" or any(c.isspace() for c in self.path):
            raise ValueError("path must be absolute, not /, without spaces")

    @property
    def tmpfiles_path(self) -> str:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", self.path.strip("/"))
        return self.tmpfiles or f"/etc/tmpfiles.d/goldsmith-{slug}.conf"

    def _tmpfiles_text(self) -> str:
        return render(
            "tmpfiles-directory.conf.j2",
            {
                "control": self.control,
                "path": self.path,
                "mode": fmt_mode(self.mode),
                "owner": self.owner,
                "group": self.group,
                "append_only": self.append_only,
            },
        )

    def check(self, t: Target) -> Finding:
        problems: list[str] = []
        st = t.lstat(self.path)
        uid, gid = resolve_uid(t, self.owner), resolve_gid(t, self.group)
        if st is None or st.type is not FileType.DIR:
            problems.append("missing" if st is None else f"is a {st.type}")
        else:
            if st.mode != self.mode:
                problems.append(f"mode {fmt_mode(st.mode)}")
            if (st.uid, st.gid) != (uid, gid):
                problems.append(f"owner {owner_text(t, st.uid, st.gid)}")
        if read_optional(t, self.tmpfiles_path) != self._tmpfiles_text():
            problems.append(f"{self.tmpfiles_path} missing or different")
        how = f"lstat {self.path}; read {self.tmpfiles_path}"
        if self.append_only:
            attr, _ = first_h_line(t, self.path)
            if attr is None or not attr.startswith("+") or "a" not in attr:
                problems.append(f"first tmpfiles h line for {self.path}: {attr or 'none'}")
            how += "; first h line across tmpfiles.d"
            if t.live:
                r = t.run(["lsattr", "-d", self.path], check=False)
                flags = r.stdout.split()[0] if r.ok and r.stdout.split() else ""
                if "a" not in flags:
                    problems.append(f"lsattr: {flags or r.stderr.strip()}")
                how += f"; lsattr -d {self.path}"
            else:
                how += "; flag itself set at boot by systemd-tmpfiles (proven at boot test)"
        expected = f"{self.path} dir mode {fmt_mode(self.mode)} {self.owner}:{self.group}"
        if self.append_only:
            expected += ", append-only"
        return self.finding(
            Status.FAIL if problems else Status.PASS,
            expected,
            "; ".join(problems) or "as expected",
            how,
        )

    def steps(self, t: Target) -> list[Step]:
        uid, gid = resolve_uid(t, self.owner), resolve_gid(t, self.group)
        steps: list[Step] = []
        st = t.lstat(self.path)
        if st is None:
            steps.append(
                MakeDir(
                    (self.change(self.path, "directory", None, fmt_mode(self.mode)),),
                    self.path,
                    self.mode,
                    uid,
                    gid,
                )
            )
        else:
            if (st.uid, st.gid) != (uid, gid):
                steps.append(
                    Chown(
                        (
                            self.change(
                                self.path,
                                "owner",
                                owner_text(t, st.uid, st.gid),
                                f"{self.owner}:{self.group}",
                            ),
                        ),
                        self.path,
                        uid,
                        gid,
                    )
                )
            if st.mode != self.mode:
                steps.append(
                    Chmod(
                        (self.change(self.path, "mode", fmt_mode(st.mode), fmt_mode(self.mode)),),
                        self.path,
                        self.mode,
                    )
                )
        steps += file_steps(self.control, t, self.tmpfiles_path, self._tmpfiles_text())
        return steps
