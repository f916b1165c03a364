"""A fake rootfs target whose in-image commands are emulated on the fake root's files.

Only the commands the controls' apply steps (and validators) run are known: apt-get
install/purge (edits /var/lib/dpkg/status), pam-auth-update (regenerates
/etc/pam.d/common-* from /usr/share/pam-configs), groupadd, usermod, passwd -l, pwconv,
gpasswd -M and visudo -cf. Every argv is recorded; any other command is refused with an
AssertionError (so a step that silently does nothing cannot make a test pass).
"""

from __future__ import annotations

import re
from pathlib import Path

from controls_fixtures import RecordingTarget

from goldsmith.targets.base import RunResult

DPKG_STATUS = "var/lib/dpkg/status"
PAM_BLOCKS = ("Auth", "Account", "Password", "Session")
PAM_COMMON = {
    "Auth": ("common-auth",),
    "Account": ("common-account",),
    "Password": ("common-password",),
    "Session": ("common-session", "common-session-noninteractive"),
}
PAM_TAIL = {
    # what Debian's common-* templates put after the Primary block
    "Auth": ["auth\trequisite\t\t\tpam_deny.so", "auth\trequired\t\t\tpam_permit.so"],
    "Account": ["account\trequisite\t\t\tpam_deny.so", "account\trequired\t\t\tpam_permit.so"],
    "Password": ["password\trequisite\t\t\tpam_deny.so", "password\trequired\t\t\tpam_permit.so"],
    "Session": ["session\t[default=1]\t\t\tpam_permit.so", "session\trequisite\t\t\tpam_deny.so"],
}


class FakeImageTarget(RecordingTarget):
    def answer(self, argv: tuple[str, ...], env: dict[str, str]) -> RunResult:
        handler = {
            "apt-get": self._apt_get,
            "pam-auth-update": self._pam_auth_update,
            "groupadd": self._groupadd,
            "usermod": self._usermod,
            "passwd": self._passwd,
            "pwconv": self._pwconv,
            "gpasswd": self._gpasswd,
            "visudo": self._visudo,
        }.get(argv[0])
        if handler is None:
            raise AssertionError(f"the fake image does not know the command {argv}")
        rc, err = handler(argv[1:], env)
        return RunResult(argv, rc, "", err)

    # files ------------------------------------------------------------------------------------
    def _p(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def _lines(self, path: str) -> list[list[str]]:
        p = self._p(path)
        if not p.exists():
            return []
        return [ln.split(":") for ln in p.read_text().splitlines() if ln.strip()]

    def _put_lines(self, path: str, rows: list[list[str]]) -> None:
        p = self._p(path)
        mode = p.stat().st_mode & 0o7777 if p.exists() else 0o644
        p.write_text("".join(":".join(r) + "\n" for r in rows))
        p.chmod(mode)

    def _edit(self, path: str, name: str, index: int, value: str) -> bool:
        rows = self._lines(path)
        hit = False
        for r in rows:
            if r[0] == name:
                r[index] = value
                hit = True
        if hit:
            self._put_lines(path, rows)
        return hit

    # apt-get ----------------------------------------------------------------------------------
    def _apt_get(self, args: tuple[str, ...], env: dict[str, str]) -> tuple[int, str]:
        if env.get("DEBIAN_FRONTEND") != "noninteractive":
            raise AssertionError("apt-get run without DEBIAN_FRONTEND=noninteractive")
        verb, *rest = args
        names = [a for a in rest if not a.startswith("-")]
        if verb not in ("install", "purge") or "-y" not in rest or len(names) != 1:
            raise AssertionError(f"the fake apt-get does not know {args}")
        name = names[0]
        path = self._p(DPKG_STATUS)
        stanzas = [s for s in path.read_text().split("\n\n") if s.strip()]
        kept = [s for s in stanzas if f"Package: {name}" not in s.splitlines()]
        if verb == "install":
            kept.append(
                f"Package: {name}\nStatus: install ok installed\nPriority: optional\n"
                f"Architecture: amd64\nVersion: 1.0-1\nDescription: {name} (fake)"
            )
        path.write_text("\n\n".join(s.strip("\n") for s in kept) + "\n")
        return 0, ""

    # pam-auth-update --------------------------------------------------------------------------
    def _pam_auth_update(self, args: tuple[str, ...], env: dict[str, str]) -> tuple[int, str]:
        if args[:2] != ("--package", "--enable") or len(args) != 3:
            raise AssertionError(f"the fake pam-auth-update does not know {args}")
        if not self._p(f"/usr/share/pam-configs/{args[2]}").is_file():
            return 1, f"no profile {args[2]}"
        pam_auth_update(self.root)
        return 0, ""

    # account tools ----------------------------------------------------------------------------
    def _groupadd(self, args: tuple[str, ...], env: dict[str, str]) -> tuple[int, str]:
        system = "--system" in args
        rest = [a for a in args if a != "--system"]
        gid: int | None = None
        if rest[:1] == ["--gid"]:
            gid, rest = int(rest[1]), rest[2:]
        if len(rest) != 1:
            raise AssertionError(f"the fake groupadd does not know {args}")
        name = rest[0]
        rows = self._lines("/etc/group")
        if any(r[0] == name for r in rows):
            return 9, f"group '{name}' already exists"
        used = {int(r[2]) for r in rows}
        if gid is None:
            # like groupadd: a system gid is the highest free one below SYS_GID_MAX (999)
            pool = range(999, 100, -1) if system else range(1000, 60000)
            gid = next(g for g in pool if g not in used)
        self._put_lines("/etc/group", [*rows, [name, "x", str(gid), ""]])
        if self._p("/etc/gshadow").exists():
            self._put_lines("/etc/gshadow", [*self._lines("/etc/gshadow"), [name, "!", "", ""]])
        return 0, ""

    def _usermod(self, args: tuple[str, ...], env: dict[str, str]) -> tuple[int, str]:
        if len(args) == 2 and args[0] == "-L":
            return self._lock(args[1])
        if len(args) == 3 and args[0] == "-s":
            return (0, "") if self._edit("/etc/passwd", args[2], 6, args[1]) else (6, "no user")
        if len(args) == 3 and args[0] == "-g" and args[1].isdigit():
            return (0, "") if self._edit("/etc/passwd", args[2], 3, args[1]) else (6, "no user")
        raise AssertionError(f"the fake usermod does not know {args}")

    def _lock(self, name: str) -> tuple[int, str]:
        rows = self._lines("/etc/shadow")
        for r in rows:
            if r[0] == name:
                if not r[1].startswith("!"):
                    r[1] = "!" + r[1]
                self._put_lines("/etc/shadow", rows)
                return 0, ""
        return 6, f"user '{name}' does not exist in /etc/shadow"

    def _passwd(self, args: tuple[str, ...], env: dict[str, str]) -> tuple[int, str]:
        if len(args) != 2 or args[0] != "-l":
            raise AssertionError(f"the fake passwd does not know {args}")
        return self._lock(args[1])

    def _pwconv(self, args: tuple[str, ...], env: dict[str, str]) -> tuple[int, str]:
        if args:
            raise AssertionError(f"the fake pwconv does not know {args}")
        passwd = self._lines("/etc/passwd")
        shadow = self._lines("/etc/shadow")
        known = {r[0] for r in shadow}
        for r in passwd:
            if r[1] != "x":
                if r[0] in known:
                    for s in shadow:
                        if s[0] == r[0]:
                            s[1] = r[1]
                else:
                    shadow.append([r[0], r[1], "20000", "0", "99999", "7", "", "", ""])
                r[1] = "x"
        self._put_lines("/etc/passwd", passwd)
        self._put_lines("/etc/shadow", shadow)
        return 0, ""

    def _gpasswd(self, args: tuple[str, ...], env: dict[str, str]) -> tuple[int, str]:
        if len(args) != 3 or args[0] != "-M":
            raise AssertionError(f"the fake gpasswd does not know {args}")
        members, name = args[1], args[2]
        ok = self._edit("/etc/group", name, 3, members)
        if self._p("/etc/gshadow").exists():
            self._edit("/etc/gshadow", name, 3, members)
        return (0, "") if ok else (3, f"group '{name}' does not exist")

    def _visudo(self, args: tuple[str, ...], env: dict[str, str]) -> tuple[int, str]:
        if len(args) != 2 or args[0] != "-cf":
            raise AssertionError(f"the fake visudo does not know {args}")
        text = self._p(args[1]).read_text()
        for n, line in enumerate(text.splitlines(), 1):
            s = line.strip()
            if s and not s.startswith("#") and not re.match(r"^Defaults\s+\S", s):
                return 1, f"{args[1]}:{n}: syntax error (the fake knows Defaults lines only)"
        return 0, ""


def _profiles(root: Path) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    d = root / "usr/share/pam-configs"
    for f in sorted(d.iterdir()) if d.is_dir() else []:
        prof: dict[str, object] = {"name": f.name}
        key: str | None = None
        for raw in f.read_text().splitlines():
            if raw[:1].isspace() and key is not None:
                lines = prof.setdefault(key, [])
                assert isinstance(lines, list)
                lines.append(raw.strip())
            elif ":" in raw:
                key, _, value = raw.partition(":")
                if value.strip():
                    prof[key] = value.strip()
                    key = None
        out.append(prof)
    return out


def pam_auth_update(root: Path) -> None:
    """Regenerate /etc/pam.d/common-* from the Default: yes profiles, as pam-auth-update does:
    Primary block then Additional block per type, each by descending Priority, the first
    profile of a block contributing its ``<Type>-Initial`` lines when it has them."""
    profiles = [p for p in _profiles(root) if p.get("Default") == "yes"]
    profiles.sort(key=lambda p: (-int(str(p.get("Priority", "0"))), str(p["name"])))
    for block in PAM_BLOCKS:
        pam_type = block.lower()
        out: list[str] = []
        for kind in ("Primary", "Additional"):
            out.append(f'# here are the per-package modules (the "{kind}" block)')
            first = True
            for p in profiles:
                if p.get(f"{block}-Type") != kind:
                    continue
                lines = p.get(f"{block}-Initial") if first else None
                lines = lines or p.get(block) or []
                assert isinstance(lines, list)
                out += [f"{pam_type}\t{line}" for line in lines]
                first = False
            if kind == "Primary":
                out += PAM_TAIL[block]
        out.append("# end of pam-auth-update config")
        for common in PAM_COMMON[block]:
            path = root / "etc/pam.d" / common
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"# /etc/pam.d/{common} (generated)\n" + "\n".join(out) + "\n")
