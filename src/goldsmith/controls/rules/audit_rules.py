"""audit-rules: a managed ``/etc/audit/rules.d/<name>.rules`` file.

The file check compares normalised rule lines (comments and spacing ignored, ``-k x`` equal
to ``-F key=x``, syscall lists merged). The loaded rules (``auditctl -l``) are compared on a
live target; on an offline rootfs that part is not applicable and is proven at boot test.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from goldsmith.controls.base import Rule
from goldsmith.controls.fsutil import Mode, diff_file, file_steps, fmt_mode, read_optional
from goldsmith.controls.steps import Step
from goldsmith.controls.templating import render
from goldsmith.model.records import Finding, Status
from goldsmith.targets.base import Target

RULES_DIR = "/etc/audit/rules.d"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
#: lines that configure auditd rather than add a rule; auditctl -l does not list them
_CONTROL_FLAGS = frozenset({"-D", "-b", "-e", "-f", "-r", "--backlog_wait_time", "--reset-lost"})


def normalise_rule(line: str) -> str | None:
    """A canonical form of one rule line, or None for blanks and comments."""
    words = line.split("#", 1)[0].split()
    if not words:
        return None
    if words[0] in _CONTROL_FLAGS or words[0] not in ("-a", "-A", "-w", "-W"):
        return " ".join(words)
    head = words[:2]
    syscalls: set[str] = set()
    fields: list[str] = []
    key: list[str] = []
    rest = words[2:]
    i = 0
    while i < len(rest):
        flag = rest[i]
        arg = rest[i + 1] if i + 1 < len(rest) else ""
        i += 2
        if flag == "-S":
            syscalls.update(arg.split(","))
        elif flag == "-k":
            key.append(arg)
        elif flag == "-F" and arg.startswith("key="):
            key.append(arg[4:])
        else:
            fields.append(f"{flag} {arg}")
    out = head + sorted(fields)
    if syscalls:
        out += ["-S", ",".join(sorted(syscalls))]
    out += [f"key={k}" for k in key]
    return " ".join(out)


#: auditctl options that configure the kernel, not rules (not listed by ``auditctl -l``)
_CONTROL_OPTS = frozenset(
    {
        "-D",
        "-b",
        "-f",
        "-e",
        "-r",
        "-i",
        "-c",
        "--backlog_wait_time",
        "--loginuid-immutable",
        "--reset-lost",
        "--signal",
    }
)
_UNSET = {"4294967295": "-1", "unset": "-1"}
_FIELD_RE = re.compile(r"^([a-z0-9_]+)(!=|>=|<=|=|>|<|&=|&)(.*)$")


def canonical_audit_rule(line: str) -> str | None:
    """One rule line in a comparable form, or None for a control line (-D, -b, -e ...).

    ``auditctl -l`` rewrites rules: ``-k key`` on a syscall rule becomes ``-F key=key``,
    several ``-S`` merge into one comma list, ``auid!=unset``/``4294967295`` becomes ``-1``,
    ``-F arch=b64`` sorts first, ``-a exit,always`` is ``always,exit``. Both sides are put in
    one form: list/action sorted, fields and syscalls as sorted sets, key kept.
    """
    try:
        toks = shlex.split(line, comments=True)
    except ValueError:
        toks = line.split()
    if not toks or toks[0] in _CONTROL_OPTS:
        return None
    if toks[0] in ("-w", "-W"):
        path, perms, key = "", "", ""
        i = 1
        path = toks[1] if len(toks) > 1 else ""
        # the kernel keeps a watched directory without its trailing slash
        # (``-w /etc/pam.d/`` is listed as ``-w /etc/pam.d``)
        if len(path) > 1:
            path = path.rstrip("/") or "/"
        i = 2
        while i < len(toks):
            if toks[i] == "-p" and i + 1 < len(toks):
                perms = "".join(sorted(toks[i + 1]))
                i += 2
            elif toks[i] == "-k" and i + 1 < len(toks):
                key = toks[i + 1]
                i += 2
            elif toks[i].startswith("-F") and i + 1 < len(toks) and toks[i + 1].startswith("key="):
                key = toks[i + 1][4:]
                i += 2
            else:
                i += 1
        return f"{toks[0]} {path} -p {perms or 'rwxa'} -k {key}"
    if toks[0] in ("-a", "-A"):
        action = ",".join(sorted(toks[1].split(","))) if len(toks) > 1 else ""
        syscalls: set[str] = set()
        fields: set[str] = set()
        keys: list[str] = []
        i = 2
        while i < len(toks):
            t = toks[i]
            nxt = toks[i + 1] if i + 1 < len(toks) else ""
            if t == "-S":
                syscalls.update(s for s in nxt.split(",") if s)
                i += 2
            elif t == "-F":
                m = _FIELD_RE.match(nxt)
                if m and m.group(1) == "key":
                    keys.append(m.group(3))
                elif m:
                    value = (
                        _UNSET.get(m.group(3), m.group(3)) if m.group(1) == "auid" else m.group(3)
                    )
                    fields.add(f"{m.group(1)}{m.group(2)}{value}")
                else:
                    fields.add(nxt)
                i += 2
            elif t == "-k":
                keys.append(nxt)
                i += 2
            elif t == "-C":
                # a comparison of two fields: auditctl -l may list `euid!=uid` as `uid!=euid`
                m = _FIELD_RE.match(nxt)
                if m and m.group(2) in ("=", "!="):
                    left, right = sorted((m.group(1), m.group(3)))
                    fields.add(f"C:{left}{m.group(2)}{right}")
                else:
                    fields.add("C:" + nxt)
                i += 2
            else:
                fields.add(t)
                i += 1
        sc = ",".join(sorted(syscalls)) if syscalls else "all"
        return f"-a {action} -S {sc} -F {' -F '.join(sorted(fields))} -k {','.join(keys)}"
    return " ".join(toks)


def canonical_audit_rules(lines: Sequence[str]) -> list[str]:
    out = []
    for line in lines:
        c = canonical_audit_rule(line)
        if c is not None:
            out.append(c)
    return out


def normalised(text: str) -> list[str]:
    return [n for n in (normalise_rule(x) for x in text.splitlines()) if n is not None]


@dataclass(frozen=True)
class AuditRulesRule(Rule):
    type_name = "audit-rules"

    name: str
    rules: tuple[str, ...]
    mode: Mode = 0o640

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"not a file name: {self.name!r}")
        if any("\n" in r for r in self.rules):
            raise ValueError("one rule per list item")

    @property
    def path(self) -> str:
        name = self.name if self.name.endswith(".rules") else self.name + ".rules"
        return f"{RULES_DIR}/{name}"

    def _content(self) -> str:
        return render("audit.rules.j2", {"control": self.control, "rules": self.rules})

    def _want(self) -> list[str]:
        return normalised("\n".join(self.rules))

    def check(self, t: Target) -> Finding:
        text = read_optional(t, self.path)
        st = t.stat(self.path)
        problems: list[str] = []
        if text is None:
            problems.append(f"{self.path} missing")
        else:
            have = normalised(text)
            want = self._want()
            missing = [r for r in want if r not in have]
            extra = [r for r in have if r not in want]
            if missing:
                problems.append("missing: " + "; ".join(missing))
            if extra:
                problems.append("unexpected: " + "; ".join(extra))
            if not missing and not extra and have != want:
                problems.append("rules in a different order")
            if st is not None and (st.mode & ~self.mode or (st.uid, st.gid) != (0, 0)):
                problems.append(f"mode {fmt_mode(st.mode)} owner {st.uid}:{st.gid}")
        how = f"read {self.path}"
        if t.live:
            r = t.run(["auditctl", "-l"], check=False)
            # auditctl -l rewrites rules (field order, -k as -F key=, unset as -1, -S all):
            # compare canonical forms
            loaded = set(canonical_audit_rules(r.stdout.splitlines()))
            not_loaded = [
                line
                for line in self.rules
                if (c := canonical_audit_rule(line)) is not None
                and line.split()[0] in ("-a", "-A", "-w", "-W")
                and c not in loaded
            ]
            how += "; auditctl -l"
            if not r.ok:
                problems.append(f"auditctl -l failed: {r.stderr.strip()}")
            elif not_loaded:
                problems.append("not loaded: " + "; ".join(not_loaded))
        else:
            how += "; loaded rules not applicable on an offline rootfs (proven at boot test)"
        return self.finding(
            Status.FAIL if problems else Status.PASS,
            f"{len(self.rules)} rule line(s) in {self.path}, mode at most {fmt_mode(self.mode)}",
            "; ".join(problems) or "file rules match",
            how,
        )

    def steps(self, t: Target) -> list[Step]:
        text = read_optional(t, self.path)
        if text is not None and normalised(text) == self._want():
            d, _ = diff_file(t, self.path, None, self.mode, 0, 0)
            if d.observed_mode is not None and not d.observed_mode & ~self.mode and d.owner_ok:
                return []
            return file_steps(self.control, t, self.path, text, mode=self.mode)
        return file_steps(self.control, t, self.path, self._content(), mode=self.mode)
