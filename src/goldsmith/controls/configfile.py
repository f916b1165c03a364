"""A line-preserving parser and editor for key/value configuration files.

Styles: ``sshd`` (``Key Value``, case-insensitive keys, first value wins, ``Include`` and
``Match``), ``space`` (login.defs: ``KEY value``, last wins), ``equals`` (``key = value``,
last wins: auditd.conf, pwquality.conf, faillock.conf), ``shell`` (``KEY=VALUE`` at the start
of the line with nothing around ``=``, last wins: /etc/default files, which shells source and
useradd reads that strictly; ``KEY = VALUE`` is not a setting there) and ``systemd``
(``[Section]`` with ``Key=Value``, last wins). Editing changes only the lines it must;
comments, blank lines, order and spacing stay as they were, so ``render(parse(text)) == text``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Style(StrEnum):
    SSHD = "sshd"
    SPACE = "space"
    EQUALS = "equals"
    SHELL = "shell"
    SYSTEMD = "systemd"


_LINE_RE: dict[Style, re.Pattern[str]] = {
    Style.SSHD: re.compile(r"^(?P<pre>\s*)(?P<key>[^\s=#]+)(?P<sep>\s*=\s*|\s+)(?P<val>.*?)\s*$"),
    Style.SPACE: re.compile(r"^(?P<pre>\s*)(?P<key>[^\s#]+)(?P<sep>\s+)(?P<val>.*?)\s*$"),
    Style.EQUALS: re.compile(r"^(?P<pre>\s*)(?P<key>[^\s=#]+)(?P<sep>\s*=\s*)(?P<val>.*?)\s*$"),
    Style.SHELL: re.compile(r"^(?P<pre>)(?P<key>[A-Za-z_][A-Za-z0-9_]*)(?P<sep>=)(?P<val>.*?)\s*$"),
    Style.SYSTEMD: re.compile(r"^(?P<pre>\s*)(?P<key>[^\s=#;\[]+)(?P<sep>\s*=\s*)(?P<val>.*?)\s*$"),
}
_SECTION_RE = re.compile(r"^\s*\[(?P<name>[^\]]+)\]\s*$")
_DEFAULT_SEP = {
    Style.SSHD: " ",
    Style.SPACE: " ",
    Style.EQUALS: " = ",
    Style.SHELL: "=",
    Style.SYSTEMD: "=",
}


@dataclass(frozen=True)
class Line:
    index: int
    key: str
    value: str
    section: str | None  # systemd section; None elsewhere
    in_match: bool  # sshd: inside a Match block of this file


def first_wins(style: Style) -> bool:
    return style is Style.SSHD


def same_key(style: Style, a: str, b: str) -> bool:
    return a.lower() == b.lower() if style is Style.SSHD else a == b


def same_value(style: Style, a: str, b: str) -> bool:
    a, b = " ".join(a.split()), " ".join(b.split())
    return a.lower() == b.lower() if style is Style.SSHD else a == b


class ConfigText:
    """One file's lines, with the key/value lines found in them."""

    def __init__(self, text: str, style: Style) -> None:
        self.style = style
        self.lines = text.split("\n")

    def render(self) -> str:
        return "\n".join(self.lines)

    def entries(self) -> list[Line]:
        out: list[Line] = []
        section: str | None = None
        in_match = False
        pat = _LINE_RE[self.style]
        for i, raw in enumerate(self.lines):
            s = raw.strip()
            if not s or s[0] == "#" or (self.style is Style.SYSTEMD and s[0] == ";"):
                continue
            if self.style is Style.SYSTEMD:
                sec = _SECTION_RE.match(raw)
                if sec:
                    section = sec.group("name").strip()
                    continue
            m = pat.match(raw)
            if m is None:
                continue
            key = m.group("key")
            if self.style is Style.SSHD and key.lower() == "match":
                in_match = True
            out.append(Line(i, key, m.group("val"), section, in_match))
        return out

    def set_value(self, index: int, value: str) -> None:
        m = _LINE_RE[self.style].match(self.lines[index])
        if m is None:
            raise ValueError(f"line {index + 1} is not a key/value line")
        self.lines[index] = m.group("pre") + m.group("key") + m.group("sep") + value

    def _append_at(self, pos: int, new: list[str]) -> None:
        self.lines[pos:pos] = new

    def insert(self, key: str, value: str, section: str | None = None) -> None:
        """Add a setting where it takes effect for the whole file.

        sshd: before the first Match block (a setting after it would only apply to the
        matched connections). systemd: at the end of the section, creating it if missing.
        """
        new = key + _DEFAULT_SEP[self.style] + value
        end = len(self.lines) - 1 if self.lines[-1] == "" else len(self.lines)
        if self.lines[-1] != "":
            self.lines.append("")  # end the file with a newline
        if self.style is Style.SSHD:
            for e in self.entries():
                if e.key.lower() == "match":
                    self._append_at(e.index, [new])
                    return
        if self.style is Style.SYSTEMD and section is not None:
            start = None
            for i, raw in enumerate(self.lines):
                sec = _SECTION_RE.match(raw)
                if sec and start is None and sec.group("name").strip() == section:
                    start = i
                elif sec and start is not None:
                    pos = i
                    while pos - 1 > start and not self.lines[pos - 1].strip():
                        pos -= 1  # keep the blank line that separates sections
                    self._append_at(pos, [new])
                    return
            if start is None:
                head = [""] if end > 0 and self.lines[end - 1].strip() else []
                self._append_at(end, [*head, f"[{section}]", new])
                return
        self._append_at(end, [new])


def parse(text: str, style: Style) -> ConfigText:
    return ConfigText(text, style)
