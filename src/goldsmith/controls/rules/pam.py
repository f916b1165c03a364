"""pam: a pam-auth-update profile in /usr/share/pam-configs/, enabled in the target.

The check reads the generated /etc/pam.d/common-* files: every module line of the profile
must be there with (at least) its arguments. pam-auth-update rewrites jump counts in the
control field, so the control field is not compared.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from goldsmith.controls.base import Rule
from goldsmith.controls.fsutil import file_steps, read_optional
from goldsmith.controls.steps import RunCommand, Step
from goldsmith.controls.templating import render
from goldsmith.model.records import Finding, Status
from goldsmith.targets.base import Target

PAM_CONFIGS = "/usr/share/pam-configs"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_BLOCKS = ("Auth", "Account", "Password", "Session")
_TYPES = tuple(f"{b}-Type" for b in _BLOCKS)
_COMMON = {
    "Auth": ("common-auth",),
    "Account": ("common-account",),
    "Password": ("common-password",),
    "Session": ("common-session", "common-session-noninteractive"),
}


def split_pam_line(line: str) -> tuple[str, str, tuple[str, ...]] | None:
    """``[success=1 default=ignore] pam_unix.so nullok`` -> (control, module, args)."""
    s = line.strip()
    if not s or s.startswith("#"):
        return None
    if s.startswith("["):
        end = s.find("]")
        if end < 0:
            return None
        control, rest = s[: end + 1], s[end + 1 :].split()
    else:
        words = s.split()
        control, rest = words[0], words[1:]
    if not rest:
        return None
    return control, rest[0], tuple(rest[1:])


def common_modules(text: str, pam_type: str) -> list[tuple[str, tuple[str, ...]]]:
    out = []
    for raw in text.splitlines():
        words = raw.strip().split(None, 1)
        if len(words) == 2 and words[0].lstrip("-") == pam_type:
            parsed = split_pam_line(words[1])
            if parsed:
                out.append((parsed[1], parsed[2]))
    return out


@dataclass(frozen=True)
class PamRule(Rule):
    type_name = "pam"

    name: str
    title: str
    priority: int = 0
    default: bool = True
    #: "Auth-Type": "Primary", "Auth": ["[default=die] pam_faillock.so authfail"], ...
    sections: dict[str, str | list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"not a profile name: {self.name!r}")
        for key, value in self.sections.items():
            base = key.removesuffix("-Initial")
            if key in _TYPES:
                if value not in ("Primary", "Additional"):
                    raise ValueError(f"{key} must be Primary or Additional")
            elif base not in _BLOCKS or isinstance(value, str):
                raise ValueError(f"unknown section {key!r} or not a list of lines")
            elif any(split_pam_line(line) is None for line in value):
                raise ValueError(f"{key}: not a PAM line")

    @property
    def path(self) -> str:
        return f"{PAM_CONFIGS}/{self.name}"

    def _content(self) -> str:
        return render(
            "pam-config.j2",
            {
                "title": self.title,
                "default": self.default,
                "priority": self.priority,
                "sections": self.sections,
            },
        )

    def _expected(self) -> list[tuple[str, str, str, tuple[str, ...], tuple[str, ...]]]:
        """(common file, pam type, module, args, -Initial args) for each module line of the
        profile. pam-auth-update writes the ``<Type>-Initial`` line instead when the profile
        is the first of its block, so its module line is accepted with either set of args
        (the -Initial args are the main ones when there is no -Initial line)."""
        out = []
        for key, value in self.sections.items():
            if key in _TYPES or isinstance(value, str) or key.endswith("-Initial"):
                continue
            initial: dict[str, tuple[str, ...]] = {}
            init_lines = self.sections.get(f"{key}-Initial", [])
            for line in init_lines if isinstance(init_lines, list) else []:
                p = split_pam_line(line)
                if p is not None:
                    initial.setdefault(p[1], p[2])
            for line in value:
                parsed = split_pam_line(line)
                assert parsed is not None
                for common in _COMMON[key]:
                    alt = initial.get(parsed[1], parsed[2])
                    out.append((common, key.lower(), parsed[1], parsed[2], alt))
        return out

    def _missing(self, t: Target) -> list[str]:
        missing = []
        for common, pam_type, module, args, alt in self._expected():
            text = read_optional(t, f"/etc/pam.d/{common}") or ""
            have = [a for m, a in common_modules(text, pam_type) if m == module]
            if not any(set(args) <= set(a) or set(alt) <= set(a) for a in have):
                got = "; ".join(" ".join(a) for a in have) or "module absent"
                missing.append(f"{common}: {pam_type} {module} {' '.join(args)} ({got})")
        return missing

    def check(self, t: Target) -> Finding:
        missing = self._missing(t)
        profile_ok = read_optional(t, self.path) == self._content()
        problems = ([] if profile_ok else [f"{self.path} missing or different"]) + missing
        files = sorted({c for c, *_ in self._expected()})
        return self.finding(
            Status.FAIL if problems else Status.PASS,
            f"pam-auth-update profile {self.name} enabled",
            "; ".join(problems) or "all module lines present",
            f"read {self.path} and /etc/pam.d/{{{','.join(files)}}}",
        )

    def steps(self, t: Target) -> list[Step]:
        steps = file_steps(self.control, t, self.path, self._content())
        if steps or self._missing(t):
            steps.append(
                RunCommand(
                    (self.change("/etc/pam.d", self.name, None, "enabled"),),
                    ("pam-auth-update", "--package", "--enable", self.name),
                    {"DEBIAN_FRONTEND": "noninteractive"},
                )
            )
        return steps
