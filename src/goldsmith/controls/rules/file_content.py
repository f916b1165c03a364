"""file-content: files (paths or globs) must not / must contain a line matching a regex.

Matching is per line (``re.search``); comment lines (first non-blank character ``#``) are
skipped unless ``ignore_comments`` is false. Check-only by default: a forbidden line may be
what an administrator meant, so removing it is opt-in (``remove_matching: true``), and the
rewrite is validated when a validator is given (``validate: [visudo, -cf, "%s"]``), keeps
the file's mode and owner, and is recorded line by line. A required line is added only when
the rule names it (``append_line``, which must match ``present_pattern``): it goes at the end
of the first path, which must then be a plain file, not a glob (created 0644 root if
missing, as config-option creates a file for a key set nowhere).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from goldsmith.controls.base import Rule
from goldsmith.controls.fsutil import read_optional
from goldsmith.controls.steps import Step, WriteFile
from goldsmith.errors import TargetError
from goldsmith.model.records import FileType, Finding, Status
from goldsmith.targets.base import Target


@dataclass(frozen=True)
class Match:
    path: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.text.strip()[:120]}"


@dataclass(frozen=True)
class FileContentRule(Rule):
    type_name = "file-content"

    paths: tuple[str, ...]
    absent_pattern: str | None = None
    present_pattern: str | None = None
    ignore_case: bool = False
    ignore_comments: bool = True
    #: absent_pattern only: apply removes the matching lines (default: check-only)
    remove_matching: bool = False
    #: present_pattern only: apply appends this line to ``paths[0]`` when no line matches
    append_line: str | None = None
    #: argv run on the rewritten temp file before it replaces the original ("%s")
    validate: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.paths or any(not p.startswith("/") for p in self.paths):
            raise ValueError("paths must be a non-empty list of absolute paths or globs")
        if (self.absent_pattern is None) == (self.present_pattern is None):
            raise ValueError("give exactly one of absent_pattern and present_pattern")
        if self.remove_matching and self.absent_pattern is None:
            raise ValueError("remove_matching only goes with absent_pattern")
        if self.validate is not None and "%s" not in self.validate:
            raise ValueError("validate must contain %s (the file to check)")
        try:
            self._regex  # noqa: B018 (compiled now: a bad pattern fails when the data loads)
        except re.error as e:
            raise ValueError(f"not a regular expression: {e}") from None
        if self.append_line is not None:
            if self.present_pattern is None:
                raise ValueError("append_line only goes with present_pattern")
            if any(c in self.paths[0] for c in "*?["):
                raise ValueError("append_line needs a plain file as the first path, not a glob")
            if "\n" in self.append_line or "\r" in self.append_line:
                raise ValueError("append_line must be one line")
            if not self._regex.search(self.append_line) or (
                self.ignore_comments and self.append_line.lstrip().startswith("#")
            ):
                raise ValueError("append_line must itself match present_pattern")

    @cached_property
    def _regex(self) -> re.Pattern[str]:
        pattern = self.absent_pattern if self.absent_pattern is not None else self.present_pattern
        assert pattern is not None
        return re.compile(pattern, re.IGNORECASE if self.ignore_case else 0)

    def _files(self, t: Target) -> list[str]:
        out: list[str] = []
        for p in self.paths:
            for name in t.glob(p) if any(c in p for c in "*?[") else [p]:
                st = t.stat(name)
                if st is not None and st.type is FileType.FILE and name not in out:
                    out.append(name)
        return out

    def _matches(self, t: Target, files: list[str]) -> list[Match]:
        out: list[Match] = []
        for f in files:
            for n, line in enumerate((read_optional(t, f) or "").splitlines(), 1):
                if self.ignore_comments and line.lstrip().startswith("#"):
                    continue
                if self._regex.search(line):
                    out.append(Match(f, n, line))
        return out

    def _expected(self) -> str:
        if self.absent_pattern is not None:
            return f"no line of {', '.join(self.paths)} matches /{self.absent_pattern}/"
        return f"a line of {', '.join(self.paths)} matches /{self.present_pattern}/"

    def check(self, t: Target) -> Finding:
        files = self._files(t)
        how = (
            f"read {len(files)} file(s) matching {', '.join(self.paths)}, regex per line"
            + (", comment lines skipped" if self.ignore_comments else "")
            + (", case-insensitive" if self.ignore_case else "")
        )
        matches = self._matches(t, files)
        if self.absent_pattern is not None:
            if not files:
                return self.finding(Status.NOT_APPLICABLE, self._expected(), "no such file", how)
            if matches:
                observed = "; ".join(str(m) for m in matches[:20])
                if not self.remove_matching:
                    observed += " [check-only: the line needs a human decision]"
                return self.finding(Status.FAIL, self._expected(), observed, how)
            return self.finding(Status.PASS, self._expected(), "no matching line", how)
        if matches:
            return self.finding(Status.PASS, self._expected(), str(matches[0]), how)
        observed = "no matching line" if files else "no such file"
        if self.append_line is None:
            observed += " [check-only]"
        return self.finding(Status.FAIL, self._expected(), observed, how)

    def steps(self, t: Target) -> list[Step]:
        if self.append_line is not None:
            return self._append_steps(t)
        if not self.remove_matching:
            return []
        files = self._files(t)
        steps: list[Step] = []
        for f in files:
            matches = self._matches(t, [f])
            if not matches:
                continue
            st = t.stat(f)
            assert st is not None
            drop = {m.line for m in matches}
            text = read_optional(t, f) or ""
            kept = [ln for n, ln in enumerate(text.splitlines(True), 1) if n not in drop]
            changes = tuple(self.change(f, f"line {m.line}", m.text, None) for m in matches)
            steps.append(
                WriteFile(changes, f, "".join(kept), st.mode, st.uid, st.gid, self.validate)
            )
        return steps

    def _append_steps(self, t: Target) -> list[Step]:
        assert self.append_line is not None
        if self._matches(t, self._files(t)):
            return []
        target = self.paths[0]
        st = t.stat(target)
        if st is not None and st.type is not FileType.FILE:
            raise TargetError(f"{self.control}: {target} is not a regular file")
        if st is None:
            # as config-option does for a key set nowhere: the file is created with the line
            # (in a build, the control that installs the package owning it runs first)
            change = self.change(target, "line 1", None, self.append_line)
            return [
                WriteFile((change,), target, self.append_line + "\n", 0o644, 0, 0, self.validate)
            ]
        text = read_optional(t, target) or ""
        if text and not text.endswith("\n"):
            text += "\n"
        line_no = len(text.splitlines()) + 1
        change = self.change(target, f"line {line_no}", None, self.append_line)
        return [
            WriteFile(
                (change,),
                target,
                text + self.append_line + "\n",
                st.mode,
                st.uid,
                st.gid,
                self.validate,
            )
        ]
