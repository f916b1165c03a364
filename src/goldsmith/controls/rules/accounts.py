"""user / group: an account exists with the given ids and attributes (useradd/groupadd)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from goldsmith.controls.base import Rule
from goldsmith.controls.fsutil import read_group, read_optional, read_passwd
from goldsmith.controls.steps import RunCommand, Step
from goldsmith.model.records import Finding, Status
from goldsmith.targets.base import Target

_NAME_RE = re.compile(r"^[a-z_][a-z0-9_-]*\$?$")


def sys_max(t: Target, key: str, default: int) -> int:
    """SYS_UID_MAX / SYS_GID_MAX from the target's login.defs."""
    for line in (read_optional(t, "/etc/login.defs") or "").splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == key and words[1].isdigit():
            return int(words[1])
    return default


@dataclass(frozen=True)
class GroupRule(Rule):
    type_name = "group"

    name: str
    gid: int | None = None
    system: bool = True

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name) or len(self.name) > 32:
            raise ValueError(f"not a group name: {self.name!r}")

    def _problems(self, t: Target) -> list[str] | None:
        g = read_group(t).get(self.name)
        if g is None:
            return None
        out = []
        if self.gid is not None and g.gid != self.gid:
            out.append(f"gid {g.gid} (want {self.gid})")
        is_system = g.gid <= sys_max(t, "SYS_GID_MAX", 999)
        if is_system != self.system:
            out.append(f"gid {g.gid} is {'a' if is_system else 'not a'} system gid")
        return out

    def check(self, t: Target) -> Finding:
        problems = self._problems(t)
        expected = f"group {self.name}" + (f" gid {self.gid}" if self.gid is not None else "")
        expected += " (system)" if self.system else ""
        observed = "missing" if problems is None else ("; ".join(problems) or "as expected")
        return self.finding(
            Status.PASS if problems == [] else Status.FAIL,
            expected,
            observed,
            "read /etc/group, /etc/login.defs",
        )

    def steps(self, t: Target) -> list[Step]:
        problems = self._problems(t)
        if problems == []:
            return []
        gid = ["--gid", str(self.gid)] if self.gid is not None else []
        if problems is None:
            argv = ("groupadd", *(["--system"] if self.system else []), *gid, self.name)
            return [RunCommand((self.change(self.name, "group", None, "present"),), argv)]
        if self.gid is None:
            return []  # only the system flag differs: groupmod cannot change that by itself
        old = read_group(t)[self.name].gid
        return [
            RunCommand(
                (self.change(self.name, "gid", str(old), str(self.gid)),),
                ("groupmod", *gid, self.name),
            )
        ]


@dataclass(frozen=True)
class UserRule(Rule):
    type_name = "user"

    name: str
    uid: int | None = None
    group: str | None = None  # primary group; created beforehand by a group rule
    shell: str = "/usr/sbin/nologin"
    home: str | None = None
    system: bool = True
    create_home: bool = False

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name) or len(self.name) > 32:
            raise ValueError(f"not a user name: {self.name!r}")

    def _diffs(self, t: Target) -> dict[str, tuple[str, str]] | None:
        u = read_passwd(t).get(self.name)
        if u is None:
            return None
        out: dict[str, tuple[str, str]] = {}
        if self.uid is not None and u.uid != self.uid:
            out["uid"] = (str(u.uid), str(self.uid))
        if self.group is not None:
            g = read_group(t).get(self.group)
            if g is None or g.gid != u.gid:
                out["gid"] = (str(u.gid), self.group)
        if u.shell != self.shell:
            out["shell"] = (u.shell, self.shell)
        if self.home is not None and u.home != self.home:
            out["home"] = (u.home, self.home)
        is_system = u.uid <= sys_max(t, "SYS_UID_MAX", 999)
        if is_system != self.system and "uid" not in out:
            out["system"] = (str(is_system).lower(), str(self.system).lower())
        return out

    def check(self, t: Target) -> Finding:
        diffs = self._diffs(t)
        parts = [f"user {self.name}", f"shell {self.shell}"]
        if self.uid is not None:
            parts.append(f"uid {self.uid}")
        if self.group is not None:
            parts.append(f"group {self.group}")
        if self.home is not None:
            parts.append(f"home {self.home}")
        parts.append("system" if self.system else "regular")
        observed = (
            "missing"
            if diffs is None
            else "; ".join(f"{k} {a} (want {b})" for k, (a, b) in diffs.items()) or "as expected"
        )
        return self.finding(
            Status.PASS if diffs == {} else Status.FAIL,
            ", ".join(parts),
            observed,
            "read /etc/passwd, /etc/group, /etc/login.defs",
        )

    def steps(self, t: Target) -> list[Step]:
        diffs = self._diffs(t)
        if diffs == {}:
            return []
        opts: list[str] = []
        if diffs is None:
            opts += ["--system"] if self.system else []
            opts += ["--create-home"] if self.create_home else ["--no-create-home"]
            opts += ["--uid", str(self.uid)] if self.uid is not None else []
            opts += ["--gid", self.group] if self.group is not None else []
            opts += ["--home-dir", self.home] if self.home is not None else []
            opts += ["--shell", self.shell]
            argv = ("useradd", *opts, self.name)
            return [RunCommand((self.change(self.name, "user", None, "present"),), argv)]
        flag = {"uid": "--uid", "gid": "--gid", "shell": "--shell", "home": "--home"}
        for k, (_, after) in diffs.items():
            if k in flag:
                opts += [flag[k], after]
        if not opts:
            return []  # only the system flag differs: that needs a new uid, give one
        changes = tuple(self.change(self.name, k, a, b) for k, (a, b) in diffs.items() if k in flag)
        return [RunCommand(changes, ("usermod", *opts, self.name))]
