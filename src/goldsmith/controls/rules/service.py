"""service: a unit enabled, disabled or masked, through unit symlinks on an offline rootfs.

No systemd runs in a rootfs, so this does what ``systemctl enable`` does: read the unit's
``[Install]`` section and create (or remove) the ``.wants/`` / ``.requires/`` links and the
``Alias=`` links under /etc/systemd/system. Masked means ``/etc/systemd/system/<unit>`` is a
link to /dev/null. On a live target ``systemctl`` is used instead.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from enum import StrEnum

from goldsmith.controls.base import Rule
from goldsmith.controls.configfile import ConfigText, Style
from goldsmith.controls.fsutil import image_dirs, is_masked, read_optional
from goldsmith.controls.steps import Remove, RunCommand, Step, Symlink
from goldsmith.errors import TargetError
from goldsmith.model.records import FileType, Finding, Status
from goldsmith.targets.base import Target

ETC = "/etc/systemd/system"
UNIT_DIRS = (
    ETC,
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
)
_UNIT_RE = re.compile(r"^[A-Za-z0-9:_.\\@-]+\.(service|socket|timer|path|mount|target)$")


class ServiceState(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"
    MASKED = "masked"


@dataclass(frozen=True)
class InstallInfo:
    unit_file: str
    wanted_by: tuple[str, ...] = ()
    required_by: tuple[str, ...] = ()
    alias: tuple[str, ...] = ()

    def links(self, unit: str) -> list[str]:
        """Every link ``systemctl enable`` would create for ``unit``."""
        out = [f"{ETC}/{t}.wants/{unit}" for t in self.wanted_by]
        out += [f"{ETC}/{t}.requires/{unit}" for t in self.required_by]
        out += [f"{ETC}/{a}" for a in self.alias]
        return out


def _template_of(unit: str) -> str:
    # foo@bar.service -> foo@.service
    m = re.match(r"^(.+@)[^.]+(\..+)$", unit)
    return m.group(1) + m.group(2) if m else unit


def find_unit(t: Target, unit: str) -> str | None:
    names = [unit] if unit == _template_of(unit) else [unit, _template_of(unit)]
    for name in names:
        for d in image_dirs(t, UNIT_DIRS):
            p = posixpath.join(d, name)
            st = t.lstat(p)
            if st is None or is_masked(t, p):
                continue
            if st.type is FileType.SYMLINK and d == ETC:
                continue  # an alias or enablement link, not the unit file
            if t.stat(p) is not None:
                return p
    return None


def install_info(t: Target, unit_file: str) -> InstallInfo:
    ct = ConfigText(read_optional(t, unit_file) or "", Style.SYSTEMD)
    acc: dict[str, list[str]] = {"WantedBy": [], "RequiredBy": [], "Alias": []}
    for e in ct.entries():
        if e.section == "Install" and e.key in acc:
            if not e.value:
                acc[e.key].clear()  # an empty assignment resets the list
            acc[e.key].extend(e.value.split())
    return InstallInfo(
        unit_file, tuple(acc["WantedBy"]), tuple(acc["RequiredBy"]), tuple(acc["Alias"])
    )


def enablement_links(t: Target, unit: str) -> list[str]:
    """Links to ``unit`` under /etc/systemd/system/*.wants|*.requires."""
    out = []
    for d in t.glob(f"{ETC}/*.wants") + t.glob(f"{ETC}/*.requires"):
        p = f"{d}/{unit}"
        if t.lstat(p) is not None:
            out.append(p)
    return out


@dataclass(frozen=True)
class ServiceRule(Rule):
    type_name = "service"

    unit: str
    state: ServiceState = ServiceState.DISABLED
    #: on a live target also start/stop it now (systemctl --now)
    now: bool = False
    #: for a unit another control writes to /etc/systemd/system (state enabled only): the
    #: targets its [Install] section names, so the links can be planned before the file
    #: exists (``apply --check`` plans every control against the untouched tree). The check
    #: still fails while the unit file is missing.
    wanted_by: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _UNIT_RE.match(self.unit):
            raise ValueError(f"not a unit name: {self.unit!r}")
        if self.wanted_by and self.state is not ServiceState.ENABLED:
            raise ValueError("wanted_by only goes with state: enabled")
        for target in self.wanted_by:
            if not _UNIT_RE.match(target):
                raise ValueError(f"not a unit name: {target!r}")

    @property
    def _mask_path(self) -> str:
        return f"{ETC}/{self.unit}"

    def _observe(self, t: Target) -> tuple[str, InstallInfo | None, list[str]]:
        """(state word, install info, present enablement links)."""
        if is_masked(t, self._mask_path):
            return "masked", None, []
        unit_file = find_unit(t, self.unit)
        if unit_file is None:
            return "not-found", None, []
        info = install_info(t, unit_file)
        present = sorted(
            set(enablement_links(t, self.unit))
            | {p for p in info.links(self.unit) if t.lstat(p) is not None}
        )
        want = info.links(self.unit)
        if not want:
            return ("static" if not present else "enabled"), info, present
        missing = [p for p in want if t.lstat(p) is None]
        if not missing:
            return "enabled", info, present
        return ("disabled" if not present else "partly-enabled"), info, present

    def _live_state(self, t: Target) -> str:
        r = t.run(["systemctl", "is-enabled", self.unit], check=False)
        return (r.stdout.strip().splitlines() or ["not-found"])[0]

    def _ok(self, state: str) -> bool:
        if self.state is ServiceState.ENABLED:
            return state in ("enabled", "enabled-runtime", "alias")
        if self.state is ServiceState.MASKED:
            return state in ("masked", "masked-runtime")
        return state in ("disabled", "static", "not-found", "masked", "indirect")

    def check(self, t: Target) -> Finding:
        if t.live:
            state = self._live_state(t)
            return self.finding(
                Status.PASS if self._ok(state) else Status.FAIL,
                f"{self.unit} {self.state}",
                state,
                f"systemctl is-enabled {self.unit}",
            )
        state, info, present = self._observe(t)
        observed = state
        if present:
            observed += " (links: " + ", ".join(present) + ")"
        if info is not None:
            observed += f"; unit file {info.unit_file}"
        how = f"lstat of the [Install] links under {ETC} and of the unit files in " + ", ".join(
            image_dirs(t, UNIT_DIRS)[1:]
        )
        status = Status.PASS if self._ok(state) else Status.FAIL
        if self.state is ServiceState.ENABLED and state == "static":
            observed += "; no [Install] section, cannot be enabled"
        return self.finding(status, f"{self.unit} {self.state}", observed, how)

    def steps(self, t: Target) -> list[Step]:
        if t.live:
            state = self._live_state(t)
            if self._ok(state):
                return []
            verb = {"enabled": "enable", "disabled": "disable", "masked": "mask"}[self.state]
            argv = ("systemctl", verb, *(["--now"] if self.now else []), self.unit)
            return [RunCommand((self.change(self.unit, "state", state, str(self.state)),), argv)]
        state, info, present = self._observe(t)
        if self._ok(state):
            return []
        steps: list[Step] = []
        if self.state is ServiceState.ENABLED:
            if info is None and self.wanted_by and state == "not-found":
                info = InstallInfo(f"{ETC}/{self.unit}", wanted_by=self.wanted_by)
            if info is None:
                raise TargetError(
                    f"unit {self.unit} is {state} in {t.description}; cannot enable it",
                    hint="install the package that ships it, or unmask it first",
                )
            for link in info.links(self.unit):
                if t.lstat(link) is None:
                    steps.append(
                        Symlink(
                            (self.change(link, "link", None, info.unit_file),), info.unit_file, link
                        )
                    )
            return steps
        for link in present:
            steps.append(Remove((self.change(link, "link", t.readlink(link), None),), link))
        if self.state is ServiceState.MASKED:
            st = t.lstat(self._mask_path)
            if st is not None and st.type is not FileType.SYMLINK:
                raise TargetError(
                    f"{self._mask_path} is a unit file, not a link; refusing to mask over it",
                    hint="remove the local unit file first",
                )
            before = t.readlink(self._mask_path) if st is not None else None
            steps.append(
                Symlink(
                    (self.change(self._mask_path, "link", before, "/dev/null"),),
                    "/dev/null",
                    self._mask_path,
                    replace=st is not None,
                )
            )
        return steps
