"""mount-options: a mountpoint in /etc/fstab carries the given options.

Apply adds missing options to the existing line, keeping every other line, comment and the
column spacing. A mountpoint that is not in fstab needs a partition, which no file edit can
make: that is a FAIL with nothing to apply (the image layout must provide it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from goldsmith.controls.base import Rule
from goldsmith.controls.fsutil import read_optional
from goldsmith.controls.steps import Step, WriteFile
from goldsmith.model.records import Finding, Status
from goldsmith.targets.base import Target

FSTAB = "/etc/fstab"
_FIELDS_RE = re.compile(r"^(\s*)(\S+)(\s+)(\S+)(\s+)(\S+)(\s+)(\S+)(.*)$")


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


@dataclass(frozen=True)
class FstabEntry:
    index: int  # line index
    mountpoint: str
    options: tuple[str, ...]


def fstab_entries(text: str) -> list[FstabEntry]:
    out = []
    for i, line in enumerate(text.split("\n")):
        m = _FIELDS_RE.match(line)
        if m is None or m.group(2).startswith("#"):
            continue
        mp = _unescape(m.group(4))
        out.append(FstabEntry(i, mp.rstrip("/") or "/", tuple(m.group(8).split(","))))
    return out


def set_options(text: str, index: int, options: tuple[str, ...]) -> str:
    lines = text.split("\n")
    m = _FIELDS_RE.match(lines[index])
    assert m is not None
    g = list(m.groups())
    g[7] = ",".join(options)
    lines[index] = "".join(g)
    return "\n".join(lines)


@dataclass(frozen=True)
class MountOptionsRule(Rule):
    type_name = "mount-options"

    mountpoint: str
    options: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.mountpoint.startswith("/") or not self.options:
            raise ValueError("need an absolute mountpoint and at least one option")

    @property
    def _mp(self) -> str:
        return self.mountpoint.rstrip("/") or "/"

    def _entry(self, text: str) -> FstabEntry | None:
        found = [e for e in fstab_entries(text) if e.mountpoint == self._mp]
        return found[-1] if found else None  # a later line mounts over an earlier one

    def check(self, t: Target) -> Finding:
        text = read_optional(t, FSTAB) or ""
        e = self._entry(text)
        expected = f"{self._mp} in {FSTAB} with {','.join(self.options)}"
        how = f"read {FSTAB} (last line for the mountpoint counts)"
        if e is None:
            return self.finding(
                Status.FAIL,
                expected,
                f"{self._mp} not in {FSTAB}: it needs its own partition; goldsmith cannot "
                "apply this (check only), the image layout must provide the partition",
                how,
            )
        missing = [o for o in self.options if o not in e.options]
        observed = f"line {e.index + 1}: {','.join(e.options)}"
        if missing:
            observed += f" (missing {','.join(missing)})"
        return self.finding(Status.FAIL if missing else Status.PASS, expected, observed, how)

    def steps(self, t: Target) -> list[Step]:
        text = read_optional(t, FSTAB)
        if text is None:
            return []
        e = self._entry(text)
        if e is None:
            return []  # needs a partition: check-only, see check()
        missing = tuple(o for o in self.options if o not in e.options)
        if not missing:
            return []
        new = e.options + missing
        st = t.stat(FSTAB)
        assert st is not None
        return [
            WriteFile(
                (
                    self.change(
                        f"{FSTAB}:{self._mp}", "options", ",".join(e.options), ",".join(new)
                    ),
                ),
                FSTAB,
                set_options(text, e.index, new),
                st.mode,
                st.uid,
                st.gid,
            )
        ]
