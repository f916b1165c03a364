"""apparmor-profiles: every AppArmor profile in /etc/apparmor.d is enforcing or disabled.

A profile is a regular file directly in /etc/apparmor.d (after links, as apparmor_parser
reads them); directories (abi, abstractions, disable, force-complain, local, tunables, ...)
and the names the parser skips (dot files, README, package-manager and editor leftovers such
as ``*.dpkg-new``, ``*.rpmsave``, ``*~``) are not profiles. A profile is

* disabled when ``/etc/apparmor.d/disable/<name>`` exists (link or file): apparmor.service
  and apparmor_parser skip it, so it is never loaded;
* enforcing when no ``flags=(...)`` list on a non-comment line of the file names a mode other
  than enforce (complain, unconfined, kill, prompt, default_allow) and there is no
  ``/etc/apparmor.d/force-complain/<name>`` (which the parser loads in complain mode).

The rule passes when every profile is one or the other. ``enforce`` names profiles to put in
enforce mode: apply removes the mode words from their flags lists (an emptied ``flags=()``
goes entirely; every other byte of the file stays) and their force-complain and disable
entries. With ``disable_rest`` (the default) every other profile that is not enforcing gets
``disable/<name> -> ../<name>``, as ``ln -s ../<name> /etc/apparmor.d/disable/`` does.

Only the files are read (this works on an offline rootfs); what the running kernel has loaded
(/sys/kernel/security/apparmor/profiles) follows them at the next boot or
``systemctl reload apparmor``. A flags list spread over several lines, and the bare
``(complain)`` form without ``flags=``, are not recognised.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from goldsmith.controls.base import Rule
from goldsmith.controls.fsutil import read_optional
from goldsmith.controls.steps import Remove, Step, Symlink, WriteFile
from goldsmith.errors import TargetError
from goldsmith.model.records import FileType, Finding, Status
from goldsmith.targets.base import Target

PROFILE_DIR = "/etc/apparmor.d"
DISABLE_DIR = f"{PROFILE_DIR}/disable"
FORCE_COMPLAIN_DIR = f"{PROFILE_DIR}/force-complain"

#: profile mode flags other than enforce (apparmor.d(5), AppArmor 4)
MODE_FLAGS = frozenset({"complain", "unconfined", "kill", "prompt", "default_allow"})
#: directories the apparmor package keeps in /etc/apparmor.d (never profiles)
SPECIAL_DIRS = frozenset(
    {"abi", "abstractions", "disable", "force-complain", "local", "tunables", "cache"}
)
#: names apparmor_parser (libapparmor's _aa_is_blacklisted) skips in a profile directory
_SKIPPED_RE = re.compile(
    r"^\.|^README$|~$|\.(dpkg-[A-Za-z]+|rpm[A-Za-z]+|pacsave|pacnew|orig|rej)$"
)
#: a flags list on one line; ``pre`` is the blank before it (dropped with an empty list)
_FLAGS_RE = re.compile(r"(?P<pre>[ \t]*)\bflags\s*=\s*\((?P<body>[^()]*)\)")
#: where a comment starts: ``#`` at the start of the line or after a blank
_COMMENT_RE = re.compile(r"(?:^|(?<=\s))#")
_TOKEN_RE = re.compile(r"[^\s,]+")
#: how many offending profiles the evidence names
SHOWN = 12


def _code_part(line: str) -> int:
    """Where the comment of ``line`` starts (``len(line)`` when it has none)."""
    m = _COMMENT_RE.search(line)
    return m.start() if m else len(line)


def flag_lists(text: str) -> list[tuple[int, str]]:
    """(line number, body) of every ``flags=(...)`` list outside comments."""
    out: list[tuple[int, str]] = []
    for n, line in enumerate(text.splitlines(), 1):
        out += [(n, m.group("body")) for m in _FLAGS_RE.finditer(line[: _code_part(line)])]
    return out


def modes_of(text: str) -> tuple[str, ...]:
    """The non-enforce mode words the file's flags lists name, sorted, each once."""
    return tuple(
        sorted(
            {tok for _, body in flag_lists(text) for tok in _TOKEN_RE.findall(body)} & MODE_FLAGS
        )
    )


def _strip_body(body: str) -> str:
    """``body`` without its mode words; each word kept keeps the separator written after it
    (the last one kept, whatever followed the list's last word)."""
    tokens = list(_TOKEN_RE.finditer(body))
    kept = [i for i, m in enumerate(tokens) if m.group() not in MODE_FLAGS]
    if not kept:
        return ""
    out = body[: tokens[0].start()]
    for i in kept[:-1]:
        out += body[tokens[i].start() : tokens[i + 1].start()]
    return out + tokens[kept[-1]].group() + body[tokens[-1].end() :]


def enforce_text(text: str) -> tuple[str, list[tuple[int, str, str | None]]]:
    """The file with the mode words gone from its flags lists (an emptied list dropped with
    the blank before it), and (line number, old line, new line or None if unchanged) per
    changed line. Every other byte stays."""
    lines = text.splitlines(keepends=True)
    edits: list[tuple[int, str, str | None]] = []
    for i, line in enumerate(lines):
        cut = _code_part(line.rstrip("\r\n"))
        code, rest = line[:cut], line[cut:]

        def repl(m: re.Match[str]) -> str:
            body = m.group("body")
            if not set(_TOKEN_RE.findall(body)) & MODE_FLAGS:
                return m.group()
            new = _strip_body(body)
            if not new.strip(" \t,"):
                return ""
            return m.group()[: m.start("body") - m.start()] + new + ")"

        new_code = _FLAGS_RE.sub(repl, code)
        if new_code != code:
            lines[i] = new_code + rest
            edits.append((i + 1, line.rstrip("\r\n"), lines[i].rstrip("\r\n")))
    return "".join(lines), edits


@dataclass(frozen=True)
class ProfileState:
    name: str
    modes: tuple[str, ...]
    disabled: bool
    force_complain: bool

    @property
    def enforcing(self) -> bool:
        return not self.modes and not self.force_complain

    @property
    def mode(self) -> str:
        words = list(self.modes) + (["force-complain"] if self.force_complain else [])
        return ", ".join(words) or "enforce"


def _names_in(t: Target, directory: str) -> frozenset[str]:
    """The entries of ``directory`` (links included, dangling or not); none if it is absent."""
    st = t.stat(directory)
    if st is None or st.type is not FileType.DIR:
        return frozenset()
    return frozenset(t.listdir(directory))


def _is_profile_name(name: str) -> bool:
    return name not in SPECIAL_DIRS and not _SKIPPED_RE.search(name)


@dataclass(frozen=True)
class AppArmorProfilesRule(Rule):
    type_name = "apparmor-profiles"

    #: profiles apply puts in enforce mode (file names in /etc/apparmor.d)
    enforce: tuple[str, ...] = ()
    #: apply disables (disable/<name> -> ../<name>) every other profile not enforcing
    disable_rest: bool = True

    def __post_init__(self) -> None:
        for name in self.enforce:
            if not name or "/" in name or "\0" in name or name in (".", ".."):
                raise ValueError(f"not a profile file name: {name!r} (a name in {PROFILE_DIR})")
            if not _is_profile_name(name):
                raise ValueError(
                    f"{name!r} is not a profile name: apparmor_parser skips it or it is one "
                    f"of the directories of {PROFILE_DIR}"
                )
        if len(set(self.enforce)) != len(self.enforce):
            raise ValueError("enforce names a profile twice")

    # reading -------------------------------------------------------------------------------
    def _profiles(self, t: Target) -> dict[str, ProfileState] | None:
        """Name -> state of every profile, sorted by name; None without /etc/apparmor.d."""
        st = t.stat(PROFILE_DIR)
        if st is None or st.type is not FileType.DIR:
            return None
        disabled, forced = _names_in(t, DISABLE_DIR), _names_in(t, FORCE_COMPLAIN_DIR)
        out: dict[str, ProfileState] = {}
        for name in t.listdir(PROFILE_DIR):
            if not _is_profile_name(name):
                continue
            path = f"{PROFILE_DIR}/{name}"
            if name in disabled and name not in self.enforce:
                # never loaded, whatever its flags say: only whether it is a profile matters
                st = t.stat(path)
                if st is not None and st.type is FileType.FILE:
                    out[name] = ProfileState(name, (), True, name in forced)
                continue
            text = read_optional(t, path)
            if text is None:  # a directory, a dangling link, a device
                continue
            out[name] = ProfileState(name, modes_of(text), name in disabled, name in forced)
        return out

    def _offenders(self, profiles: dict[str, ProfileState]) -> list[str]:
        out: list[str] = []
        for p in profiles.values():
            if p.name in self.enforce:
                if p.disabled:
                    out.append(f"{p.name} (disabled; enforce names it)")
                elif not p.enforcing:
                    out.append(f"{p.name} ({p.mode}; enforce names it)")
            elif not p.disabled and not p.enforcing:
                out.append(f"{p.name} ({p.mode})")
        return out

    def _expected(self) -> str:
        out = (
            f"every profile in {PROFILE_DIR} is enforcing (no "
            + "/".join(sorted(MODE_FLAGS))
            + " flag, no force-complain entry) or disabled (disable/<name>)"
        )
        if self.enforce:
            out += "; enforcing and not disabled: " + ", ".join(self.enforce)
        return out

    def check(self, t: Target) -> Finding:
        profiles = self._profiles(t)
        how = (
            f"listed {PROFILE_DIR} (regular files; its directories and the names "
            "apparmor_parser skips left out) and looked each name up as disable/<name> and "
            "force-complain/<name> in those directories' listings; read each profile not "
            "disabled (and each named in enforce) for flags=(...) lists outside comments"
        )
        if profiles is None:
            if not self.enforce:
                return self.finding(
                    Status.NOT_APPLICABLE, self._expected(), f"no {PROFILE_DIR}", how
                )
            missing = ", ".join(self.enforce)
            observed = f"no {PROFILE_DIR}; enforce names {missing}"
            return self.finding(Status.FAIL, self._expected(), observed, how)
        problems: list[str] = []
        missing_names = [n for n in self.enforce if n not in profiles]
        if missing_names:
            problems.append(
                f"enforce names {', '.join(missing_names)}: no such profile in {PROFILE_DIR}"
            )
        offenders = self._offenders(profiles)
        if offenders:
            shown = ", ".join(offenders[:SHOWN])
            more = len(offenders) - SHOWN
            text = f"{len(offenders)} of {len(profiles)} profiles neither enforcing nor disabled: "
            text += shown + (f" and {more} more" if more > 0 else "")
            if not self.disable_rest:
                text += " [disable_rest is off: the others need a decision]"
            problems.append(text)
        if problems:
            return self.finding(Status.FAIL, self._expected(), "; ".join(problems), how)
        disabled = sum(1 for p in profiles.values() if p.disabled and p.name not in self.enforce)
        observed = (
            f"{len(profiles)} profiles: {len(profiles) - disabled} enforcing, {disabled} disabled"
        )
        return self.finding(Status.PASS, self._expected(), observed, how)

    # changing ------------------------------------------------------------------------------
    def steps(self, t: Target) -> list[Step]:
        profiles = self._profiles(t)
        missing = [n for n in self.enforce if profiles is None or n not in profiles]
        if missing:
            raise TargetError(
                f"enforce names {', '.join(missing)}, which "
                f"{t.description} does not have as a profile in {PROFILE_DIR}",
                hint="drop the name from the control's enforce param, or install the package "
                "that ships the profile first",
            )
        if profiles is None:
            return []
        steps: list[Step] = []
        for name in self.enforce:
            steps += self._enforce_steps(t, profiles[name])
        if self.disable_rest:
            for p in profiles.values():
                if p.name in self.enforce or p.disabled or p.enforcing:
                    continue
                link = f"{DISABLE_DIR}/{p.name}"
                change = self.change(link, "link", None, f"../{p.name}")
                steps.append(Symlink((change,), f"../{p.name}", link))
        return steps

    def _enforce_steps(self, t: Target, p: ProfileState) -> list[Step]:
        steps: list[Step] = []
        path = f"{PROFILE_DIR}/{p.name}"
        if p.modes:
            st = t.lstat(path)
            if st is None or st.type is not FileType.FILE:
                raise TargetError(
                    f"{path} is not a regular file; refusing to edit through it",
                    hint="put the profile itself in /etc/apparmor.d, or enforce its target",
                )
            new, edits = enforce_text(t.read_text(path))
            changes = tuple(self.change(path, f"line {n}", old, upd) for n, old, upd in edits)
            steps.append(WriteFile(changes, path, new, st.mode, st.uid, st.gid))
        for d in (FORCE_COMPLAIN_DIR, DISABLE_DIR):
            entry = f"{d}/{p.name}"
            st = t.lstat(entry)
            if st is None:
                continue
            before = t.readlink(entry) if st.type is FileType.SYMLINK else str(st.type)
            steps.append(Remove((self.change(entry, "link", before, None),), entry))
        return steps
