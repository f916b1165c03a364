"""The boot test: boot a throwaway copy of the gold image, log in over SSH, prove it live.

Order (every step bounded by a timeout; on any exit the VM is killed, the loop device and
mounts of the injection are gone already, the per-run key is deleted and the copy removed):

1. sha256 of the gold disk; sparse copy; boot-test account injected into the copy
   (:mod:`goldsmith.boot.inject`: what is booted is the gold image plus that account);
2. QEMU (KVM where usable, TCG otherwise), user-mode networking, one forward
   127.0.0.1:<free port> -> the guest's SSH port from the profile; wait for the console's
   login prompt (a kernel panic on the console ends the wait at once), then for an SSH
   login (bounded retries);
3. SSH policy proven from outside: the key login works; a password-only attempt is refused
   and the server does not offer password methods; root is refused although the copy has the
   test key in root's authorized_keys;
4. live checks (:mod:`goldsmith.boot.checks`), except the ``late`` ones;
5. scanners in the guest: ``goldsmith scan --host --json`` from a zipapp; then the late
   live checks (those waiting for a first-boot job, the AIDE baseline, which ran meanwhile);
   then Lynis (pinned, from Debian) and OpenSCAP (the build host's oscap, carried in; a run
   that crashes by signal is run once more and says so), side by side;
6. ACPI power-off (then kill), gold sha256 again; ``boottest.json`` in the output directory.

``passed`` is true when the VM booted, SSH worked, every check passed (or is excepted / not
applicable) and the gold image is unchanged. Scanner findings are recorded as artifacts and
summaries but do not decide ``passed``: the gates count them (``goldsmith gate``).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from goldsmith.boot.checks import (
    CheckResult,
    Context,
    Expectations,
    LiveCheck,
    default_checks,
    expectations_from_profile,
    parse_sshd_t,
    profile_mounts,
    run_checks,
    split_late,
)
from goldsmith.boot.inject import TestCopy, prepare_test_copy, sha256_file
from goldsmith.boot.qemu import LOGIN_RE, running_vm
from goldsmith.boot.ssh import CommandResult, SshClient, TestKey, offered_methods, test_key
from goldsmith.controls.catalogue import load_catalogue
from goldsmith.errors import BootTestError, GoldsmithError
from goldsmith.model.profile import ExceptionEntry, Profile
from goldsmith.model.records import Status

log = logging.getLogger(__name__)

SCHEMA = "goldsmith.boottest/v1"
RESULT_NAME = "boottest.json"
ARTIFACT_DIR = "boottest"
GUEST_DIR = "/var/lib/goldsmith-boottest"
GUEST_PROFILE = "profile.yaml"  # JSON, which YAML reads
PASSWORD_METHODS = ("password", "keyboard-interactive")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class BoottestOptions:
    timeout: float = 600  # QEMU start to the login prompt
    ssh_timeout: float = 240  # login prompt to a working SSH login
    accel: str = "auto"
    memory_mb: int = 2048
    cpus: int = 2
    cache_dir: Path = Path("/var/cache/goldsmith")
    work_root: Path = Path("/var/tmp")
    scanners: bool = True
    #: Lynis inside the guest (with ``scanners``): the real index, but 10+ minutes under TCG
    guest_lynis: bool = True
    #: OpenSCAP CIS L2 inside the guest (the host's oscap carried in; see oscap_bundle)
    guest_openscap: bool = True
    scanner_timeout: float = 3600  # per in-guest scanner; TCG on a busy host needs ~30 min
    powerdown_timeout: float = 120
    keep_copy: bool = False
    #: checks an integration adds (its service, its log directory)
    extra_checks: Sequence[LiveCheck] = ()
    #: the guest's SSH port; None: the profile's (sshd.port)
    ssh_port: int | None = None
    #: the profile's exceptions with those of its exceptions_file (``load_exceptions``);
    #: None: the profile's own list (a profile naming an exceptions_file then needs this)
    exceptions: tuple[ExceptionEntry, ...] | None = None


@dataclass
class BoottestResult:
    passed: bool
    doc: dict[str, Any]
    path: Path
    checks: list[CheckResult] = field(default_factory=list)


def _find_gold(out_dir: Path) -> Path:
    if out_dir.is_file():
        return out_dir
    for pattern in ("*.raw", "*.qcow2"):
        found = sorted(p for p in out_dir.glob(pattern) if not p.name.startswith("."))
        if found:
            return found[0]
    raise BootTestError(
        f"{out_dir}: no disk image (*.raw or *.qcow2)",
        hint="build one with: goldsmith build (disk images are on by default)",
    )


def setid_from_inventory(path: Path) -> frozenset[str]:
    doc = json.loads(path.read_text())
    return frozenset(
        f["path"]
        for f in doc.get("files", [])
        if f.get("type") == "file" and int(str(f.get("mode", "0")), 8) & 0o6000
    )


def build_expectations(
    profile: Profile, out_dir: Path, copy: TestCopy, *, ssh_port: int | None
) -> Expectations:
    port, sshd, sysctl = expectations_from_profile(profile, load_catalogue())
    inventory = out_dir / "final-inventory.json"
    if not inventory.is_file():
        raise BootTestError(
            f"{inventory} is missing: the SUID/SGID list is compared with it",
            hint="boottest runs on a build output directory",
        )
    today = dt.datetime.now(dt.UTC).date()
    return Expectations(
        ssh_port=ssh_port or port,
        sshd=sshd,
        sysctl=sysctl,
        mounts=profile_mounts(profile),
        audit_rules=copy.facts.audit_rules,
        audit_rules_files=copy.facts.audit_rules_files,
        setid_files=setid_from_inventory(inventory),
        filesystems=("/", *(p.mountpoint for p in profile.image.partitions if p.fs == "ext4")),
        image_host_keys=copy.facts.ssh_host_keys,
        exceptions={e.control: e.justification for e in profile.exceptions if e.expires >= today},
    )


class RecordingGuest:
    """The SSH client as a ``Guest`` that also keeps every command's raw output
    (``boottest/commands.jsonl``): the evidence behind each check's observed value."""

    def __init__(self, client: SshClient, path: Path) -> None:
        self.client = client
        self.path = path

    def run(
        self, command: Sequence[str] | str, *, timeout: float = 120, sudo: bool = False
    ) -> CommandResult:
        res = self.client.run(command, timeout=timeout, sudo=sudo)
        record = {
            "command": res.argv[0],
            "exit": res.returncode,
            "seconds": res.seconds,
            "stdout": res.stdout,
            "stderr": res.stderr,
        }
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        return res


def _result(cid: str, title: str, ok: bool, expected: str, observed: str, how: str) -> CheckResult:
    return CheckResult(cid, title, Status.PASS if ok else Status.FAIL, expected, observed, how)


@dataclass(frozen=True)
class Fail2banExpectation:
    """The profile's fail2ban sshd jail: the boot test proves it bans after the refusals."""

    maxretry: int
    port: int


def ssh_policy_checks(
    client: SshClient, login_seconds: float, fail2ban: Fail2banExpectation | None = None
) -> list[CheckResult]:
    """Key login works; password methods are neither offered nor accepted; root is refused.

    The refused logins are authentication failures, so this runs after every other check
    over SSH: with ``fail2ban`` (the profile's jail) it then goes on failing until the source
    address is banned and proves that the next key login, which worked before, is refused.
    """
    jail = client.run(["fail2ban-client", "status", "sshd"], sudo=True, timeout=60)
    out = [
        _result(
            "ssh.key-login",
            "SSH login with a key works on the hardened port",
            True,
            f"login as {client.user} with an ed25519 key on port {client.port}",
            f"logged in (key {client.key.fingerprint}) after {login_seconds:.1f} s of retries",
            " ".join(client.base_argv()[:3]) + " ... true",
        )
    ]
    sshd_t = client.run(["sshd", "-T"], sudo=True, timeout=60)
    conf = parse_sshd_t(sshd_t.stdout)

    pw = client.run(
        ["true"],
        identity=False,
        options=(
            "PreferredAuthentications=password,keyboard-interactive",
            "PubkeyAuthentication=no",
            "NumberOfPasswordPrompts=0",
        ),
        timeout=60,
    )
    methods = offered_methods(pw.stderr)
    pa = " ".join(conf.get("passwordauthentication", ["?"]))
    kbd = " ".join(conf.get("kbdinteractiveauthentication", ["?"]))
    refused = pw.returncode == 255 and methods is not None
    offered_pw = methods is not None and any(m in methods for m in PASSWORD_METHODS)
    out.append(
        _result(
            "ssh.password-refused",
            "password authentication is refused and not offered",
            refused and not offered_pw and pa == "no" and kbd == "no",
            "login refused; server offers no password/keyboard-interactive; sshd -T: "
            "passwordauthentication no, kbdinteractiveauthentication no",
            f"exit {pw.returncode}; offered methods: {','.join(methods or ()) or 'unknown'}; "
            f"sshd -T: passwordauthentication {pa}, kbdinteractiveauthentication {kbd}",
            "ssh -o PreferredAuthentications=password,keyboard-interactive "
            "-o PubkeyAuthentication=no ...; sshd -T",
        )
    )
    root = client.run(["true"], user="root", timeout=60)
    prl = " ".join(conf.get("permitrootlogin", ["?"]))
    out.append(
        _result(
            "ssh.root-refused",
            "root cannot log in over SSH, even with an authorized key",
            root.returncode == 255 and "Permission denied" in root.stderr and prl == "no",
            "root@ with the test key (in root's authorized_keys of the copy) refused; "
            "sshd -T: permitrootlogin no",
            f"exit {root.returncode}: {root.stderr.strip()[-200:] or 'logged in'}; "
            f"sshd -T: permitrootlogin {prl}",
            "ssh -i <test key> root@...; sshd -T",
        )
    )
    if fail2ban is not None:
        out.append(_fail2ban_ban_check(client, fail2ban, jail))
    return out


#: what ssh prints when the connection itself fails (a ban rejects or drops the packets)
_CONNECT_FAILED = ("Connection refused", "Connection reset", "Connection closed", "timed out")


def _fail2ban_ban_check(
    client: SshClient, f2b: Fail2banExpectation, jail: CommandResult
) -> CheckResult:
    jail_up = jail.ok and "Status for the jail: sshd" in jail.stdout
    attempts = 0
    banned_after: int | None = None
    last = ""
    # each refused root login above already counted; fail up to maxretry + 3 more times
    for attempts in range(1, f2b.maxretry + 4):
        res = client.run(["true"], user="root", timeout=40)
        last = res.stderr.strip()[-200:]
        if res.returncode == 255 and any(s in last for s in _CONNECT_FAILED):
            banned_after = attempts
            break
        time.sleep(1.0)
    probe = client.run(["true"], timeout=40) if banned_after is not None else None
    key_refused = probe is not None and probe.returncode != 0
    ok = jail_up and banned_after is not None and key_refused
    jail_text = " ".join(jail.stdout.split())[:300] if jail.ok else f"exit {jail.returncode}"
    observed = f"jail before the refusals: {jail_text}; " + (
        f"connection refused after {banned_after} more failed root login(s) ({last}); "
        f"key login for {client.user} then: "
        f"{'refused' if key_refused else 'still works'}"
        if banned_after is not None
        else f"never banned after {attempts} more failed root logins (last: {last})"
    )
    return _result(
        "ssh.fail2ban-bans",
        "fail2ban bans a source that keeps failing SSH logins on the hardened port",
        ok,
        f"jail sshd active on port {f2b.port}; after at most maxretry ({f2b.maxretry}) "
        "failures the source is banned, so even a valid key login is refused",
        observed,
        "sudo fail2ban-client status sshd; repeated ssh root@... (refused); ssh with the test "
        "key (must now fail to connect)",
    )


# --- scanners in the guest -----------------------------------------------------------------


def _tar_of(members: Sequence[tuple[Path, str]]) -> bytes:
    """A tar stream of (local path, name in the archive), owned by root."""

    def root_owned(ti: tarfile.TarInfo) -> tarfile.TarInfo:
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        return ti

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, name in members:
            tar.add(path, arcname=name, filter=root_owned)
    return buf.getvalue()


def _scan_goldsmith(
    client: SshClient, profile: Profile, opts: BoottestOptions, art: Path
) -> dict[str, Any]:
    from goldsmith.boot.zipapp import build_zipapp

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="goldsmith-pyz-") as tmp:
        app = build_zipapp(Path(tmp) / "goldsmith.pyz", cache_dir=opts.cache_dir)
        client.push_tar(_tar_of([(app.path, "goldsmith.pyz")]), GUEST_DIR)
    pyz = f"{GUEST_DIR}/goldsmith.pyz"
    info: dict[str, Any] = {
        "zipapp": {"sha256": app.sha256, "python": app.python, "vendored": list(app.pins)},
    }
    helptext = client.run(["python3", pyz, "scan", "--help"], sudo=True, timeout=600)
    if helptext.returncode != 0:
        text = helptext.stderr or helptext.stdout
        said = [ln.strip(" │|") for ln in text.splitlines() if "No such command" in ln]
        info.update(
            status="not_run",
            reason="this goldsmith has no working `scan` command: "
            + (said[0].strip() if said else text.strip()[-300:]),
        )
        return info
    # the profile as resolved on the host (a custom profile file is not in the zipapp), with
    # the exceptions of its exceptions_file inline; none for the boot-test account: it
    # authenticates to sudo with its password (no NOPASSWD), like any admin of the image
    guest_profile = profile.model_dump(mode="json", by_alias=True)
    guest_profile["exceptions"] = [
        e.model_dump(mode="json") for e in _profile_exceptions(profile, opts)
    ]
    guest_profile["exceptions_file"] = None
    with tempfile.TemporaryDirectory(prefix="goldsmith-profile-") as tmp:
        pfile = Path(tmp) / GUEST_PROFILE
        pfile.write_text(json.dumps(guest_profile, indent=1))
        client.push_tar(_tar_of([(pfile, GUEST_PROFILE)]), GUEST_DIR)
    argv = ["python3", pyz, "scan", "--host", "--json"]
    argv += ["--profile", f"{GUEST_DIR}/{GUEST_PROFILE}"]
    res = client.run(argv, sudo=True, timeout=opts.scanner_timeout)
    (art / "guest-scan.json").write_text(res.stdout)
    (art / "guest-scan.stderr").write_text(res.stderr)
    info.update(
        command=res.argv[0],
        exit=res.returncode,
        artifact=str(art / "guest-scan.json"),
        seconds=round(time.monotonic() - t0, 3),
    )
    try:
        doc = json.loads(res.stdout)
    except json.JSONDecodeError:
        info.update(status="error", reason="output is not JSON: " + res.stderr.strip()[-300:])
        return info
    info["status"] = "ran" if res.returncode in (0, 1) else "error"
    if isinstance(doc, dict):
        for key in ("summary", "counts", "totals"):
            if key in doc:
                info["summary"] = doc[key]
                break
    return info


def _profile_exceptions(profile: Profile, opts: BoottestOptions) -> tuple[ExceptionEntry, ...]:
    if opts.exceptions is not None:
        return opts.exceptions
    if profile.exceptions_file is not None:
        raise BootTestError(
            f"the profile names an exceptions_file ({profile.exceptions_file}), but the boot "
            "test was not given its exceptions",
            hint="pass BoottestOptions(exceptions=load_exceptions(loaded))",
        )
    return tuple(profile.exceptions)


def _scan_lynis(client: SshClient, opts: BoottestOptions, art: Path) -> dict[str, Any]:
    from goldsmith.scan.content import ensure_lynis
    from goldsmith.scan.lynis import LOG_NAME, REPORT_NAME, parse_report

    t0 = time.monotonic()
    lynis_dir = ensure_lynis(opts.cache_dir)
    client.push_tar(_tar_of([(lynis_dir, "lynis")]), GUEST_DIR)
    cmd = (
        f"cd {GUEST_DIR}/lynis && ./lynis audit system --usecwd --no-colors --quick "
        f"--auditor goldsmith --logfile {GUEST_DIR}/{LOG_NAME} "
        f"--report-file {GUEST_DIR}/{REPORT_NAME}"
    )
    res = client.run(cmd, sudo=True, timeout=opts.scanner_timeout)
    report = client.run(["cat", f"{GUEST_DIR}/{REPORT_NAME}"], sudo=True, timeout=60)
    logf = client.run(["cat", f"{GUEST_DIR}/{LOG_NAME}"], sudo=True, timeout=60)
    info: dict[str, Any] = {
        "version": lynis_dir.name.split("_", 1)[-1],
        "command": res.argv[0],
        "exit": res.returncode,
        "seconds": round(time.monotonic() - t0, 3),
        "mode": "host (inside the booted image)",
    }
    if not report.ok or not report.stdout.strip():
        info.update(status="error", reason=(res.stderr or res.stdout).strip()[-400:])
        return info
    (art / REPORT_NAME).write_text(report.stdout)
    (art / LOG_NAME).write_text(logf.stdout)
    parsed = parse_report(report.stdout)
    info.update(
        status="ran",
        artifact=str(art / REPORT_NAME),
        hardening_index=parsed.hardening_index,
        tests_performed=parsed.tests_performed,
        warnings=[f"{w.test_id}: {w.message}" for w in parsed.warnings],
        suggestions=len(parsed.suggestions),
    )
    return info


def _scan_openscap(client: SshClient, opts: BoottestOptions, art: Path) -> dict[str, Any]:
    """The host's oscap, carried in (:mod:`goldsmith.boot.oscap_bundle`), CIS L2 Server."""
    from goldsmith.boot.oscap_bundle import bundle_oscap, guest_command
    from goldsmith.scan.content import ensure_ssg_content
    from goldsmith.scan.openscap import (
        CIS_L2_SERVER,
        CRASH_ATTEMPTS,
        CRASH_SIGNALS,
        RuleStatus,
        parse_xccdf_results,
        record_crash,
    )

    if not opts.guest_openscap:
        return {
            "status": "not_run",
            "reason": "OpenSCAP in the guest was turned off for this run (guest_openscap); "
            "the gate uses oscap-chroot on the rootfs",
        }
    t0 = time.monotonic()
    ds = ensure_ssg_content(opts.cache_dir)
    bundle = bundle_oscap(ds)
    base = f"{GUEST_DIR}/oscap"
    push = client.run(
        f"{client.sudo()} mkdir -p -m 0700 {GUEST_DIR} && {client.sudo()} tar -xz -C {GUEST_DIR}",
        input=bundle.data,
        timeout=600,
    )
    if not push.ok:
        raise BootTestError(
            f"copying oscap into the guest failed (exit {push.returncode}): "
            f"{push.stderr.strip()[-300:]}"
        )
    crashes: list[str] = []
    while True:
        res = client.run(
            guest_command(base, CIS_L2_SERVER, ds.name), sudo=True, timeout=opts.scanner_timeout
        )
        # a shell reports a process killed by signal N as exit 128+N
        sig = res.returncode - 128 if res.returncode > 128 else 0
        if sig not in CRASH_SIGNALS or len(crashes) + 1 >= CRASH_ATTEMPTS:
            break
        # the run only reads the guest: run it once more, as for oscap-chroot
        record_crash(crashes, art / "guest-oscap", sig, res.stdout, res.stderr)
    info: dict[str, Any] = {
        "scanner": bundle.oscap_version,
        "carried_libraries": len(bundle.libraries),
        "profile": CIS_L2_SERVER,
        "datastream": ds.name,
        "command": res.argv[0],
        "exit": res.returncode,
        "mode": "host (inside the booted image, the build host's oscap carried in)",
    }
    if crashes:
        info["crashes"] = crashes
    results = client.run(["cat", f"{base}/results.xml"], sudo=True, timeout=120)
    report = client.run(["cat", f"{base}/report.html"], sudo=True, timeout=120)
    info["seconds"] = round(time.monotonic() - t0, 3)
    # oscap: 0 every rule passed, 2 some failed, anything else an error
    if res.returncode not in (0, 2) or not results.ok or not results.stdout.strip():
        info.update(status="error", reason=(res.stderr or res.stdout).strip()[-400:])
        return info
    path = art / "guest-oscap-results.xml"
    path.write_text(results.stdout)
    if report.ok:
        (art / "guest-oscap-report.html").write_text(report.stdout)
    parsed = parse_xccdf_results(path)
    counts = parsed.counts
    info.update(
        status="ran",
        artifact=str(path),
        pass_rate=None if parsed.pass_rate is None else round(parsed.pass_rate * 100, 2),
        counts={str(k): v for k, v in counts.items()},
        failed=[r.short_id for r in parsed.selected if r.result is RuleStatus.FAIL],
    )
    return info


def _scanners(
    client: SshClient,
    profile: Profile,
    opts: BoottestOptions,
    art: Path,
    *,
    between: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """goldsmith's scan in the guest, then ``between()``, then Lynis and OpenSCAP."""
    out: dict[str, Any] = {}
    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("goldsmith", lambda: _scan_goldsmith(client, profile, opts, art)),
        (
            "lynis",
            (lambda: _scan_lynis(client, opts, art))
            if opts.guest_lynis
            else (
                lambda: {
                    "status": "not_run",
                    "reason": "Lynis in the guest was turned off for this run (guest_lynis); "
                    "the gate falls back to the chroot scan's index",
                }
            ),
        ),
        ("openscap", lambda: _scan_openscap(client, opts, art)),
    ]

    def run(name: str, step: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            result = step()
        except GoldsmithError as e:
            result = {"status": "error", "reason": e.message.splitlines()[0]}
        log.info("scanner %s: %s", name, result.get("status"))
        return result

    # goldsmith first (quick); Lynis and OpenSCAP are single-threaded and independent (their
    # own directories and artifacts), so they run side by side on the guest's CPUs
    out["goldsmith"] = run(*steps[0])
    between()
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(run, name, step) for name, step in steps[1:]}
    for name, fut in futures.items():
        out[name] = fut.result()
    return out


# --- the whole test ------------------------------------------------------------------------


def run_boottest(
    out_dir: Path,
    profile: Profile,
    options: BoottestOptions | None = None,
    progress: Progress | None = None,
) -> BoottestResult:
    """Boot-test the image in ``out_dir``; write ``out_dir/boottest.json``; return it.

    Infrastructure problems (a missing tool, an unreadable image) raise GoldsmithError; a
    boot or login that does not happen is a result with ``passed: false`` and the reason.
    """
    opts = options or BoottestOptions()
    say = progress or (lambda _msg: None)
    t_start = time.monotonic()
    out_dir = out_dir.resolve()
    gold = _find_gold(out_dir)
    result_dir = out_dir if out_dir.is_dir() else out_dir.parent
    art = result_dir / ARTIFACT_DIR
    art.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    checks: list[CheckResult] = []
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "passed": False,
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "profile": {"name": profile.name, "version": profile.version},
    }
    error: str | None = None
    opts.work_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="goldsmith-boottest-", dir=opts.work_root))
    try:
        with test_key() as key:
            say("copying the gold image and adding the boot-test account to the copy")
            port_hint, _, _ = expectations_from_profile(profile, load_catalogue())
            allow = _allow_group(profile)
            copy = prepare_test_copy(
                gold,
                profile,
                work,
                key_line=key.public_text,
                fingerprint=key.fingerprint,
                allow_group=allow,
            )
            timings.update(copy.seconds)
            expect = build_expectations(profile, result_dir, copy, ssh_port=opts.ssh_port)
            doc["image"] = {"path": str(gold), "sha256": copy.gold_sha256}
            doc["booted"] = {
                "what": "a throwaway copy of the gold image plus the boot-test account",
                "injection": _asdict(copy.injection),
                "image_facts": _asdict(copy.facts),
            }
            doc["ssh"] = {"guest_port": expect.ssh_port, "profile_port": port_hint}
            try:
                error = _boot_and_check(
                    copy, expect, key, opts, profile, art, doc, timings, checks, say
                )
            finally:
                if not opts.keep_copy:
                    copy.disk.unlink(missing_ok=True)
    finally:
        if not opts.keep_copy:
            shutil.rmtree(work, ignore_errors=True)
    say("hashing the gold image again")
    t0 = time.monotonic()
    after = sha256_file(gold)
    timings["gold_sha256_after"] = round(time.monotonic() - t0, 3)
    unchanged = after == doc["image"]["sha256"]
    doc["image"].update(sha256_after=after, unchanged=unchanged)
    timings["total"] = round(time.monotonic() - t_start, 3)
    doc["checks"] = [c.to_json() for c in checks]
    doc["error"] = error
    doc["timings"] = timings
    doc["passed"] = bool(
        error is None and unchanged and checks and all(c["passed"] for c in doc["checks"])
    )
    doc["summary"] = {
        "checks": len(checks),
        "failed": [c.id for c in checks if c.to_json()["passed"] is False],
    }
    path = result_dir / RESULT_NAME
    path.write_text(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")
    return BoottestResult(passed=doc["passed"], doc=doc, path=path, checks=checks)


def _boot_and_check(
    copy: TestCopy,
    expect: Expectations,
    key: TestKey,
    opts: BoottestOptions,
    profile: Profile,
    art: Path,
    doc: dict[str, Any],
    timings: dict[str, float],
    checks: list[CheckResult],
    say: Progress,
) -> str | None:
    """Boot, SSH, checks, scanners, power-off. Returns an error text, or None."""
    try:
        with running_vm(
            copy.disk,
            accel=opts.accel,
            memory_mb=opts.memory_mb,
            cpus=opts.cpus,
            log_path=art / "console.log",
            snapshot=False,  # the copy is throwaway: let the guest write to it
            hostfwd=[(0, expect.ssh_port)],
        ) as vm:
            doc["accel"] = vm.accel
            doc["console_log"] = str(vm.console_log)
            say(f"booting ({vm.accel}) to the login prompt")
            vm.wait_for(LOGIN_RE, timeout=opts.timeout)
            timings["boot_to_login"] = round(time.monotonic() - vm.started, 3)
            client = SshClient(
                "127.0.0.1",
                vm.ports[expect.ssh_port],
                copy.injection.user,
                key,
                askpass=copy.injection.askpass,
            )
            doc["ssh"]["host_port"] = client.port
            say(f"waiting for SSH on 127.0.0.1:{client.port} (guest port {expect.ssh_port})")
            waited = client.wait_until_ready(timeout=opts.ssh_timeout)
            timings["ssh_ready"] = waited
            say("running the live checks")
            t0 = time.monotonic()
            recorder = RecordingGuest(client, art / "commands.jsonl")
            recorder.path.write_text("")
            now, late = split_late([*default_checks(), *opts.extra_checks])
            checks += run_checks(recorder, Context(expect), now)
            timings["checks"] = round(time.monotonic() - t0, 3)

            def late_checks() -> None:
                # first-boot jobs (the AIDE baseline) ran meanwhile, beside the guest's own
                # goldsmith scan; Lynis and OpenSCAP, which look at their results, come after
                if not late:
                    return
                say("running the live checks that wait for first-boot jobs")
                t = time.monotonic()
                checks.extend(run_checks(recorder, Context(expect), late))
                timings["late_checks"] = round(time.monotonic() - t, 3)

            if opts.scanners:
                say("running goldsmith scan, Lynis and OpenSCAP in the guest")
                t0 = time.monotonic()
                doc["scanners"] = _scanners(client, profile, opts, art, between=late_checks)
                timings["scanners"] = round(
                    time.monotonic() - t0 - timings.get("late_checks", 0.0), 3
                )
            else:
                late_checks()
            # last over SSH: refused logins are failures fail2ban counts (and then bans)
            say("proving the SSH policy (key only, no root, fail2ban)")
            t0 = time.monotonic()
            checks += ssh_policy_checks(client, waited, _fail2ban(profile, expect.ssh_port))
            timings["ssh_policy"] = round(time.monotonic() - t0, 3)
            if not vm.alive:
                # the guest went away under us (panic, reset): say so, with QEMU's view
                rc = vm.proc.poll()
                stderr = vm.qemu_stderr().strip()[-1000:]
                return (
                    f"QEMU exited (status {rc}) during the test; stderr: {stderr or 'empty'}; "
                    f"console (last 20 lines):\n{vm.console.tail(20)}"
                )
            say("powering off")
            t0 = time.monotonic()
            doc["clean_shutdown"] = vm.powerdown(timeout=opts.powerdown_timeout)
            timings["powerdown"] = round(time.monotonic() - t0, 3)
    except BootTestError as e:
        log.warning("boot test: %s", e.message.splitlines()[0])
        return e.diagnostics()
    return None


def _fail2ban(profile: Profile, ssh_port: int) -> Fail2banExpectation | None:
    """The sshd jail the profile enables (control fail2ban.sshd-jail), or None."""
    from goldsmith.model.profile import ControlSettings

    catalogue = load_catalogue()
    cid = "fail2ban.sshd-jail"
    settings = profile.controls.get(cid, ControlSettings())
    if cid not in catalogue.controls or not settings.enabled:
        return None
    rule = catalogue.controls[cid].rule(settings.params)
    context = getattr(rule, "context", None) or {}
    try:
        maxretry = int(str(context.get("maxretry", "5")))
    except ValueError:
        maxretry = 5
    return Fail2banExpectation(maxretry=maxretry, port=ssh_port)


def _allow_group(profile: Profile) -> str | None:
    from goldsmith.model.profile import ControlSettings

    catalogue = load_catalogue()
    cid = "sshd.allow-groups"
    if cid not in catalogue.controls:
        return None
    settings = profile.controls.get(cid, ControlSettings())
    if not settings.enabled:
        return None
    rule = catalogue.controls[cid].rule(settings.params)
    value = getattr(rule, "value", None)
    return str(value).split()[0] if value else None


def _asdict(obj: Any) -> dict[str, Any]:
    import dataclasses

    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(obj).items()}


def recorded_profile(out_dir: Path) -> str:
    """The profile a build output directory was built from (its build.json)."""
    base = out_dir if out_dir.is_dir() else out_dir.parent
    record = base / "build.json"
    try:
        sources = json.loads(record.read_text())["profile"]["sources"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BootTestError(
            f"cannot tell which profile built {base}: {record} unreadable ({e})",
            hint="name it with --profile",
        ) from e
    first = str(sources[0]) if sources else ""
    prefix = "goldsmith:profiles/"
    if first.startswith(prefix) and first.endswith(".yaml"):
        return first[len(prefix) : -len(".yaml")]
    return first
