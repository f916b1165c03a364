"""banner: /etc/issue, /etc/issue.net and /etc/motd with a fixed text, mode 0644.

The text may not carry getty escapes that reveal the system (\\m \\r \\s \\v) nor the OS
name from /etc/os-release (checked on the target, since that is what an attacker would read).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from goldsmith.controls.base import Rule
from goldsmith.controls.fsutil import (
    Mode,
    describe_diff,
    diff_file,
    file_steps,
    read_optional,
)
from goldsmith.controls.steps import Step
from goldsmith.controls.templating import render
from goldsmith.model.records import Finding, Status
from goldsmith.targets.base import Target

DEFAULT_TEXT = "Authorised use only. All activity on this system is logged and monitored.\n"
_ESCAPES = re.compile(r"\\[mrsv]")


def os_id(t: Target) -> str | None:
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        for line in (read_optional(t, path) or "").splitlines():
            if line.startswith("ID="):
                return line[3:].strip().strip("\"'") or None
    return None


def disclosures(text: str, osid: str | None) -> list[str]:
    found = sorted(set(_ESCAPES.findall(text)))
    if osid and osid.lower() in text.lower():
        found.append(f"OS name {osid!r}")
    return found


@dataclass(frozen=True)
class BannerRule(Rule):
    type_name = "banner"

    paths: tuple[str, ...] = ("/etc/issue", "/etc/issue.net", "/etc/motd")
    text: str = DEFAULT_TEXT
    mode: Mode = 0o644

    def __post_init__(self) -> None:
        if _ESCAPES.search(self.text):
            raise ValueError("banner text may not contain \\m, \\r, \\s or \\v")

    def _content(self) -> str:
        return render("banner.j2", {"text": self.text})

    def check(self, t: Target) -> Finding:
        problems = []
        want = self._content()
        osid = os_id(t)
        if found := disclosures(want, osid):
            problems.append("configured text discloses " + ", ".join(found))
        for p in self.paths:
            d, old = diff_file(t, p, want, self.mode, 0, 0)
            if not d.ok:
                problems.append(f"{p}: {describe_diff(d, t, self.mode, 0, 0)}")
            if old is not None and (found := disclosures(old, osid)):
                problems.append(f"{p} discloses " + ", ".join(found))
        return self.finding(
            Status.FAIL if problems else Status.PASS,
            f"{', '.join(self.paths)}: the configured banner, mode 0644 root:root, "
            "no \\m \\r \\s \\v nor OS name",
            "; ".join(problems) or "as expected",
            "read and stat each file; OS name from /etc/os-release",
        )

    def steps(self, t: Target) -> list[Step]:
        want = self._content()
        return [s for p in self.paths for s in file_steps(self.control, t, p, want, mode=self.mode)]
