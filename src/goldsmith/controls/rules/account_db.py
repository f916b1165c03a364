"""account-db: properties of the account database as a whole (passwd, shadow, group, gshadow).

One rule type, one ``condition`` param choosing the property (the name ``check`` is the rule's
method). Where the fix is unambiguous (a nologin shell for a system account, locking an
account, emptying the shadow group, tightening a mode) ``steps`` returns it, through the
same tools an administrator would use (``usermod``, ``passwd``, ``gpasswd``) so the files
stay consistent and locked while they change. Where a human must decide (a second uid 0
account, duplicate ids, a missing primary group) ``steps`` returns [] and the check fails
with evidence naming what needs review: an honest check-only control.

The files are parsed raw here, line by line, unlike ``fsutil.read_passwd`` which keeps the
first entry per name: duplicates are exactly what some conditions look for.
"""

from __future__ import annotations

import datetime as dt
import posixpath
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from goldsmith.controls.base import Rule
from goldsmith.controls.fsutil import Mode, fmt_mode, read_optional
from goldsmith.controls.steps import Chmod, Chown, MakeDir, RunCommand, Step
from goldsmith.model.records import FileType, Finding, Status
from goldsmith.targets.base import Target

NOLOGIN = "/usr/sbin/nologin"
#: shells that refuse a login (CIS: "not a valid login shell")
NOLOGIN_SHELLS = frozenset(
    {"/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false", "/bin/nologin"}
)
#: system accounts whose shell is their job (Debian's sync; shutdown/halt on other distros)
SHELL_EXEMPT = ("root", "sync", "shutdown", "halt")
#: accounts CIS allows to have primary group 0 besides root
GID0_EXEMPT = ("root", "sync", "shutdown", "halt", "operator")
NOBODY_UID = 65534


class Condition(StrEnum):
    SHADOWED_PASSWORDS = "shadowed-passwords"
    NO_EMPTY_PASSWORDS = "no-empty-passwords"
    ROOT_ONLY_UID0 = "root-only-uid0"
    ROOT_ONLY_GID0_ACCOUNT = "root-only-gid0-account"
    ROOT_ONLY_GID0_GROUP = "root-only-gid0-group"
    ROOT_ACCESS_CONTROLLED = "root-access-controlled"
    GROUPS_EXIST = "groups-exist"
    NO_DUPLICATE_UIDS = "no-duplicate-uids"
    NO_DUPLICATE_GIDS = "no-duplicate-gids"
    NO_DUPLICATE_USER_NAMES = "no-duplicate-user-names"
    NO_DUPLICATE_GROUP_NAMES = "no-duplicate-group-names"
    SHADOW_GROUP_EMPTY = "shadow-group-empty"
    LAST_CHANGE_IN_PAST = "last-change-in-past"
    SYSTEM_ACCOUNTS_NOLOGIN = "system-accounts-nologin"
    SYSTEM_ACCOUNTS_LOCKED = "system-accounts-locked"
    ROOT_PATH_INTEGRITY = "root-path-integrity"
    HOME_DIRS = "home-dirs"
    DOT_FILES = "dot-files"


# parsing -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Line:
    """One entry of a colon-separated account file, every field kept as text."""

    file: str
    number: int
    fields: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.fields[0]

    def field(self, i: int) -> str:
        return self.fields[i] if i < len(self.fields) else ""

    def where(self) -> str:
        return f"{self.file}:{self.number}"


def read_entries(t: Target, path: str) -> list[Line]:
    out = []
    for n, raw in enumerate((read_optional(t, path) or "").splitlines(), 1):
        if not raw.strip() or raw.startswith("#"):
            continue
        out.append(Line(path, n, tuple(raw.split(":"))))
    return out


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def login_defs(t: Target) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (read_optional(t, "/etc/login.defs") or "").splitlines():
        words = line.split(None, 1)
        if len(words) == 2 and not words[0].startswith("#"):
            out[words[0]] = words[1].strip()
    return out


def uid_min(t: Target) -> int:
    return _int(login_defs(t).get("UID_MIN", "")) or 1000


def valid_shells(t: Target) -> frozenset[str]:
    """Login shells from /etc/shells, minus any nologin listed there."""
    text = read_optional(t, "/etc/shells") or ""
    shells = {ln.strip() for ln in text.splitlines() if ln.strip().startswith("/")}
    return frozenset(s for s in shells if s not in NOLOGIN_SHELLS and "nologin" not in s)


def is_locked(password_field: str) -> bool:
    """A shadow password field no password can match: "!..." (locked) or "*" (none set)."""
    return password_field.startswith(("!", "*"))


def _limit(items: Sequence[str], n: int = 20) -> str:
    shown = "; ".join(items[:n])
    return shown + (f"; ... ({len(items) - n} more)" if len(items) > n else "")


# the rule ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    text: str
    step: Step | None = None
    #: a step the fix needs first (shared between problems: committed once)
    before: Step | None = None

    def manual(self, why: str) -> Problem:
        return Problem(f"{self.text} ({why})")


@dataclass(frozen=True)
class AccountDbRule(Rule):
    type_name = "account-db"

    condition: Condition
    #: "YYYY-MM-DD" for last-change-in-past; default: today's date from the clock (UTC),
    #: never SOURCE_DATE_EPOCH, which is a build input and may be years old
    today: str | None = None
    #: the loosest mode allowed for interactive users' home directories
    home_max_mode: Mode = 0o750
    #: accounts left alone by system-accounts-nologin / -locked
    exempt: tuple[str, ...] = SHELL_EXEMPT

    def __post_init__(self) -> None:
        if self.today is not None:
            dt.date.fromisoformat(self.today)  # ValueError names the bad date

    # shared reads -----------------------------------------------------------------------------
    def _today(self) -> dt.date:
        if self.today is not None:
            return dt.date.fromisoformat(self.today)
        return dt.datetime.now(dt.UTC).date()

    def _expected(self) -> str:
        return _EXPECTED[self.condition]

    def _interactive(self, t: Target) -> list[Line]:
        shells = valid_shells(t)
        return [
            e
            for e in read_entries(t, "/etc/passwd")
            if e.field(6) in shells and _int(e.field(2)) is not None
        ]

    # check / steps ---------------------------------------------------------------------------
    def problems(self, t: Target) -> tuple[list[Problem], str]:
        """What is wrong (each with its fix, if one is safe) and how it was read."""
        return _CHECKS[self.condition](self, t)

    def check(self, t: Target) -> Finding:
        found, how = self.problems(t)
        if not found:
            return self.finding(Status.PASS, self._expected(), "none found", how)
        observed = _limit([p.text for p in found])
        manual = [p for p in found if p.step is None]
        if manual:
            observed += f" [{len(manual)} need a human decision: no automatic fix]"
        return self.finding(Status.FAIL, self._expected(), observed, how)

    def steps(self, t: Target) -> list[Step]:
        found, _ = self.problems(t)
        steps: dict[int, Step] = {}  # one step may fix several problems (pwconv)
        for p in found:
            for s in (p.before, p.step):
                if s is not None:
                    steps.setdefault(id(s), s)
        return list(steps.values())

    # the conditions --------------------------------------------------------------------------
    def _shadowed(self, t: Target) -> tuple[list[Problem], str]:
        bad = [e for e in read_entries(t, "/etc/passwd") if e.field(1) != "x"]
        out = [Problem(f"{e.name} has password field {e.field(1)!r} ({e.where()})") for e in bad]
        if out:
            # pwconv moves every password into /etc/shadow at once: one step shared by all
            step = RunCommand(
                tuple(self.change(e.name, "password", "in /etc/passwd", "shadowed") for e in bad),
                ("pwconv",),
            )
            out = [Problem(p.text, step) for p in out]
        return out, "read /etc/passwd (field 2 must be 'x')"

    def _no_empty(self, t: Target) -> tuple[list[Problem], str]:
        out = [
            Problem(
                f"{e.name} has an empty password ({e.where()})",
                RunCommand(
                    (self.change(e.name, "password", "empty", "locked"),),
                    ("passwd", "-l", e.name),
                ),
            )
            for e in read_entries(t, "/etc/shadow")
            if e.field(1) == ""
        ]
        return out, "read /etc/shadow (field 2 must not be empty)"

    def _uid0(self, t: Target) -> tuple[list[Problem], str]:
        out = [
            Problem(f"{e.name} has uid 0 ({e.where()})")
            for e in read_entries(t, "/etc/passwd")
            if e.field(2) == "0" and e.name != "root"
        ]
        return out, "read /etc/passwd (uid 0 only for root)"

    def _gid0_account(self, t: Target) -> tuple[list[Problem], str]:
        out: list[Problem] = []
        for e in read_entries(t, "/etc/passwd"):
            if e.name == "root" and e.field(3) != "0":
                out.append(
                    Problem(
                        f"root has primary gid {e.field(3)} ({e.where()})",
                        RunCommand(
                            (self.change("root", "gid", e.field(3), "0"),),
                            ("usermod", "-g", "0", "root"),
                        ),
                    )
                )
            elif e.field(3) == "0" and e.name not in GID0_EXEMPT:
                out.append(Problem(f"{e.name} has primary gid 0 ({e.where()})"))
        return out, "read /etc/passwd (primary gid 0 only for root, sync, shutdown, halt)"

    def _gid0_group(self, t: Target) -> tuple[list[Problem], str]:
        out = [
            Problem(f"group {e.name} has gid 0 ({e.where()})")
            for e in read_entries(t, "/etc/group")
            if e.field(2) == "0" and e.name != "root"
        ]
        return out, "read /etc/group (gid 0 only for group root)"

    def _root_access(self, t: Target) -> tuple[list[Problem], str]:
        how = "read root's password field in /etc/shadow (a hash, or locked with '!'/'*')"
        roots = [e for e in read_entries(t, "/etc/shadow") if e.name == "root"]
        if not roots:
            return [Problem("root has no /etc/shadow entry")], how
        pw = roots[0].field(1)
        if is_locked(pw) or pw.startswith("$"):
            return [], how
        step = RunCommand(
            (self.change("root", "password", "empty" if not pw else "not a hash", "locked"),),
            ("usermod", "-L", "root"),
        )
        what = "empty" if not pw else "neither a hash nor locked"
        return [Problem(f"root's password field is {what} ({roots[0].where()})", step)], how

    def _groups_exist(self, t: Target) -> tuple[list[Problem], str]:
        gids = {e.field(2) for e in read_entries(t, "/etc/group")}
        out = [
            Problem(f"{e.name}: primary gid {e.field(3)} is not in /etc/group ({e.where()})")
            for e in read_entries(t, "/etc/passwd")
            if e.field(3) not in gids
        ]
        return out, "read /etc/passwd and /etc/group"

    def _duplicates(self, t: Target, path: str, index: int, what: str) -> tuple[list[Problem], str]:
        entries = read_entries(t, path)
        counts = Counter(e.field(index) for e in entries)
        out = [
            Problem(
                f"{what} {value!r} used by "
                + ", ".join(f"{e.name} ({e.where()})" for e in entries if e.field(index) == value)
            )
            for value, n in sorted(counts.items())
            if n > 1
        ]
        return out, f"read {path} (field {index + 1} must be unique)"

    def _shadow_group(self, t: Target) -> tuple[list[Problem], str]:
        how = "read /etc/group, /etc/gshadow and /etc/passwd (group shadow: no member)"
        groups = [e for e in read_entries(t, "/etc/group") if e.name == "shadow"]
        if not groups:
            return [], how
        g = groups[0]
        out: list[Problem] = []
        members = [m for m in g.field(3).split(",") if m]
        gs = [e for e in read_entries(t, "/etc/gshadow") if e.name == "shadow"]
        gs_members = [m for m in gs[0].field(3).split(",") if m] if gs else []
        if members or gs_members:
            out.append(
                Problem(
                    f"group shadow has members {','.join(members or gs_members)} ({g.where()})",
                    RunCommand(
                        (self.change("shadow", "members", ",".join(members or gs_members), None),),
                        ("gpasswd", "-M", "", "shadow"),
                    ),
                )
            )
        out.extend(
            Problem(f"{e.name} has shadow as primary group ({e.where()})")
            for e in read_entries(t, "/etc/passwd")
            if e.field(3) == g.field(2)
        )
        return out, how

    def _last_change(self, t: Target) -> tuple[list[Problem], str]:
        today = self._today()
        epoch = dt.date(1970, 1, 1)
        out = []
        for e in read_entries(t, "/etc/shadow"):
            days = _int(e.field(2))
            if days is not None and epoch + dt.timedelta(days=days) > today:
                when = (epoch + dt.timedelta(days=days)).isoformat()
                out.append(Problem(f"{e.name} last changed {when}, after {today} ({e.where()})"))
        src = "the 'today' param" if self.today is not None else "the clock (UTC)"
        return out, f"read /etc/shadow field 3 against {today.isoformat()} from {src}"

    def _system_accounts(self, t: Target) -> list[Line]:
        low = uid_min(t)
        return [
            e
            for e in read_entries(t, "/etc/passwd")
            if (uid := _int(e.field(2))) is not None
            and (uid < low or uid == NOBODY_UID)
            and e.name not in self.exempt
        ]

    def _nologin(self, t: Target) -> tuple[list[Problem], str]:
        out = [
            Problem(
                f"{e.name} (uid {e.field(2)}) has shell {e.field(6) or '(empty)'}",
                RunCommand(
                    (self.change(e.name, "shell", e.field(6), NOLOGIN),),
                    ("usermod", "-s", NOLOGIN, e.name),
                ),
            )
            for e in self._system_accounts(t)
            if e.field(6) not in NOLOGIN_SHELLS
        ]
        how = (
            f"read /etc/passwd, UID_MIN ({uid_min(t)}) from /etc/login.defs; "
            f"exempt: {', '.join(self.exempt)}"
        )
        return out, how

    def _locked(self, t: Target) -> tuple[list[Problem], str]:
        shells = valid_shells(t)
        shadow = {e.name: e for e in read_entries(t, "/etc/shadow")}
        out: list[Problem] = []
        pwconv: RunCommand | None = None
        for e in read_entries(t, "/etc/passwd"):
            if e.name in self.exempt or e.field(6) in shells:
                continue
            lock = RunCommand(
                (self.change(e.name, "password", "usable", "locked"),), ("usermod", "-L", e.name)
            )
            if e.field(1) != "x":
                # the password lives in /etc/passwd: shadow it first, or a later pwconv
                # would copy the usable password over the lock
                if is_locked(e.field(1)):
                    continue
                if pwconv is None:
                    pwconv = RunCommand(
                        (self.change("/etc/passwd", "passwords", "unshadowed", "shadowed"),),
                        ("pwconv",),
                    )
                text = f"{e.name} (shell {e.field(6) or '(empty)'}) has a usable password "
                out.append(Problem(text + f"in /etc/passwd ({e.where()})", lock, pwconv))
                continue
            s = shadow.get(e.name)
            if s is None:
                out.append(Problem(f"{e.name} has no /etc/shadow entry"))
            elif not is_locked(s.field(1)):
                text = f"{e.name} (shell {e.field(6) or '(empty)'}) is not locked ({s.where()})"
                out.append(Problem(text, lock))
        how = (
            "read /etc/passwd, /etc/shadow, /etc/shells: accounts without a valid login "
            f"shell must have '!' or '*' passwords; exempt: {', '.join(self.exempt)}"
        )
        return out, how

    def _root_path(self, t: Target) -> tuple[list[Problem], str]:
        paths = root_paths(t)
        how = "root's PATH from " + ", ".join(src for src, _ in paths)
        if t.live:
            r = t.run(["env", "-i", "HOME=/root", "sh", "-lc", 'printf "%s" "$PATH"'], check=False)
            if r.ok:
                paths.append(("login shell", r.stdout))
                how += ", a login shell (sh -l)"
        out: list[Problem] = []
        seen: set[str] = set()
        for src, value in paths:
            entries = value.split(":")
            if "" in entries or value.endswith(":"):
                out.append(Problem(f"{src}: PATH {value!r} has an empty entry"))
            for d in entries:
                if d == ".":
                    out.append(Problem(f"{src}: PATH contains '.'"))
                elif d and not d.startswith("/"):
                    out.append(Problem(f"{src}: PATH entry {d!r} is relative"))
                elif d and d not in seen:
                    seen.add(d)
                    out.extend(self._path_dir(t, d))
        return out, how + " (no empty or relative entry; dirs root-owned, not group/other-writable)"

    def _path_dir(self, t: Target, d: str) -> list[Problem]:
        st = t.stat(d)
        if st is None:
            return [Problem(f"PATH entry {d} does not exist")]
        if st.type is not FileType.DIR:
            return [Problem(f"PATH entry {d} is not a directory")]
        out = []
        if st.uid != 0:
            out.append(Problem(f"PATH entry {d} is owned by uid {st.uid}, not root"))
        if st.mode & 0o022:
            new = st.mode & ~0o022
            step = (
                Chmod((self.change(d, "mode", fmt_mode(st.mode), fmt_mode(new)),), d, new)
                if st.uid == 0
                else None
            )
            out.append(Problem(f"PATH entry {d} is mode {fmt_mode(st.mode)}", step))
        return out

    def _fixable_home(self, t: Target, e: Line) -> bool:
        """Only a regular user's home (uid >= UID_MIN) or root's /root is changed: a system
        account with a login shell may have /usr/sbin or / as its home, and chowning that
        to the account would be a disaster; those are reported for a human."""
        uid = int(e.field(2))
        if e.name == "root":
            return e.field(5) == "/root"
        return uid >= uid_min(t) and uid != NOBODY_UID

    def _home_dirs(self, t: Target) -> tuple[list[Problem], str]:
        out: list[Problem] = []
        for e in self._interactive(t):
            mine = self._home_problems(t, e)
            if not self._fixable_home(t, e):
                mine = [p.manual("system account: not changed automatically") for p in mine]
            out.extend(mine)
        how = (
            "interactive users (shell in /etc/shells) from /etc/passwd; lstat of each home: "
            f"a directory owned by the user, mode at most {fmt_mode(self.home_max_mode)}"
        )
        return out, how

    def _home_problems(self, t: Target, e: Line) -> list[Problem]:
        uid, gid, home = int(e.field(2)), _int(e.field(3)) or 0, e.field(5)
        if not home.startswith("/") or home == "/":
            return [Problem(f"{e.name}: home {home!r} is not a directory of its own")]
        st = t.lstat(home)
        if st is None:
            change = self.change(home, "directory", None, fmt_mode(self.home_max_mode))
            step = MakeDir((change,), home, self.home_max_mode, uid, gid)
            return [Problem(f"{e.name}: home {home} is missing", step)]
        if st.type is not FileType.DIR:
            return [Problem(f"{e.name}: home {home} is a {st.type}, not a directory")]
        out: list[Problem] = []
        if st.uid != uid:
            chown = Chown((self.change(home, "owner", str(st.uid), str(uid)),), home, uid, st.gid)
            out.append(Problem(f"{e.name}: home {home} is owned by uid {st.uid}", chown))
        new = st.mode & self.home_max_mode
        if new != st.mode:
            chmod = Chmod((self.change(home, "mode", fmt_mode(st.mode), fmt_mode(new)),), home, new)
            out.append(Problem(f"{e.name}: home {home} is mode {fmt_mode(st.mode)}", chmod))
        return out

    def _dot_files(self, t: Target) -> tuple[list[Problem], str]:
        out: list[Problem] = []
        for e in self._interactive(t):
            uid, gid, home = int(e.field(2)), _int(e.field(3)) or 0, e.field(5)
            st = t.lstat(home) if home.startswith("/") and home != "/" else None
            if st is None or st.type is not FileType.DIR:
                continue  # home-dirs reports it
            mine: list[Problem] = []
            for name in t.listdir(home):
                if not name.startswith("."):
                    continue
                path = posixpath.join(home, name)
                fst = t.lstat(path)
                if fst is None or fst.type is not FileType.FILE:
                    continue
                if name in (".forward", ".rhosts"):
                    mine.append(Problem(f"{path} exists (mail forwarding/rhosts trust: remove it)"))
                    continue
                limit = 0o600 if name in (".netrc", ".bash_history") else 0o644
                new = fst.mode & limit
                if new != fst.mode:
                    change = self.change(path, "mode", fmt_mode(fst.mode), fmt_mode(new))
                    mine.append(
                        Problem(
                            f"{path} is mode {fmt_mode(fst.mode)} (at most {fmt_mode(limit)})",
                            Chmod((change,), path, new),
                        )
                    )
                if (fst.uid, fst.gid) != (uid, gid):
                    change = self.change(path, "owner", f"{fst.uid}:{fst.gid}", f"{uid}:{gid}")
                    mine.append(
                        Problem(
                            f"{path} is owned by {fst.uid}:{fst.gid}, not {e.name}",
                            Chown((change,), path, uid, gid),
                        )
                    )
            if not self._fixable_home(t, e):
                mine = [p.manual("system account: not changed automatically") for p in mine]
            out.extend(mine)
        how = (
            "regular dot files at the top of each interactive user's home: no .forward or "
            ".rhosts; .netrc and .bash_history at most 0600, others 0644; owned by the user "
            "and their primary group"
        )
        return out, how


def root_paths(t: Target) -> list[tuple[str, str]]:
    """root's PATH as the image's files set it: login's ENV_SUPATH (su uses it too), then
    literal ``PATH=`` assignments in root's .profile / .bashrc (``$PATH`` expanded to the
    value so far). Conditionals are not evaluated: every assignment is checked."""
    out: list[tuple[str, str]] = []
    defs = login_defs(t)
    current = ""
    for key in ("ENV_SUPATH", "ENV_PATH"):
        value = defs.get(key)
        if value is not None:
            value = value.removeprefix("PATH=")
            out.append((f"/etc/login.defs {key}", value))
            current = current or value
    for f in ("/root/.profile", "/root/.bashrc"):
        for n, raw in enumerate((read_optional(t, f) or "").splitlines(), 1):
            line = raw.strip().removeprefix("export ").strip()
            if not line.startswith("PATH="):
                continue
            value = line[5:].split(";")[0].strip().strip("\"'")
            value = value.replace("${PATH}", current).replace("$PATH", current)
            out.append((f"{f}:{n}", value))
            current = value
    return out


_CHECKS: dict[Condition, Callable[[AccountDbRule, Target], tuple[list[Problem], str]]] = {
    Condition.SHADOWED_PASSWORDS: AccountDbRule._shadowed,
    Condition.NO_EMPTY_PASSWORDS: AccountDbRule._no_empty,
    Condition.ROOT_ONLY_UID0: AccountDbRule._uid0,
    Condition.ROOT_ONLY_GID0_ACCOUNT: AccountDbRule._gid0_account,
    Condition.ROOT_ONLY_GID0_GROUP: AccountDbRule._gid0_group,
    Condition.ROOT_ACCESS_CONTROLLED: AccountDbRule._root_access,
    Condition.GROUPS_EXIST: AccountDbRule._groups_exist,
    Condition.NO_DUPLICATE_UIDS: lambda r, t: r._duplicates(t, "/etc/passwd", 2, "uid"),
    Condition.NO_DUPLICATE_GIDS: lambda r, t: r._duplicates(t, "/etc/group", 2, "gid"),
    Condition.NO_DUPLICATE_USER_NAMES: lambda r, t: r._duplicates(t, "/etc/passwd", 0, "user name"),
    Condition.NO_DUPLICATE_GROUP_NAMES: lambda r, t: r._duplicates(
        t, "/etc/group", 0, "group name"
    ),
    Condition.SHADOW_GROUP_EMPTY: AccountDbRule._shadow_group,
    Condition.LAST_CHANGE_IN_PAST: AccountDbRule._last_change,
    Condition.SYSTEM_ACCOUNTS_NOLOGIN: AccountDbRule._nologin,
    Condition.SYSTEM_ACCOUNTS_LOCKED: AccountDbRule._locked,
    Condition.ROOT_PATH_INTEGRITY: AccountDbRule._root_path,
    Condition.HOME_DIRS: AccountDbRule._home_dirs,
    Condition.DOT_FILES: AccountDbRule._dot_files,
}

_EXPECTED: dict[Condition, str] = {
    Condition.SHADOWED_PASSWORDS: "every /etc/passwd entry has 'x' as password (shadowed)",
    Condition.NO_EMPTY_PASSWORDS: "no empty password field in /etc/shadow",
    Condition.ROOT_ONLY_UID0: "root is the only account with uid 0",
    Condition.ROOT_ONLY_GID0_ACCOUNT: "root (and sync, shutdown, halt, operator) alone have "
    "primary gid 0; root's is 0",
    Condition.ROOT_ONLY_GID0_GROUP: "group root is the only group with gid 0",
    Condition.ROOT_ACCESS_CONTROLLED: "root's password is set (a hash) or locked",
    Condition.GROUPS_EXIST: "every primary gid in /etc/passwd exists in /etc/group",
    Condition.NO_DUPLICATE_UIDS: "no uid shared by two /etc/passwd entries",
    Condition.NO_DUPLICATE_GIDS: "no gid shared by two /etc/group entries",
    Condition.NO_DUPLICATE_USER_NAMES: "no user name listed twice in /etc/passwd",
    Condition.NO_DUPLICATE_GROUP_NAMES: "no group name listed twice in /etc/group",
    Condition.SHADOW_GROUP_EMPTY: "group shadow has no members and is no one's primary group",
    Condition.LAST_CHANGE_IN_PAST: "every last password change date is not in the future",
    Condition.SYSTEM_ACCOUNTS_NOLOGIN: "system accounts (uid < UID_MIN, nobody) have a "
    "nologin or false shell",
    Condition.SYSTEM_ACCOUNTS_LOCKED: "accounts without a valid login shell are locked",
    Condition.ROOT_PATH_INTEGRITY: "root's PATH: no empty, '.' or relative entry; every "
    "entry a root-owned directory not writable by group or others",
    Condition.HOME_DIRS: "interactive users' homes exist, are owned by them, mode at most the "
    "limit",
    Condition.DOT_FILES: "interactive users' dot files: no .forward/.rhosts, not group/world "
    "writable, owned by the user",
}
