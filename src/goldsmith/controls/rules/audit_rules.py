"""audit-rules: a managed ``/etc/audit/rules.d/<name>.rules`` file.

The file check compares normalised rule lines (comments and spacing ignored, ``-k x`` equal
to ``-F key=x``, syscall lists merged). The loaded rules (``auditctl -l``) are compared on a
live target; on an offline rootfs that part is not applicable and is proven at boot test.
"""

from __future__ import annotations

import re
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
            loaded = normalised(r.stdout)
            not_loaded = [
                w
                for w in self._want()
                if w.split()[0] in ("-a", "-A", "-w", "-W") and w not in loaded
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
