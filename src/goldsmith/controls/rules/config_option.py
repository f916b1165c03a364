"""config-option: one key in a key/value configuration file, resolved the way its reader does.

sshd: the first global occurrence wins, across ``Include``d files processed at the point of
the Include; settings inside ``Match`` blocks do not count for the global value.
Other styles: the last occurrence wins, main file first and then drop-in directories.

Apply sets every in-scope occurrence that disagrees (in the file that holds it) and, when the
key is set nowhere, adds it to the drop-in (if one is configured and actually read) or to the
main file. Since every occurrence then agrees, the result does not depend on which file
sorts first: a conflicting ``PermitRootLogin yes`` in the main file cannot win.
"""

from __future__ import annotations

import fnmatch
import posixpath
from dataclasses import dataclass, field

from goldsmith.controls.base import Rule
from goldsmith.controls.configfile import ConfigText, Style, first_wins, same_key, same_value
from goldsmith.controls.fsutil import Mode, dropin_files, read_optional
from goldsmith.controls.steps import Step, WriteFile
from goldsmith.model.records import Change, Finding, Status
from goldsmith.targets.base import Target

SSHD_INCLUDE_DEPTH = 16
#: the validator for sshd files inside a rootfs: sshd -t refuses to run without its privilege
#: separation directory, which lives on /run (a fresh tmpfs in the chroot session)
SSHD_VALIDATE = (
    "/bin/sh",
    "-c",
    'mkdir -p -m 0755 /run/sshd && exec /usr/sbin/sshd -t -f "$1"',
    "sshd-t",
    "%s",
)


@dataclass(frozen=True)
class Occurrence:
    file: str
    index: int  # line index in that file
    key: str
    value: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.index + 1}"


@dataclass
class _Scan:
    occurrences: list[Occurrence] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    include_patterns: list[str] = field(default_factory=list)
    texts: dict[str, ConfigText] = field(default_factory=dict)


def systemd_dropin_dirs(path: str) -> tuple[str, ...]:
    """/etc/systemd/journald.conf -> its .conf.d directories in systemd's search order."""
    if not path.startswith("/etc/systemd/"):
        return (path + ".d",)
    rel = path.removeprefix("/etc/systemd/") + ".d"
    return tuple(
        f"{base}/{rel}"
        for base in ("/etc/systemd", "/run/systemd", "/usr/local/lib/systemd", "/usr/lib/systemd")
    )


@dataclass(frozen=True)
class ConfigOptionRule(Rule):
    type_name = "config-option"

    path: str
    key: str
    value: str
    style: Style = Style.EQUALS
    section: str | None = None
    #: file to add the key to when it is set nowhere (e.g. /etc/ssh/sshd_config.d/00-goldsmith.conf)
    dropin: str | None = None
    #: extra directories read after the main file (``*.conf``, lexical order); systemd style
    #: derives them from ``path`` when left empty
    dropin_dirs: tuple[str, ...] = ()
    #: argv run inside the target on each file before it is written (``%s``: the temp file)
    validate: tuple[str, ...] | None = None
    mode: Mode = 0o644  # for a file this rule creates

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError("path must be absolute")
        if self.style is Style.SYSTEMD and not self.section:
            raise ValueError("systemd style needs a section")
        if self.style is not Style.SYSTEMD and self.section:
            raise ValueError("section only applies to the systemd style")
        if any(c in self.value for c in "\n\r"):
            raise ValueError("value must be one line")
        if self.validate is not None and "%s" not in self.validate:
            raise ValueError("validate argv must contain %s")
        if (
            self.dropin
            and self.style is not Style.SSHD
            and posixpath.dirname(self.dropin) not in self._dirs()
        ):
            raise ValueError(f"dropin must be in one of {list(self._dirs())}")

    def _dirs(self) -> tuple[str, ...]:
        if self.dropin_dirs:
            return self.dropin_dirs
        return systemd_dropin_dirs(self.path) if self.style is Style.SYSTEMD else ()

    # reading -----------------------------------------------------------------------------
    def _load(self, t: Target, path: str, scan: _Scan) -> ConfigText | None:
        if path in scan.texts:
            return scan.texts[path]
        text = read_optional(t, path)
        if text is None:
            return None
        ct = ConfigText(text, self.style)
        scan.texts[path] = ct
        scan.files.append(path)
        return ct

    def _scan_sshd(self, t: Target, path: str, scan: _Scan, conditional: bool, depth: int) -> None:
        ct = self._load(t, path, scan)
        if ct is None or depth > SSHD_INCLUDE_DEPTH:
            return
        for e in ct.entries():
            cond = conditional or e.in_match
            if e.key.lower() == "include":
                for pat in e.value.split():
                    full = pat if pat.startswith("/") else posixpath.join("/etc/ssh", pat)
                    if not cond:
                        scan.include_patterns.append(full)
                    names = t.glob(full) if any(c in full for c in "*?[") else [full]
                    for inc in names:
                        self._scan_sshd(t, inc, scan, cond, depth + 1)
            elif not cond and same_key(self.style, e.key, self.key):
                scan.occurrences.append(Occurrence(path, e.index, e.key, e.value))

    def _scan(self, t: Target) -> _Scan:
        scan = _Scan()
        if self.style is Style.SSHD:
            self._scan_sshd(t, self.path, scan, False, 0)
            return scan
        for f in [self.path, *dropin_files(t, self._dirs(), ".conf")]:
            ct = self._load(t, f, scan)
            if ct is None:
                continue
            for e in ct.entries():
                if same_key(self.style, e.key, self.key) and e.section == self.section:
                    scan.occurrences.append(Occurrence(f, e.index, e.key, e.value))
        return scan

    def effective(self, t: Target) -> tuple[Occurrence | None, _Scan]:
        scan = self._scan(t)
        if not scan.occurrences:
            return None, scan
        return (scan.occurrences[0] if first_wins(self.style) else scan.occurrences[-1]), scan

    @property
    def _label(self) -> str:
        return f"[{self.section}] {self.key}" if self.section else self.key

    def check(self, t: Target) -> Finding:
        win, scan = self.effective(t)
        order = "first" if first_wins(self.style) else "last"
        how = f"read {', '.join(scan.files) or self.path + ' (missing)'}; {order} value wins"
        if self.style is Style.SSHD:
            how += "; Include followed, Match blocks excluded"
        if win is None:
            return self.finding(Status.FAIL, f"{self._label} {self.value}", "not set", how)
        ok = same_value(self.style, win.value, self.value)
        return self.finding(
            Status.PASS if ok else Status.FAIL,
            f"{self._label} {self.value}",
            f"{win.value} (at {win.where})",
            how,
        )

    # writing -----------------------------------------------------------------------------
    def _dropin_is_read(self, scan: _Scan) -> bool:
        if self.dropin is None:
            return False
        if self.style is not Style.SSHD:
            return True
        return self.dropin in scan.files or any(
            fnmatch.fnmatchcase(self.dropin, p) for p in scan.include_patterns
        )

    def steps(self, t: Target) -> list[Step]:
        scan = self._scan(t)
        edits: dict[str, list[Change]] = {}
        for occ in scan.occurrences:
            if not same_value(self.style, occ.value, self.value):
                scan.texts[occ.file].set_value(occ.index, self.value)
                edits.setdefault(occ.file, []).append(
                    self.change(occ.file, self._label, occ.value, self.value)
                )
        new_file: str | None = None
        if not scan.occurrences:
            new_file = self.dropin if self._dropin_is_read(scan) else self.path
            assert new_file is not None
            ct = scan.texts.get(new_file)
            if ct is None:
                ct = scan.texts[new_file] = ConfigText("", self.style)
            ct.insert(self.key, self.value, self.section)
            edits.setdefault(new_file, []).append(
                self.change(new_file, self._label, None, self.value)
            )
        steps: list[Step] = []
        for f, changes in edits.items():
            st = t.stat(f)
            mode, uid, gid = (st.mode, st.uid, st.gid) if st is not None else (self.mode, 0, 0)
            steps.append(
                WriteFile(tuple(changes), f, scan.texts[f].render(), mode, uid, gid, self.validate)
            )
        return steps
