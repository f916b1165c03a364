"""Fixtures for the control tests: fake roots on tmp_path (through the real confined
RootfsTarget) and a hash of a whole tree."""

from __future__ import annotations

import hashlib
import os
import stat as st
from collections.abc import Mapping, Sequence
from pathlib import Path

from goldsmith.errors import BuildError
from goldsmith.targets.base import RunResult
from goldsmith.targets.rootfs import RootfsTarget


class RecordingTarget(RootfsTarget):
    """A fake root whose commands never run: each argv is recorded and answered by
    :meth:`answer`; a failing answer raises like a real target when ``check`` is set."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.commands: list[tuple[str, ...]] = []

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> RunResult:
        args = tuple(argv)
        self.commands.append(args)
        r = self.answer(args, dict(env or {}))
        if check and not r.ok:
            raise BuildError("command failed", argv=argv, stderr=r.stderr)
        return r

    def answer(self, argv: tuple[str, ...], env: dict[str, str]) -> RunResult:
        raise NotImplementedError


class LiveRootfsTarget(RecordingTarget):
    """A fake root that claims to be a running system: /proc/sys files are laid out by the
    test, commands are answered from a table (so the live branches of checks can be tested
    without touching the host)."""

    live = True

    def __init__(self, root: Path, answers: Mapping[tuple[str, ...], RunResult] | None = None):
        super().__init__(root)
        self.answers = dict(answers or {})

    def answer(self, argv: tuple[str, ...], env: dict[str, str]) -> RunResult:
        r = self.answers.get(argv)
        return r if r is not None else RunResult(argv, 127, "", "not answered by the test")


def make_target(root: Path) -> RootfsTarget:
    return RootfsTarget(root)


def write(root: Path, path: str, text: str, mode: int = 0o644) -> Path:
    p = root / path.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    p.chmod(mode)
    return p


def tree_hash(root: Path) -> str:
    """sha256 over every path, type, mode, owner, content and link target under root."""
    h = hashlib.sha256()
    top = os.fspath(root)
    cut = len(top) + 1
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            s = os.lstat(p)
            h.update(f"{p[cut:]}\0{s.st_mode:o}\0{s.st_uid}\0{s.st_gid}\0".encode())
            if st.S_ISLNK(s.st_mode):
                h.update(os.readlink(p).encode())
            elif st.S_ISREG(s.st_mode):
                with open(p, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()


def child_pids() -> set[int]:
    """This process's children, zombies included (from /proc): a test that forks compares
    the set before and after to show nothing was left behind."""
    me = str(os.getpid())
    out = set()
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:
            out.add(int(stat_file.parent.name))
    return out


#: one valid catalogue file: a control and a recommendation not automated
GOOD_CATALOGUE = """controls:
  - id: sysctl.test-key
    title: a test control
    rationale: a rationale that is long enough to pass
    level: 1
    rule: {type: sysctl, key: kernel.dmesg_restrict, value: "1"}
    references:
      cis-debian13: ["1.5.5"]
      soc2: [CC6.8]
      iso27001-2013: [A.12.6.2]
      iso27001-2022: [A.8.9]
"""
GOOD_NOT_AUTOMATED = """
not_automated:
  - cis-debian13: "1.4.1"
    kind: manual
    reason: a reason that is long enough to pass the schema
"""
