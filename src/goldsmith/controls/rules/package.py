"""package: present (apt-get install) or absent (purged), read from /var/lib/dpkg/status."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from goldsmith.controls.base import Rule
from goldsmith.controls.fsutil import read_optional
from goldsmith.controls.steps import RunCommand, Step
from goldsmith.model.records import Change, Finding, Status
from goldsmith.targets.base import Target

DPKG_STATUS = "/var/lib/dpkg/status"
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


class PackageState(StrEnum):
    PRESENT = "present"
    ABSENT = "absent"


def dpkg_status(t: Target) -> dict[str, tuple[str, str]]:
    """package name -> (dpkg state such as "installed" or "config-files", version)."""
    return dict(_dpkg_status(t))


def _dpkg_status(t: Target) -> Mapping[str, tuple[str, str]]:
    """:func:`dpkg_status`, parsed once per :meth:`Target.cached` block (shared: read only)."""
    return t.memo(("package.dpkg-status",), lambda: MappingProxyType(_parse_dpkg_status(t)))


def _parse_dpkg_status(t: Target) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    text = read_optional(t, DPKG_STATUS) or ""
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                k, _, v = line.partition(":")
                fields[k] = v.strip()
        name = fields.get("Package")
        if name:
            state = fields.get("Status", "").split()
            out[name] = (state[-1] if state else "unknown", fields.get("Version", ""))
    return out


@dataclass(frozen=True)
class PackageRule(Rule):
    type_name = "package"

    name: str
    state: PackageState = PackageState.PRESENT

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"not a Debian package name: {self.name!r}")

    def _observed(self, t: Target) -> tuple[str, str]:
        return _dpkg_status(t).get(self.name, ("not-installed", ""))

    def _ok(self, state: str) -> bool:
        if self.state is PackageState.PRESENT:
            return state == "installed"
        return state == "not-installed"  # "config-files" is removed but not purged

    def check(self, t: Target) -> Finding:
        state, version = self._observed(t)
        observed = f"{state} {version}".strip()
        want = "installed" if self.state is PackageState.PRESENT else "not installed (purged)"
        return self.finding(
            Status.PASS if self._ok(state) else Status.FAIL,
            f"package {self.name} {want}",
            observed,
            f"read {DPKG_STATUS}",
        )

    def steps(self, t: Target) -> list[Step]:
        state, version = self._observed(t)
        if self._ok(state):
            return []
        before = f"{state} {version}".strip()
        argv: tuple[str, ...]
        if self.state is PackageState.PRESENT:
            argv = ("apt-get", "install", "-y", "-q", "--no-install-recommends", self.name)
            after = "installed"
        else:
            argv = ("apt-get", "purge", "-y", "-q", self.name)
            after = "not-installed"
        return [RunCommand((self.change(self.name, "package", before, after),), argv, APT_ENV)]

    def apply(self, t: Target) -> list[Change]:
        """Run the plan, then report every package apt actually added or removed with it."""
        before = dpkg_status(t)
        planned = super().apply(t)
        if not planned:
            return []
        after = dpkg_status(t)
        extra = [
            self.change(
                name,
                "package",
                " ".join(before[name]) if name in before else None,
                " ".join(after[name]) if name in after else None,
            )
            for name in sorted(set(before) | set(after))
            if name != self.name and before.get(name) != after.get(name)
        ]
        return planned + extra
