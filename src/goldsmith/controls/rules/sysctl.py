"""sysctl: a kernel parameter set in a managed sysctl.d file, checked in systemd's order."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from goldsmith.controls.base import Rule
from goldsmith.controls.fsutil import dropin_files, file_steps, read_optional
from goldsmith.controls.steps import Step
from goldsmith.model.records import Change, Finding, Status
from goldsmith.targets.base import Target

#: systemd-sysctl's search path, highest precedence first
SYSCTL_DIRS = (
    "/etc/sysctl.d",
    "/run/sysctl.d",
    "/usr/local/lib/sysctl.d",
    "/usr/lib/sysctl.d",
    "/lib/sysctl.d",
)
SYSCTL_CONF = "/etc/sysctl.conf"
DEFAULT_FILE = "/etc/sysctl.d/99-nanoclaw-hardening.conf"
HEADER = "# Managed by goldsmith: one line per key, sorted. Local edits are overwritten.\n"
_KEY_RE = re.compile(r"^[A-Za-z0-9_./*-]+$")


def normalise_key(key: str) -> str:
    # sysctl.d allows "/" as separator; "." is the canonical form
    return key.strip().replace("/", ".")


def normalise_value(value: str) -> str:
    return " ".join(value.split())


@dataclass(frozen=True)
class Assignment:
    key: str
    value: str
    file: str
    line: int


def parse_sysctl(text: str, file: str) -> list[Assignment]:
    out: list[Assignment] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip().lstrip("-").strip()  # "-key": ignore errors when setting
        out.append(Assignment(normalise_key(key), normalise_value(value), file, n))
    return out


def sysctl_files(t: Target) -> list[str]:
    files = dropin_files(t, SYSCTL_DIRS, ".conf")
    if t.stat(SYSCTL_CONF) is not None:
        files.append(SYSCTL_CONF)
    return files


def effective(t: Target, key: str) -> tuple[Assignment | None, list[str]]:
    """The assignment that wins for ``key`` and the files read, in order.

    Later assignments override earlier ones. An explicit key beats a glob pattern
    (``net.ipv4.conf.*.rp_filter``) whatever the order, as in systemd-sysctl.
    """
    files, assignments = t.memo("sysctl.assignments", lambda: _assignments(t))
    exact: Assignment | None = None
    pattern: Assignment | None = None
    for a in assignments:
        if a.key == key:
            exact = a
        elif any(c in a.key for c in "*?[") and fnmatch.fnmatchcase(key, a.key):
            pattern = a
    return (exact or pattern), list(files)


def _assignments(t: Target) -> tuple[tuple[str, ...], tuple[Assignment, ...]]:
    """The sysctl files in systemd-sysctl order and every assignment in them, in order (read
    once per scan: memoised)."""
    files = sysctl_files(t)
    out: list[Assignment] = []
    for f in files:
        out += parse_sysctl(read_optional(t, f) or "", f)
    return tuple(files), tuple(out)


@dataclass(frozen=True)
class SysctlRule(Rule):
    type_name = "sysctl"

    key: str
    value: str
    file: str = DEFAULT_FILE

    def __post_init__(self) -> None:
        if not _KEY_RE.match(self.key) or any(c in self.key for c in "*?["):
            raise ValueError(f"not a sysctl key: {self.key!r}")
        if not self.file.startswith("/etc/sysctl.d/") or not self.file.endswith(".conf"):
            raise ValueError("file must be /etc/sysctl.d/<name>.conf")

    @property
    def _key(self) -> str:
        return normalise_key(self.key)

    def check(self, t: Target) -> Finding:
        want = normalise_value(self.value)
        win, files = effective(t, self._key)
        how = "read in systemd-sysctl order: " + ", ".join(files or ["(no sysctl files)"])
        observed = (
            f"{win.value} (from {win.file}:{win.line})" if win else "not set in any sysctl file"
        )
        status = Status.PASS if win is not None and win.value == want else Status.FAIL
        if t.live:
            proc = "/proc/sys/" + self._key.replace(".", "/")
            text = read_optional(t, proc)
            live = normalise_value(text) if text is not None else None
            observed += f"; running kernel: {live if live is not None else 'key missing'}"
            how += f"; read {proc}"
            if live != want:
                status = Status.FAIL
        else:
            how += "; running value not checked (offline rootfs, proven at boot test)"
        return self.finding(status, f"{self._key} = {want}", observed, how)

    def render(self, t: Target) -> tuple[str, str | None]:
        """The managed file with this key set, and the value it had there before."""
        mine = {a.key: a.value for a in parse_sysctl(read_optional(t, self.file) or "", "")}
        before = mine.get(self._key)
        mine[self._key] = normalise_value(self.value)
        body = "".join(f"{k} = {v}\n" for k, v in sorted(mine.items()))
        return HEADER + body, before

    def steps(self, t: Target) -> list[Step]:
        content, before = self.render(t)
        want = normalise_value(self.value)
        finer = (
            (Change(self.control, self.file, self._key, before, want),) if before != want else None
        )
        return file_steps(self.control, t, self.file, content, content_changes=finer)
