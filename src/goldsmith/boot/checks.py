"""Live checks: what only the running image can answer, asked over SSH.

Each check is a small typed object with an ``id`` and ``run(guest, ctx) -> CheckResult``; the
list is data. ``default_checks(ctx)`` is the image's own list; an integration (the NanoClaw
agent) extends it with its own, e.g. ``UnitActiveCheck("nanoclaw.service")`` and
``PathCheck("/var/log/nanoclaw", mode=0o750, owner="nanoclaw")``.

Expected values come from the profile (through the catalogue: the sysctl and sshd controls
with the profile's parameters), from the image itself (its /etc/audit/rules.d, read from the
copy before the test account was added) and from the build's final inventory (SUID/SGID
files). Parsers are plain functions over command output, tested on real captures.
"""

from __future__ import annotations

import ipaddress
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from goldsmith.boot.ssh import CommandResult
from goldsmith.controls.catalogue import Catalogue
from goldsmith.controls.rules.apparmor_profiles import MODE_FLAGS
from goldsmith.controls.rules.audit_rules import canonical_audit_rule, canonical_audit_rules
from goldsmith.controls.rules.config_option import ConfigOptionRule
from goldsmith.controls.rules.sysctl import SysctlRule, normalise_key, normalise_value
from goldsmith.model.profile import ControlSettings, Profile
from goldsmith.model.records import Status

SSHD_CONFIG = "/etc/ssh/sshd_config"


class Guest(Protocol):
    def run(
        self, command: Sequence[str] | str, *, timeout: float = ..., sudo: bool = ...
    ) -> CommandResult: ...


@dataclass(frozen=True)
class CheckResult:
    id: str
    title: str
    status: Status
    expected: str
    observed: str
    how: str
    seconds: float = 0.0
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "status": str(self.status),
            "passed": self.status in (Status.PASS, Status.EXCEPTED, Status.NOT_APPLICABLE),
            "expected": self.expected,
            "observed": self.observed,
            "how": self.how,
            "seconds": self.seconds,
            "detail": dict(self.detail),
        }


@dataclass(frozen=True)
class Expectations:
    """What the image should show when running, derived before the boot."""

    ssh_port: int
    #: sshd -T key (lower case) -> expected value, from the enabled sshd config controls
    sshd: Mapping[str, str]
    #: sysctl key -> (expected value, control id)
    sysctl: Mapping[str, tuple[str, str]]
    #: mount point -> mount options the profile asks for
    mounts: Mapping[str, tuple[str, ...]]
    #: audit rule lines the image carries (/etc/audit/rules.d in augenrules order)
    audit_rules: tuple[str, ...]
    audit_rules_files: tuple[str, ...]
    #: SUID/SGID regular files in the build's final inventory
    setid_files: frozenset[str]
    #: ext4 mount points (find runs on each, -xdev)
    filesystems: tuple[str, ...]
    #: SSH host keys in the gold image (must be none)
    image_host_keys: tuple[str, ...]
    #: control id -> justification of a profile exception
    exceptions: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Context:
    expect: Expectations


class LiveCheck(ABC):
    id: str
    title: str
    #: waits for a first-boot job, or needs the system settled after it: the boot test runs
    #: the late checks (in their listed order) after the guest's own goldsmith scan, so the
    #: job runs beside that scan instead of a check sitting in a poll loop
    late: ClassVar[bool] = False

    @abstractmethod
    def run(self, guest: Guest, ctx: Context) -> CheckResult: ...

    def result(
        self,
        status: Status,
        expected: str,
        observed: str,
        how: str,
        detail: Mapping[str, Any] | None = None,
    ) -> CheckResult:
        return CheckResult(self.id, self.title, status, expected, observed, how, 0.0, detail or {})


def run_checks(guest: Guest, ctx: Context, checks: Sequence[LiveCheck]) -> list[CheckResult]:
    """Run every check; a check that raises becomes an ``error`` result, the rest still run."""
    out: list[CheckResult] = []
    for check in checks:
        t0 = time.monotonic()
        try:
            res = check.run(guest, ctx)
        except Exception as e:  # one broken check must not hide the others' results
            res = check.result(Status.ERROR, "the check runs", f"{type(e).__name__}: {e}", "")
        out.append(
            CheckResult(
                res.id,
                res.title,
                res.status,
                res.expected,
                res.observed,
                res.how,
                round(time.monotonic() - t0, 3),
                res.detail,
            )
        )
    return out


# --- expectations from the profile ---------------------------------------------------------


def _settings(profile: Profile, control_id: str) -> ControlSettings:
    return profile.controls.get(control_id, ControlSettings())


def expectations_from_profile(
    profile: Profile, catalogue: Catalogue
) -> tuple[int, dict[str, str], dict[str, tuple[str, str]]]:
    """(ssh port, sshd expectations, sysctl expectations) from the enabled controls."""
    sshd: dict[str, str] = {}
    sysctl: dict[str, tuple[str, str]] = {}
    for cid, control in catalogue.controls.items():
        settings = _settings(profile, cid)
        if not settings.enabled:
            continue
        rule = control.rule(settings.params)
        if isinstance(rule, ConfigOptionRule) and rule.path == SSHD_CONFIG:
            sshd[rule.key.lower()] = rule.value
        elif isinstance(rule, SysctlRule):
            sysctl[normalise_key(rule.key)] = (normalise_value(rule.value), cid)
    port = int(sshd.get("port", "22").split()[0])
    return port, sshd, sysctl


def profile_mounts(profile: Profile) -> dict[str, tuple[str, ...]]:
    return {p.mountpoint: tuple(p.options) for p in profile.image.partitions}


# --- parsers -------------------------------------------------------------------------------


def parse_sshd_t(text: str) -> dict[str, list[str]]:
    """``sshd -T`` lines -> key -> values (a key such as ``port`` or ``hostkey`` can repeat)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            out.setdefault(key.lower(), []).append(value.strip())
    return out


_TIME_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TIME_RE = re.compile(r"^(?:(\d+)([smhdwSMHDW]?))+$")


def _seconds(value: str) -> int | None:
    if not _TIME_RE.match(value):
        return None
    return sum(int(n) * _TIME_UNITS[u.lower()] for n, u in re.findall(r"(\d+)([a-zA-Z]?)", value))


def sshd_value_matches(key: str, expected: str, observed: Sequence[str]) -> bool | None:
    """Does ``sshd -T`` show ``expected`` for ``key``? None: not comparable (a +/-/^ list)."""
    if not observed:
        return False
    exp = expected.strip()
    if exp[:1] in "+-^" and "," in exp + ",":
        return None
    obs = [o.strip() for o in observed]
    if key in ("allowgroups", "allowusers", "denygroups", "denyusers"):
        got = {w for o in obs for w in o.split()}
        return got == set(exp.split())
    if "," in exp or any("," in o for o in obs):
        return [x.lower() for x in obs[0].split(",")] == [x.lower() for x in exp.split(",")]
    if exp.lower() == obs[0].lower():
        return True
    se, so = _seconds(exp), _seconds(obs[0])
    if se is not None and so is not None:
        return se == so
    # sshd -T writes its own names for some values: "yes"/"no" case and spacing aside
    return " ".join(exp.lower().split()) == " ".join(obs[0].lower().split())


@dataclass(frozen=True)
class Socket:
    proto: str  # tcp / udp
    address: str  # without brackets and without %interface
    port: int
    interface: str | None
    process: str | None

    @property
    def loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.address).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        addr = f"[{self.address}]" if ":" in self.address else self.address
        scope = f"%{self.interface}" if self.interface else ""
        proc = f" {self.process}" if self.process else ""
        return f"{self.proto} {addr}{scope}:{self.port}{proc}"


_USERS_RE = re.compile(r'users:\(\("([^"]+)"')


def parse_ss(text: str) -> list[Socket]:
    """``ss -Htlnup`` -> sockets (Netid State Recv-Q Send-Q Local Peer [Process])."""
    out: list[Socket] = []
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 6:
            continue
        local = cols[4]
        host, _, port = local.rpartition(":")
        if not port.isdigit():
            continue
        iface = None
        if "%" in host:
            host, _, iface = host.partition("%")
        host = host.strip("[]")
        if host == "*":
            host = "0.0.0.0"  # noqa: S104 (parsing, not binding)
        m = _USERS_RE.search(line)
        out.append(Socket(cols[0], host, int(port), iface, m.group(1) if m else None))
    return out


def parse_findmnt(text: str) -> dict[str, set[str]]:
    """``findmnt -rn -o TARGET,OPTIONS`` -> target -> option set (the last mount wins: a
    re-mount over the same target, as for /dev/shm, is what is in effect)."""
    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            out[parts[0]] = set(parts[1].split(","))
    return out


def parse_auditctl_status(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            out[key] = value.strip()
    return out


def parse_auditctl_list(text: str) -> list[str]:
    """``auditctl -l`` -> rule lines ("No rules" is the empty list)."""
    return [ln.strip() for ln in text.splitlines() if ln.strip() and ln.strip() != "No rules"]


# --- the checks ----------------------------------------------------------------------------


def _fail_or_pass(ok: bool) -> Status:
    return Status.PASS if ok else Status.FAIL


#: systemctl's answer when PID 1 did not reply within its D-Bus timeout (25 s): seen under
#: TCG while the first boot is still busy; the same call succeeds a little later
_BUS_TIMEOUT = ("Connection timed out", "Failed to connect to bus", "Transport endpoint")


def _systemctl(guest: Guest, argv: Sequence[str], *, attempts: int = 3) -> CommandResult:
    """Run a systemctl command, again (after a pause) if it failed on a D-Bus timeout."""
    res = guest.run(argv, sudo=True, timeout=120)
    for _ in range(attempts - 1):
        if res.ok or not any(m in res.stderr for m in _BUS_TIMEOUT):
            break
        time.sleep(10)
        res = guest.run(argv, sudo=True, timeout=120)
    return res


def _cmd_error(check: LiveCheck, res: CommandResult, expected: str) -> CheckResult:
    return check.result(
        Status.ERROR,
        expected,
        f"exit {res.returncode}: {(res.stderr or res.stdout).strip()[-400:]}",
        res.argv[0],
    )


@dataclass
class SysctlCheck(LiveCheck):
    id: str = "live.sysctl"
    title: str = "kernel parameters in effect equal the profile's sysctl controls"

    def run(self, guest: Guest, ctx: Context) -> CheckResult:
        want = ctx.expect.sysctl
        if not want:
            return self.result(Status.NOT_APPLICABLE, "no sysctl controls", "-", "-")
        res = guest.run(["sysctl", *sorted(want)], sudo=True, timeout=60)
        if res.returncode in (-1, 255):  # ssh or the timeout, not sysctl (unknown key: 1)
            return _cmd_error(self, res, "sysctl prints the values")
        got: dict[str, str] = {}
        for line in res.stdout.splitlines():
            k, sep, v = line.partition("=")
            if sep:
                got[normalise_key(k)] = normalise_value(v)
        wrong: dict[str, str] = {}
        excepted: dict[str, str] = {}
        for key, (value, control) in sorted(want.items()):
            observed = got.get(key, "missing")
            if observed != value:
                why = ctx.expect.exceptions.get(control)
                (excepted if why else wrong)[key] = f"{observed} (want {value}, {control})"
        status = Status.FAIL if wrong else (Status.EXCEPTED if excepted else Status.PASS)
        observed = (
            "; ".join(f"{k}={v}" for k, v in {**wrong, **excepted}.items())
            or f"all {len(want)} keys as expected"
        )
        return self.result(
            status,
            f"{len(want)} keys: " + ", ".join(f"{k}={v}" for k, (v, _) in sorted(want.items())),
            observed,
            res.argv[0],
            {"observed": got, "wrong": wrong, "excepted": excepted},
        )


@dataclass
class AuditRulesCheck(LiveCheck):
    id: str = "live.audit-rules"
    title: str = "loaded audit rules (auditctl -l) equal the image's /etc/audit/rules.d"

    def run(self, guest: Guest, ctx: Context) -> CheckResult:
        res = guest.run(["auditctl", "-l"], sudo=True, timeout=60)
        if not res.ok:
            return _cmd_error(self, res, "auditctl -l lists the rules")
        listed = parse_auditctl_list(res.stdout)
        # canonical form -> the line as written (rules file) or as listed (auditctl -l)
        intended_by = {canonical_audit_rule(r): r for r in ctx.expect.audit_rules}
        loaded_by = {canonical_audit_rule(r): r for r in listed}
        intended_by.pop(None, None)
        loaded_by.pop(None, None)
        loaded = canonical_audit_rules(listed)
        intended = canonical_audit_rules(ctx.expect.audit_rules)
        missing = [intended_by[c] for c in sorted(set(intended) - set(loaded))]
        extra = [loaded_by[c] for c in sorted(set(loaded) - set(intended))]
        ok = not missing and not extra and len(loaded) == len(intended)
        return self.result(
            _fail_or_pass(ok),
            f"{len(intended)} rules from {', '.join(ctx.expect.audit_rules_files) or 'none'}",
            f"{len(loaded)} rules loaded; missing {len(missing)}, unexpected {len(extra)}",
            res.argv[0],
            {"missing": missing, "unexpected": extra},
        )


@dataclass
class AuditImmutableCheck(LiveCheck):
    id: str = "live.audit-immutable"
    title: str = "audit configuration is immutable until reboot (auditctl -s: enabled 2)"

    def run(self, guest: Guest, ctx: Context) -> CheckResult:
        res = guest.run(["auditctl", "-s"], sudo=True, timeout=60)
        if not res.ok:
            return _cmd_error(self, res, "enabled 2")
        st = parse_auditctl_status(res.stdout)
        enabled = st.get("enabled", "missing")
        return self.result(
            _fail_or_pass(enabled == "2"),
            "enabled 2",
            f"enabled {enabled}; lost {st.get('lost', '?')}; backlog_limit "
            f"{st.get('backlog_limit', '?')}",
            res.argv[0],
            st,
        )


_MOUNT_FLAGS = frozenset({"nodev", "nosuid", "noexec", "ro"})


@dataclass
class MountOptionsCheck(LiveCheck):
    id: str = "live.mount-options"
    title: str = "separate filesystems are mounted with the profile's options"

    def run(self, guest: Guest, ctx: Context) -> CheckResult:
        mounts = ctx.expect.mounts
        # the whole table: findmnt takes at most one source and one target as arguments
        res = guest.run(["findmnt", "-rn", "-o", "TARGET,OPTIONS"], sudo=True, timeout=60)
        if not res.ok:
            return _cmd_error(self, res, "findmnt lists the mounts")
        got = {k: v for k, v in parse_findmnt(res.stdout).items() if k in mounts}
        bad: dict[str, str] = {}
        for mp, options in mounts.items():
            want = {o for o in options if o in _MOUNT_FLAGS}
            if mp not in got:
                bad[mp] = "not mounted"
            elif not want <= got[mp]:
                bad[mp] = "missing " + ",".join(sorted(want - got[mp]))
        return self.result(
            _fail_or_pass(not bad),
            "; ".join(
                f"{mp}: {','.join(o for o in opts if o in _MOUNT_FLAGS)}"
                for mp, opts in mounts.items()
            ),
            "; ".join(f"{k}: {v}" for k, v in bad.items()) or "all mounted with their options",
            res.argv[0],
            {"observed": {k: sorted(v) for k, v in got.items()}},
        )


@dataclass
class SshdConfigCheck(LiveCheck):
    id: str = "live.sshd-config"
    title: str = "sshd's effective configuration (sshd -T) has the profile's values"

    def run(self, guest: Guest, ctx: Context) -> CheckResult:
        res = guest.run(["sshd", "-T"], sudo=True, timeout=60)
        if not res.ok:
            return _cmd_error(self, res, "sshd -T prints the configuration")
        got = parse_sshd_t(res.stdout)
        bad: dict[str, str] = {}
        skipped: list[str] = []
        for key, value in sorted(ctx.expect.sshd.items()):
            match = sshd_value_matches(key, value, got.get(key, []))
            if match is None:
                skipped.append(key)
            elif not match:
                bad[key] = " ".join(got.get(key, ["(absent)"]))
        return self.result(
            _fail_or_pass(not bad),
            f"{len(ctx.expect.sshd)} settings: "
            + ", ".join(f"{k} {v}" for k, v in sorted(ctx.expect.sshd.items())),
            "; ".join(f"{k} {v}" for k, v in bad.items()) or "all as expected",
            res.argv[0],
            {"wrong": bad, "not_comparable": skipped},
        )


@dataclass
class ListeningSocketsCheck(LiveCheck):
    """Only the SSH port is reachable from the network. Also allowed, with their reason:
    sockets bound to loopback addresses (chrony's command port, systemd-resolved's stub,
    containerd's API): nothing outside the host can connect to them; and the DHCP client's
    UDP port 68 bound to one interface's own address (systemd-networkd): it receives the
    replies to the host's own lease requests and accepts no connections. A listener on
    every address is allowed only for the SSH port."""

    id: str = "live.listening-sockets"
    title: str = "only the SSH port listens on a non-loopback address"
    extra_allowed: tuple[tuple[str, int], ...] = ()  # (proto, port) an integration adds

    def run(self, guest: Guest, ctx: Context) -> CheckResult:
        res = guest.run(["ss", "-Htlnup"], sudo=True, timeout=60)
        if not res.ok:
            return _cmd_error(self, res, "ss lists the sockets")
        socks = parse_ss(res.stdout)
        allowed = {("tcp", ctx.expect.ssh_port), *self.extra_allowed}
        bad = [
            s
            for s in socks
            if not s.loopback
            and (s.proto, s.port) not in allowed
            and not (s.proto == "udp" and s.port == 68 and s.interface)
        ]
        return self.result(
            _fail_or_pass(not bad),
            f"tcp/{ctx.expect.ssh_port} (sshd) on any address; anything else on loopback only",
            "; ".join(map(str, bad)) or "; ".join(map(str, socks)),
            res.argv[0],
            {"sockets": [str(s) for s in socks], "not_allowed": [str(s) for s in bad]},
        )


@dataclass
class SetidFilesCheck(LiveCheck):
    id: str = "live.setid-files"
    title: str = "SUID/SGID files on the running image equal the build's inventory"

    def run(self, guest: Guest, ctx: Context) -> CheckResult:
        argv = ["find", *ctx.expect.filesystems, "-xdev", "-type", "f", "-perm", "/6000"]
        res = guest.run(argv, sudo=True, timeout=300)
        if res.returncode not in (0, 1):
            return _cmd_error(self, res, "find lists the files")
        found = {ln.strip() for ln in res.stdout.splitlines() if ln.strip()}
        want = ctx.expect.setid_files
        extra, missing = sorted(found - want), sorted(want - found)
        return self.result(
            _fail_or_pass(not extra and not missing),
            f"{len(want)} files: " + ", ".join(sorted(want)),
            f"{len(found)} files; not in the inventory: {', '.join(extra) or 'none'}; "
            f"missing: {', '.join(missing) or 'none'}",
            res.argv[0],
            {"unexpected": extra, "missing": missing},
        )


@dataclass
class HostKeysCheck(LiveCheck):
    """No shared SSH host keys: the gold image carries none, and the ones the running host
    has were written after this boot started (generated at first boot)."""

    id: str = "live.ssh-host-keys"
    title: str = "SSH host keys were generated at this boot, none came with the image"

    def run(self, guest: Guest, ctx: Context) -> CheckResult:
        res = guest.run(
            "stat -c '%n %Y' /etc/ssh/ssh_host_*_key; grep '^btime ' /proc/stat",
            sudo=True,
            timeout=60,
        )
        if res.returncode in (-1, 255):
            return _cmd_error(self, res, "stat prints the host keys' times")
        keys: dict[str, int] = {}
        btime = None
        for line in res.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "btime" and parts[1].isdigit():
                btime = int(parts[1])
            elif len(parts) == 2 and parts[1].isdigit():
                keys[parts[0]] = int(parts[1])
        old = sorted(k for k, m in keys.items() if btime is None or m < btime)
        image = ctx.expect.image_host_keys
        ok = bool(keys) and not old and not image and btime is not None
        return self.result(
            _fail_or_pass(ok),
            "host keys exist, modified after boot time, none in the gold image",
            f"{len(keys)} keys; boot time {btime}; older than boot: {', '.join(old) or 'none'}; "
            f"in the gold image: {', '.join(image) or 'none'}",
            res.argv[0],
            {"keys": keys, "btime": btime},
        )


@dataclass(frozen=True)
class UnitState:
    id: str
    active: str
    sub: str
    type: str
    result: str
    condition: str

    @property
    def healthy(self) -> bool:
        if self.active == "active":
            return True
        # a oneshot that ran and exited, or a unit whose condition said "not needed here"
        if self.active == "inactive" and self.result == "success":
            return self.type == "oneshot" or self.condition == "no"
        return False


def parse_systemctl_show(text: str) -> list[UnitState]:
    out: list[UnitState] = []
    for block in text.strip().split("\n\n"):
        kv = dict(ln.split("=", 1) for ln in block.splitlines() if "=" in ln)
        if "Id" in kv:
            out.append(
                UnitState(
                    kv["Id"],
                    kv.get("ActiveState", ""),
                    kv.get("SubState", ""),
                    kv.get("Type", ""),
                    kv.get("Result", ""),
                    kv.get("ConditionResult", ""),
                )
            )
    return out


def parse_unit_files(text: str) -> list[str]:
    """``systemctl list-unit-files --state=enabled --no-legend`` -> unit names (no templates)."""
    units = []
    for line in text.splitlines():
        parts = line.split()
        if parts and "@." not in parts[0]:
            units.append(parts[0])
    return units


_SHOW_PROPS = "Id,ActiveState,SubState,Type,Result,ConditionResult"


@dataclass
class EnabledUnitsActiveCheck(LiveCheck):
    id: str = "live.enabled-units-active"
    title: str = "every enabled service, socket and timer is active (or ran and exited cleanly)"
    late: ClassVar[bool] = True  # after the AIDE check has waited out the first-boot job

    def run(self, guest: Guest, ctx: Context) -> CheckResult:
        lst = _systemctl(
            guest,
            [
                "systemctl",
                "list-unit-files",
                "--state=enabled",
                "--type=service,socket,timer",
                "--no-legend",
                "--no-pager",
                "--plain",
            ],
        )
        if not lst.ok:
            return _cmd_error(self, lst, "systemctl lists the enabled units")
        units = parse_unit_files(lst.stdout)
        show = _systemctl(guest, ["systemctl", "show", "--no-pager", "-p", _SHOW_PROPS, *units])
        states = parse_systemctl_show(show.stdout)
        bad = [s for s in states if not s.healthy]
        return self.result(
            _fail_or_pass(not bad and len(states) == len(units)),
            f"{len(units)} enabled units active",
            "; ".join(f"{s.id} {s.active}/{s.sub} ({s.result})" for s in bad)
            or f"all {len(states)} healthy",
            f"{lst.argv[0]}; {show.argv[0]}",
            {"units": {s.id: f"{s.active}/{s.sub}" for s in states}},
        )


@dataclass
class NoFailedUnitsCheck(LiveCheck):
    id: str = "live.no-failed-units"
    title: str = "no systemd unit has failed (systemctl --failed is empty)"
    late: ClassVar[bool] = True  # the first-boot job's own outcome counts too

    def run(self, guest: Guest, ctx: Context) -> CheckResult:
        res = _systemctl(guest, ["systemctl", "--failed", "--no-legend", "--no-pager", "--plain"])
        if not res.ok:
            return _cmd_error(self, res, "systemctl lists failed units")
        failed = [ln.split()[0] for ln in res.stdout.splitlines() if ln.split()]
        return self.result(
            _fail_or_pass(not failed),
            "no failed units",
            ", ".join(failed) or "none",
            res.argv[0],
            {"failed": failed},
        )


@dataclass
class UnitActiveCheck(LiveCheck):
    """One unit is active (for an integration: its service)."""

    unit: str = ""
    id: str = ""
    title: str = ""

    def __post_init__(self) -> None:
        self.id = self.id or f"live.unit-active.{self.unit}"
        self.title = self.title or f"{self.unit} is active"

    def run(self, guest: Guest, ctx: Context) -> CheckResult:
        res = guest.run(
            ["systemctl", "show", "--no-pager", "-p", _SHOW_PROPS, self.unit],
            sudo=True,
            timeout=60,
        )
        states = parse_systemctl_show(res.stdout)
        st = states[0] if states else None
        return self.result(
            _fail_or_pass(st is not None and st.active == "active"),
            "active",
            f"{st.active}/{st.sub} ({st.result})" if st else "unknown unit",
            res.argv[0],
        )


@dataclass
class PathCheck(LiveCheck):
    """A path exists with a mode and owner (for an integration: its log directory)."""

    path: str = ""
    mode: int | None = None
    owner: str | None = None
    group: str | None = None
    id: str = ""
    title: str = ""

    def __post_init__(self) -> None:
        self.id = self.id or f"live.path.{self.path}"
        self.title = self.title or f"{self.path} exists with its mode and owner"

    def run(self, guest: Guest, ctx: Context) -> CheckResult:
        res = guest.run(["stat", "-c", "%a %U %G %F", self.path], sudo=True, timeout=60)
        want = " ".join(
            x
            for x in (
                f"mode {self.mode:o}" if self.mode is not None else "",
                f"owner {self.owner}" if self.owner else "",
                f"group {self.group}" if self.group else "",
            )
            if x
        )
        if not res.ok:
            return self.result(Status.FAIL, want or "exists", res.stderr.strip(), res.argv[0])
        mode, owner, group = res.stdout.split()[:3]
        ok = (
            (self.mode is None or int(mode, 8) == self.mode)
            and (self.owner is None or owner == self.owner)
            and (self.group is None or group == self.group)
        )
        return self.result(
            _fail_or_pass(ok),
            want or "exists",
            f"mode {mode} owner {owner} group {group}",
            res.argv[0],
        )


AIDE_INIT_UNIT = "goldsmith-aide-init.service"
AIDE_DB = "/var/lib/aide/aide.db"


@dataclass
class AideBaselineCheck(LiveCheck):
    """The first-boot unit (aide.first-boot-baseline) created the host's AIDE database.

    The unit runs at idle priority, so under TCG it may still be running when the checks
    start: the check waits for it (up to ``wait_s``) before it looks at the database.
    """

    id: str = "live.aide-baseline"
    title: str = "the first boot created this host's AIDE baseline database (0600, root)"
    wait_s: int = 1200
    late: ClassVar[bool] = True  # the baseline takes ~90 s of a TCG guest at idle priority

    def run(self, guest: Guest, ctx: Context) -> CheckResult:
        enabled = guest.run(["systemctl", "is-enabled", AIDE_INIT_UNIT], sudo=True, timeout=60)
        if enabled.stdout.strip() != "enabled":
            return self.result(
                Status.NOT_APPLICABLE,
                f"{AIDE_INIT_UNIT} enabled",
                f"{AIDE_INIT_UNIT}: {enabled.stdout.strip() or enabled.stderr.strip()} "
                "(the profile does not create the baseline at first boot)",
                enabled.argv[0],
            )
        # poll until the start job is over (activating -> inactive/failed)
        waited = guest.run(
            f"for i in $(seq {self.wait_s // 5}); do "
            f"s=$(systemctl show -p ActiveState --value {AIDE_INIT_UNIT}); "
            '[ "$s" = activating ] || break; sleep 5; done; '
            f"systemctl show --no-pager -p {_SHOW_PROPS} {AIDE_INIT_UNIT}",
            sudo=True,
            timeout=self.wait_s + 60,
        )
        states = parse_systemctl_show(waited.stdout)
        st = states[0] if states else None
        db = guest.run(["stat", "-c", "%a %U %G %s", AIDE_DB], sudo=True, timeout=60)
        # the boot test boots the image for the first time: the unit must have run (a skipped
        # condition means the image shipped a database, which every host would share)
        unit_ok = (
            st is not None
            and st.active == "inactive"
            and st.result == "success"
            and st.condition == "yes"
        )
        fields = db.stdout.split()
        db_ok = db.ok and len(fields) == 4 and fields[:3] == ["600", "root", "root"]
        db_ok = db_ok and int(fields[3]) > 0
        unit_said = (
            f"{st.active}/{st.sub} ({st.result}, condition {st.condition or '?'})"
            if st
            else "unknown unit"
        )
        db_said = (
            f"{AIDE_DB}: mode {fields[0]} owner {fields[1]} group {fields[2]}, {fields[3]} bytes"
            if db.ok and len(fields) == 4
            else f"{AIDE_DB}: {db.stderr.strip() or 'no answer'}"
        )
        return self.result(
            _fail_or_pass(unit_ok and db_ok),
            f"{AIDE_INIT_UNIT} ran and succeeded; {AIDE_DB} exists, non-empty, 0600 root:root",
            f"{AIDE_INIT_UNIT} {unit_said}; {db_said}",
            f"{enabled.argv[0]}; {waited.argv[0]}; {db.argv[0]}",
            {"unit": unit_said, "database": db_said},
        )


APPARMOR_PROFILES = "/sys/kernel/security/apparmor/profiles"


def parse_apparmor_profiles(text: str) -> dict[str, str]:
    """``name (mode)`` lines of the kernel's loaded-profile list -> {name: mode}."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, rest = line.strip().rpartition(" (")
        if sep and rest.endswith(")"):
            out[name] = rest[:-1]
    return out


class AppArmorProfilesCheck(LiveCheck):
    """Every AppArmor profile the kernel has loaded enforces (none in complain, kill,
    unconfined or prompt mode): what the offline ``apparmor-profiles`` rule prepares, as the
    running kernel sees it after apparmor.service and Docker loaded theirs."""

    id: str = "live.apparmor-profiles"
    title: str = "every loaded AppArmor profile is in enforce mode"

    def run(self, guest: Guest, ctx: Context) -> CheckResult:
        res = guest.run(["cat", APPARMOR_PROFILES], sudo=True, timeout=60)
        if not res.ok:
            if res.returncode in (-1, 255):
                return _cmd_error(self, res, f"{APPARMOR_PROFILES} is read")
            pkg = guest.run(["test", "-d", "/etc/apparmor.d"], timeout=60)
            if not pkg.ok:
                return self.result(
                    Status.NOT_APPLICABLE,
                    "AppArmor profiles in enforce mode",
                    "AppArmor is not installed in the image (no /etc/apparmor.d)",
                    f"{res.argv[0]}; {pkg.argv[0]}",
                )
            return self.result(
                Status.FAIL,
                "AppArmor active, every profile in enforce mode",
                f"{APPARMOR_PROFILES}: {res.stderr.strip() or 'unreadable'} (AppArmor is "
                "installed but not the kernel's active LSM)",
                res.argv[0],
            )
        loaded = parse_apparmor_profiles(res.stdout)
        bad = {n: m for n, m in sorted(loaded.items()) if m in MODE_FLAGS}
        listed = ", ".join(f"{n} ({m})" for n, m in list(bad.items())[:20])
        more = f" and {len(bad) - 20} more" if len(bad) > 20 else ""
        return self.result(
            _fail_or_pass(not bad and bool(loaded)),
            "at least one profile loaded; every loaded profile in enforce mode",
            f"{len(bad)} of {len(loaded)} not enforcing: {listed}{more}"
            if bad
            else f"{len(loaded)} profiles loaded, all enforcing",
            res.argv[0],
            {"profiles": loaded, "not_enforcing": bad},
        )


def split_late(checks: Sequence[LiveCheck]) -> tuple[list[LiveCheck], list[LiveCheck]]:
    """``checks`` in two runs, order kept: those to run at once, and the :attr:`LiveCheck.late`
    ones, which the boot test runs after the guest scanners."""
    return [c for c in checks if not c.late], [c for c in checks if c.late]


def default_checks() -> list[LiveCheck]:
    """The image's own live checks, in the order they are listed (see :func:`split_late`)."""
    return [
        SysctlCheck(),
        AuditRulesCheck(),
        AuditImmutableCheck(),
        MountOptionsCheck(),
        SshdConfigCheck(),
        ListeningSocketsCheck(),
        SetidFilesCheck(),
        HostKeysCheck(),
        AideBaselineCheck(),
        AppArmorProfilesCheck(),
        EnabledUnitsActiveCheck(),
        NoFailedUnitsCheck(),
    ]
