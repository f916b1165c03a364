"""systemd-dropin: ``/etc/systemd/system/<unit>.d/<name>.conf`` with given section settings."""

from __future__ import annotations

import re
from dataclasses import dataclass

from goldsmith.controls.base import Rule
from goldsmith.controls.fsutil import describe_diff, diff_file, file_steps
from goldsmith.controls.steps import Step
from goldsmith.controls.templating import render
from goldsmith.model.records import Finding, Status
from goldsmith.targets.base import Target

_UNIT_RE = re.compile(r"^[A-Za-z0-9:_.\\@-]+\.[a-z]+$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")

#: a value may be one string or a list (one ``Key=`` line each, e.g. ExecStart= resets)
Value = str | list[str]


@dataclass(frozen=True)
class SystemdDropinRule(Rule):
    type_name = "systemd-dropin"

    unit: str
    name: str
    settings: dict[str, dict[str, Value]]
    #: e.g. ["systemd-analyze", "verify", "%s"]; off by default (needs the unit in the target)
    validate: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not _UNIT_RE.match(self.unit) or not _NAME_RE.match(self.name):
            raise ValueError("bad unit or drop-in name")
        for section, items in self.settings.items():
            for key, value in items.items():
                for v in [value] if isinstance(value, str) else value:
                    if "\n" in v or "\n" in key or "\n" in section:
                        raise ValueError(f"[{section}] {key}: values must be single lines")

    @property
    def path(self) -> str:
        name = self.name if self.name.endswith(".conf") else self.name + ".conf"
        return f"/etc/systemd/system/{self.unit}.d/{name}"

    def _content(self) -> str:
        settings = {
            section: [
                (k, v) for k, val in items.items() for v in ([val] if isinstance(val, str) else val)
            ]
            for section, items in self.settings.items()
        }
        return render("systemd-dropin.conf.j2", {"control": self.control, "settings": settings})

    def check(self, t: Target) -> Finding:
        d, _ = diff_file(t, self.path, self._content(), 0o644, 0, 0)
        keys = ", ".join(f"[{s}] {k}" for s, items in self.settings.items() for k in items)
        return self.finding(
            Status.PASS if d.ok else Status.FAIL,
            f"{self.path} sets {keys}",
            describe_diff(d, t, 0o644, 0, 0),
            f"read {self.path}",
        )

    def steps(self, t: Target) -> list[Step]:
        return file_steps(self.control, t, self.path, self._content(), validate=self.validate)
