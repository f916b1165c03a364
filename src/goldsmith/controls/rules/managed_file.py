"""managed-file: a whole file from a Jinja2 template (or inline text), with mode and owner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from goldsmith.controls.base import Rule
from goldsmith.controls.fsutil import (
    Mode,
    describe_diff,
    diff_file,
    file_steps,
    fmt_mode,
    resolve_gid,
    resolve_uid,
)
from goldsmith.controls.steps import Step
from goldsmith.controls.templating import render, render_string
from goldsmith.model.records import Finding, Status
from goldsmith.targets.base import Target


@dataclass(frozen=True)
class ManagedFileRule(Rule):
    type_name = "managed-file"

    path: str
    #: template name under controls/templates/ ...
    template: str | None = None
    #: ... or the template source inline
    content: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    mode: Mode = 0o644
    owner: str = "root"
    group: str = "root"
    validate: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError("path must be absolute")
        if (self.template is None) == (self.content is None):
            raise ValueError("give exactly one of template or content")

    def text(self) -> str:
        ctx = {"control": self.control, **self.context}
        if self.template is not None:
            return render(self.template, ctx)
        assert self.content is not None
        return render_string(self.content, ctx)

    def check(self, t: Target) -> Finding:
        want = self.text()
        uid, gid = resolve_uid(t, self.owner), resolve_gid(t, self.group)
        d, _ = diff_file(t, self.path, want, self.mode, uid, gid)
        return self.finding(
            Status.PASS if d.ok else Status.FAIL,
            f"{self.path}: rendered {self.template or 'inline content'}, "
            f"mode {fmt_mode(self.mode)}, {self.owner}:{self.group}",
            describe_diff(d, t, self.mode, uid, gid),
            f"read and stat {self.path}",
        )

    def steps(self, t: Target) -> list[Step]:
        return file_steps(
            self.control,
            t,
            self.path,
            self.text(),
            mode=self.mode,
            uid=resolve_uid(t, self.owner),
            gid=resolve_gid(t, self.group),
            validate=self.validate,
        )
