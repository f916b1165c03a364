"""kernel-module: a module that may not be loaded (``install <mod> /bin/false`` + blacklist).

modprobe.d is read in kmod's order: /etc, /run, /usr/local/lib, /usr/lib, /lib; a file name
in an earlier directory hides the same name later; files are processed in lexical order of
their names; the first ``install`` command for a module is the one modprobe runs.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from goldsmith.controls.base import Rule
from goldsmith.controls.fsutil import dropin_files, file_steps, read_optional
from goldsmith.controls.steps import Step
from goldsmith.controls.templating import render
from goldsmith.model.records import Finding, Status
from goldsmith.targets.base import Target

MODPROBE_DIRS = (
    "/etc/modprobe.d",
    "/run/modprobe.d",
    "/usr/local/lib/modprobe.d",
    "/usr/lib/modprobe.d",
    "/lib/modprobe.d",
)
REFUSING = frozenset({"/bin/false", "/bin/true", "/usr/bin/false", "/usr/bin/true"})
_MOD_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def _norm(mod: str) -> str:
    return mod.replace("-", "_")


def _read_modprobe_d(
    t: Target,
) -> tuple[tuple[str, ...], tuple[tuple[str, int, tuple[str, ...]], ...]]:
    """The modprobe.d files in kmod order, and their lines of two words or more (comments cut)
    as (file, line number, words)."""
    files = dropin_files(t, MODPROBE_DIRS, ".conf")
    lines: list[tuple[str, int, tuple[str, ...]]] = []
    for f in files:
        for n, raw in enumerate((read_optional(t, f) or "").splitlines(), 1):
            words = raw.split("#", 1)[0].split()
            if len(words) >= 2:
                lines.append((f, n, tuple(words)))
    return tuple(files), tuple(lines)


@dataclass(frozen=True)
class KernelModuleRule(Rule):
    type_name = "kernel-module"

    name: str
    #: default /etc/modprobe.d/<name>.conf
    file: str | None = None

    def __post_init__(self) -> None:
        if not _MOD_RE.match(self.name):
            raise ValueError(f"not a module name: {self.name!r}")
        if self.file is not None and not (
            self.file.startswith("/etc/modprobe.d/") and self.file.endswith(".conf")
        ):
            raise ValueError("file must be /etc/modprobe.d/<name>.conf")

    @property
    def path(self) -> str:
        return self.file or f"/etc/modprobe.d/{self.name}.conf"

    def scan(self, t: Target) -> tuple[str | None, str | None, list[str]]:
        """(first install command with its place, a blacklist place, files read)."""
        files, lines = t.memo(("kernel-module.modprobe.d",), lambda: _read_modprobe_d(t))
        install: str | None = None
        blacklist: str | None = None
        mod = _norm(self.name)
        for f, n, words in lines:
            if not fnmatch.fnmatchcase(mod, _norm(words[1])):
                continue
            if words[0] == "install" and install is None and len(words) >= 3:
                install = f"{' '.join(words[2:])} ({f}:{n})"
            elif words[0] == "blacklist" and blacklist is None:
                blacklist = f"{f}:{n}"
        return install, blacklist, list(files)

    def check(self, t: Target) -> Finding:
        install, blacklist, files = self.scan(t)
        ok_install = install is not None and install.split(" (")[0] in REFUSING
        observed = f"install: {install or 'none'}; blacklist: {blacklist or 'none'}"
        return self.finding(
            Status.PASS if ok_install and blacklist else Status.FAIL,
            f"install {self.name} /bin/false; blacklist {self.name}",
            observed,
            "read in kmod order (first install wins): " + (", ".join(files) or "no files"),
        )

    def steps(self, t: Target) -> list[Step]:
        content = render("modprobe-disable.conf.j2", {"control": self.control, "module": self.name})
        return file_steps(self.control, t, self.path, content)
