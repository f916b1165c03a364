"""A throwaway copy of the gold disk with a boot-test account; the gold image is never touched.

What is booted by ``goldsmith boottest`` is **the gold image plus this test account**, nothing
else: ``cp --sparse=always`` of the raw image (a qcow2-only build is converted with
``qemu-img convert``) into a work directory, then, on the copy's root filesystem (attached with
``losetup -P``; the partition number comes from ``compute_layout``):

- a user (``gsboottest`` by default) in the profile's SSH allow group (when the image has the
  group), with the per-run ed25519 public key in ``~/.ssh/authorized_keys`` (SSH logins are
  key-only, as sshd's policy demands) and a fresh random password for sudo, made per boot
  test with :mod:`secrets` and hashed by the image's own ``chpasswd`` in a chroot, with the
  image's ``ENCRYPT_METHOD`` from ``login.defs`` (the cleartext goes over stdin, never on a
  command line). The shadow ageing fields are the image's own policy (``PASS_*`` of
  ``login.defs``, ``INACTIVE`` of ``/etc/default/useradd``) and are checked after the change;
- ``~/goldsmith-askpass`` (0700, the user's): prints that password for ``sudo -A``. It is the
  only place the cleartext is kept; nothing on the host (no artifact, log or record) holds it;
- the same public key in ``/root/.ssh/authorized_keys``, so the check that root cannot log in
  proves sshd's policy (``PermitRootLogin no``, ``AllowGroups``) refuses a key root *would*
  accept, not merely that root has no key;
- ``/etc/sudoers.d/zz-goldsmith-boottest``: sudo for that user *with* its password (no
  NOPASSWD anywhere, so the copy is judged on the image's own sudo policy), limited to the
  commands the checks run. That list includes ``sh``, ``python3`` and ``tar`` (Lynis is a
  shell script, goldsmith a zipapp), so on the copy the account is in effect root; it exists
  only there. ``!use_pty`` for that user only: files are streamed over stdin into ``tar``,
  which a pseudo-terminal would mangle.

The gold image's sha256 is taken before the copy and again after the boot test (by the
caller) and both are recorded: they must be equal. Every mount and loop device is undone in
``finally``, also on errors.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
import string
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from goldsmith.build.diskimage import _loop_device, _mounted, compute_layout
from goldsmith.controls.configfile import ConfigText, Style
from goldsmith.errors import BootTestError, BuildError, ToolMissingError
from goldsmith.model.profile import Profile

log = logging.getLogger(__name__)

BOOT_USER = "gsboottest"
SUDOERS_FILE = "/etc/sudoers.d/zz-goldsmith-boottest"
#: every command the boot test runs with sudo (Debian 13 paths; sudo matches by inode too)
SUDO_COMMANDS = (
    "/usr/bin/mkdir",
    "/usr/bin/tar",
    "/usr/bin/cat",
    "/usr/bin/rm",
    "/usr/bin/sh",
    "/usr/bin/python3",
    "/usr/bin/stat",
    "/usr/bin/find",
    "/usr/bin/findmnt",
    "/usr/bin/ss",
    "/usr/bin/systemctl",
    "/usr/sbin/sysctl",
    "/usr/sbin/auditctl",
    "/usr/sbin/sshd",
    "/usr/bin/oscap",
    "/usr/bin/fail2ban-client",
)
AUDIT_RULES_DIR = "/etc/audit/rules.d"
INJECTION_NOTE = (
    "The booted disk is a throwaway copy of the gold image plus a boot-test account (user, "
    "its SSH key, the same key for root, a random password and the askpass helper sudo -A "
    "reads it from, a sudoers file without NOPASSWD); the gold image file itself is never "
    "written (its sha256 is recorded before and after)."
)
HOST_TOOLS = {"useradd": "passwd", "losetup": "mount", "cp": "coreutils"}
#: in the test account's home: prints its password for ``sudo -A`` (no dot: not a dot file)
ASKPASS_NAME = "goldsmith-askpass"
PASSWORD_LENGTH = 32
#: no quote, backslash, colon or blank: safe in chpasswd's ``user:password`` line and in the
#: askpass helper's single-quoted string
SAFE_PUNCTUATION = "-_.,+=%@#"
_PASSWORD_CLASSES = (
    string.ascii_lowercase,
    string.ascii_uppercase,
    string.digits,
    SAFE_PUNCTUATION,
)


@dataclass(frozen=True)
class Injection:
    """What was added to the copy, recorded in boottest.json."""

    user: str
    uid: int
    groups: tuple[str, ...]
    allow_group: str | None  # the profile's SSH allow group
    allow_group_in_image: bool
    key_fingerprint: str
    files: tuple[str, ...]  # in-image paths written or appended to
    sudo_commands: tuple[str, ...]
    #: the in-image path of the askpass helper the SSH client names in ``SUDO_ASKPASS``
    askpass: str
    #: the test account's /etc/shadow entry without its hash (never the password)
    shadow: ShadowEntry
    note: str = INJECTION_NOTE


@dataclass(frozen=True)
class ShadowEntry:
    """The ageing fields of an /etc/shadow line, and how its hash was made ($y$, $6$ ...)."""

    hash_prefix: str  # "$y$": yescrypt, "$6$": SHA-512
    last_change: int | None  # days since 1970-01-01
    min_days: int | None
    max_days: int | None
    warn_days: int | None
    inactive_days: int | None


@dataclass(frozen=True)
class ImageFacts:
    """Read from the copy before anything was injected (i.e. from the gold image)."""

    #: rule lines of /etc/audit/rules.d/*.rules in augenrules' order, comments dropped
    audit_rules: tuple[str, ...]
    audit_rules_files: tuple[str, ...]
    #: /etc/ssh/ssh_host_* present in the image (the gold image must ship none)
    ssh_host_keys: tuple[str, ...]


@dataclass(frozen=True)
class TestCopy:
    __test__ = False

    disk: Path
    gold: Path
    gold_sha256: str
    injection: Injection
    facts: ImageFacts
    seconds: dict[str, float] = field(default_factory=dict)


def sha256_file(path: Path, chunk: int = 8 * 1024 * 1024) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _run(argv: list[str], what: str, *, timeout: float = 600, input: str | None = None) -> str:
    """``input`` goes to stdin (a secret belongs there, never in ``argv``, which errors show)."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input)
    except subprocess.TimeoutExpired as e:
        raise BuildError(f"{what}: timed out after {timeout:.0f} s", argv=argv) from e
    if proc.returncode != 0:
        raise BuildError(what, argv=argv, stderr=proc.stderr or proc.stdout)
    return proc.stdout


def copy_disk(gold: Path, dest: Path) -> Path:
    """A sparse raw copy of ``gold`` at ``dest`` (qcow2 is converted to raw)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with gold.open("rb") as f:
        qcow2 = f.read(4) == b"QFI\xfb"
    if qcow2:
        if shutil.which("qemu-img") is None:
            raise ToolMissingError("qemu-img", "qemu-utils")
        _run(["qemu-img", "convert", "-O", "raw", str(gold), str(dest)], "converting the disk")
    else:
        _run(["cp", "--sparse=always", str(gold), str(dest)], "copying the disk")
    return dest


def audit_rule_lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def _version_key(name: str) -> list[tuple[int, int | str]]:
    # ls -v as augenrules sorts: digit runs compare as numbers
    import re

    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", name) if p]


def read_facts(root: Path) -> ImageFacts:
    rules_dir = root / AUDIT_RULES_DIR.lstrip("/")
    lines: list[str] = []
    files: list[str] = []
    if rules_dir.is_dir() and not rules_dir.is_symlink():
        for p in sorted(rules_dir.iterdir(), key=lambda p: _version_key(p.name)):
            if p.name.endswith(".rules") and p.is_file() and not p.is_symlink():
                files.append(f"{AUDIT_RULES_DIR}/{p.name}")
                lines += audit_rule_lines(p.read_text(errors="replace"))
    ssh_dir = root / "etc/ssh"
    keys = (
        sorted(f"/etc/ssh/{p.name}" for p in ssh_dir.glob("ssh_host_*")) if ssh_dir.is_dir() else []
    )
    return ImageFacts(
        audit_rules=tuple(lines), audit_rules_files=tuple(files), ssh_host_keys=tuple(keys)
    )


def _groups(root: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (root / "etc/group").read_text().splitlines():
        parts = line.split(":")
        if len(parts) >= 3 and parts[2].isdigit():
            out[parts[0]] = int(parts[2])
    return out


def _passwd_entry(root: Path, user: str) -> tuple[int, int, str]:
    for line in (root / "etc/passwd").read_text().splitlines():
        parts = line.split(":")
        if len(parts) >= 7 and parts[0] == user:
            return int(parts[2]), int(parts[3]), parts[5]
    raise BootTestError(f"user {user} missing from the copy's /etc/passwd after useradd")


def _inside(root: Path, in_image: str) -> Path:
    """``root`` + an in-image path; refuses symlinks on the way (a hostile image)."""
    cur = root
    for part in Path(in_image.lstrip("/")).parts:
        cur = cur / part
        if cur.is_symlink():
            raise BootTestError(f"{in_image}: {cur} is a symlink in the image; refusing to write")
    return cur


#: the backups useradd writes beside the account files it changes
ACCOUNT_BACKUPS = ("/etc/passwd-", "/etc/group-", "/etc/shadow-", "/etc/gshadow-")


def _backup_modes(root: Path) -> dict[str, tuple[int, int, int] | None]:
    """Mode, uid and gid of each account backup file of the copy (None: absent)."""
    out: dict[str, tuple[int, int, int] | None] = {}
    for name in ACCOUNT_BACKUPS:
        p = _inside(root, name)
        if p.is_file():
            s = p.lstat()
            out[name] = (s.st_mode & 0o7777, s.st_uid, s.st_gid)
        else:
            out[name] = None
    return out


def _restore_backup_modes(root: Path, before: dict[str, tuple[int, int, int] | None]) -> None:
    """useradd writes its backups with the live file's mode (/etc/shadow- 0640 root:shadow),
    which would make the copy fail the image's own stricter controls for a reason that is
    the test's, not the image's: give each backup the mode and owner the gold image had,
    and remove a backup the gold image did not have."""
    for name, was in before.items():
        p = _inside(root, name)
        if not p.is_file() or p.is_symlink():
            continue
        if was is None:
            p.unlink()
            continue
        mode, uid, gid = was
        os.chown(p, uid, gid)
        p.chmod(mode)


def _write_key(root: Path, home: str, uid: int, gid: int, key_line: str) -> str:
    ssh_dir = _inside(root, f"{home}/.ssh")
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    os.chown(ssh_dir, uid, gid)
    ssh_dir.chmod(0o700)
    auth = ssh_dir / "authorized_keys"
    if auth.is_symlink():
        raise BootTestError(f"{home}/.ssh/authorized_keys is a symlink in the image")
    existing = auth.read_text() if auth.exists() else ""
    if existing and not existing.endswith("\n"):
        existing += "\n"
    auth.write_text(existing + key_line + "\n")
    os.chown(auth, uid, gid)
    auth.chmod(0o600)
    return f"{home}/.ssh/authorized_keys"


def sudoers_text(user: str) -> str:
    cmds = ", ".join(SUDO_COMMANDS)
    return (
        "# goldsmith boot test: present only in the throwaway copy `goldsmith boottest`\n"
        "# boots, never in the gold image. sh, python3 and tar make this account root.\n"
        "# The account authenticates with its password (sudo -A, the askpass helper in its\n"
        "# home): no rule here escapes the image's sudo policy.\n"
        f"Cmnd_Alias GOLDSMITH_BOOTTEST = {cmds}\n"
        f"Defaults:{user} !use_pty, !requiretty, !lecture\n"
        f"{user} ALL=(root) GOLDSMITH_BOOTTEST\n"
    )


def new_password(length: int = PASSWORD_LENGTH) -> str:
    """A fresh random password with a character of every class a pwquality policy asks for."""
    alphabet = "".join(_PASSWORD_CLASSES)
    while True:
        password = "".join(secrets.choice(alphabet) for _ in range(length))
        if all(any(c in cls for c in password) for cls in _PASSWORD_CLASSES):
            return password


def askpass_text(password: str) -> str:
    if any(c not in "".join(_PASSWORD_CLASSES) for c in password):
        raise BootTestError("the test password has a character the askpass helper cannot quote")
    return (
        "#!/bin/sh\n"
        "# goldsmith boot test (throwaway copy only): this account's password, for sudo -A\n"
        f"printf '%s\\n' '{password}'\n"
    )


def _write_askpass(root: Path, home: str, uid: int, gid: int, password: str) -> str:
    in_image = f"{home}/{ASKPASS_NAME}"
    path = _inside(root, in_image)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o700)
    with os.fdopen(fd, "w") as f:
        f.write(askpass_text(password))
    os.chown(path, uid, gid)
    path.chmod(0o700)
    return in_image


def _key_values(path: Path, style: Style) -> dict[str, str]:
    """The settings of login.defs (``space`` style) or /etc/default/useradd, read with the
    catalogue's own parser (last value wins, comments dropped). useradd is read in the
    ``equals`` style, blanks around ``=`` tolerated: what the image's file means, not how
    useradd reads it."""
    if not path.is_file() or path.is_symlink():
        return {}
    text = ConfigText(path.read_text(errors="replace"), style)
    return {e.key: e.value.strip().strip('"') for e in text.entries()}


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class AgeingPolicy:
    """What the image's own files say a new account's shadow ageing fields are."""

    encrypt_method: str
    min_days: int | None
    max_days: int | None
    warn_days: int | None
    inactive_days: int | None


def ageing_policy(root: Path) -> AgeingPolicy:
    defs = _key_values(_inside(root, "/etc/login.defs"), Style.SPACE)
    useradd = _key_values(_inside(root, "/etc/default/useradd"), Style.EQUALS)
    inactive = _int_or_none(useradd.get("INACTIVE"))
    return AgeingPolicy(
        encrypt_method=defs.get("ENCRYPT_METHOD", "SHA512").upper(),
        min_days=_int_or_none(defs.get("PASS_MIN_DAYS")),
        max_days=_int_or_none(defs.get("PASS_MAX_DAYS")),
        warn_days=_int_or_none(defs.get("PASS_WARN_AGE")),
        inactive_days=inactive if inactive is not None and inactive >= 0 else None,
    )


def shadow_entry(root: Path, user: str) -> ShadowEntry:
    for line in _inside(root, "/etc/shadow").read_text().splitlines():
        parts = line.split(":")
        if len(parts) >= 8 and parts[0] == user:
            pw = parts[1]
            prefix = pw[: pw.index("$", 1) + 1] if pw.startswith("$") and "$" in pw[1:] else pw[:1]
            return ShadowEntry(
                hash_prefix=prefix,
                last_change=_int_or_none(parts[2] or None),
                min_days=_int_or_none(parts[3] or None),
                max_days=_int_or_none(parts[4] or None),
                warn_days=_int_or_none(parts[5] or None),
                inactive_days=_int_or_none(parts[6] or None),
            )
    raise BootTestError(f"user {user} missing from the copy's /etc/shadow")


def _check_shadow(entry: ShadowEntry, policy: AgeingPolicy, user: str) -> None:
    """The account's password is a real hash and its ageing is the image's own policy, so
    the copy's scanners judge the image's policy, not an artefact of the test."""
    problems: list[str] = []
    if not entry.hash_prefix.startswith("$") or len(entry.hash_prefix) < 3:
        problems.append(f"password field is not a crypt hash (starts {entry.hash_prefix!r})")
    today = int(time.time() // 86400)
    if entry.last_change is None or not 0 < entry.last_change <= today:
        problems.append(f"last change {entry.last_change} is not a day up to today ({today})")
    for name in ("min_days", "max_days", "warn_days", "inactive_days"):
        want, got = getattr(policy, name), getattr(entry, name)
        if want is not None and got != want:
            problems.append(f"{name} is {got}, the image's policy says {want}")
    if problems:
        raise BootTestError(f"the test user {user}'s /etc/shadow entry: " + "; ".join(problems))


def _set_password(root: Path, user: str, password: str, method: str) -> None:
    """Hash ``password`` with the image's own chpasswd (in a chroot) and ``method`` (its
    login.defs ENCRYPT_METHOD); the cleartext goes over stdin. ``--crypt-method`` keeps
    chpasswd off PAM: pam_pwquality/pam_pwhistory judge passwords people choose (and fail
    outright when the image has no cracklib dictionary), and pam_pwhistory would write
    /etc/security/opasswd. An image without chpasswd gets the host's, on its files."""
    if (root / "usr/sbin/chpasswd").is_file():
        argv = ["chroot", str(root), "/usr/sbin/chpasswd", "--crypt-method", method]
    else:
        if shutil.which("chpasswd") is None:
            raise ToolMissingError("chpasswd", "passwd")
        argv = ["chpasswd", "--root", str(root), "--crypt-method", method]
    _run(argv, f"setting the test user {user}'s password", input=f"{user}:{password}\n")


def boot_home(user: str, separate: Sequence[str]) -> str:
    """A home for the test account on the root filesystem itself.

    Only the root filesystem of the copy is mounted for the injection: a home under a
    mount point of another filesystem (``/home`` in the default profile) would be hidden by
    that filesystem at boot, and with it the key.
    """
    for candidate in (f"/var/lib/{user}", f"/opt/{user}", f"/{user}"):
        if not any(
            candidate == m or candidate.startswith(m.rstrip("/") + "/")
            for m in separate
            if m != "/"
        ):
            return candidate
    raise BootTestError(f"no place on the root filesystem for the test user's home ({separate})")


def inject(
    root: Path,
    *,
    key_line: str,
    fingerprint: str,
    allow_group: str | None,
    user: str = BOOT_USER,
    separate: Sequence[str] = (),
) -> Injection:
    """Add the boot-test account to the mounted root filesystem of a copy.

    ``separate``: the image's other mount points (its home must not be under one).
    """
    if shutil.which("useradd") is None:
        raise ToolMissingError("useradd", "passwd")
    groups = _groups(root)
    if user in {ln.split(":")[0] for ln in (root / "etc/passwd").read_text().splitlines()}:
        raise BootTestError(f"the image already has a user {user!r}; pick another test user")
    member = [allow_group] if allow_group and allow_group in groups else []
    # an empty skeleton: the image's /etc/skel dotfiles (0644) in the test account's home
    # would be judged by the in-guest scanners (user init files 0740 at most) as if they
    # were the image's own
    skel = _inside(root, "/etc/goldsmith-boottest-skel")
    skel.mkdir(mode=0o700, exist_ok=True)
    argv = [
        "useradd",
        "--root",
        str(root),
        "--skel",
        "/etc/goldsmith-boottest-skel",
        "--create-home",
        "--home-dir",
        boot_home(user, separate),
        "--user-group",
        "--shell",
        "/bin/sh",
        "--password",
        "*",
        "--comment",
        "goldsmith boot test (throwaway copy only)",
    ]
    policy = ageing_policy(root)
    if policy.inactive_days is not None:
        # useradd reads only "INACTIVE=45", the image may write "INACTIVE = 45"
        argv += ["--inactive", str(policy.inactive_days)]
    if member:
        argv += ["--groups", ",".join(member)]
    backups = _backup_modes(root)
    _run([*argv, user], f"adding the test user {user} to the copy")
    password = new_password()
    try:
        _set_password(root, user, password, policy.encrypt_method)
    finally:
        _restore_backup_modes(root, backups)
    shadow = shadow_entry(root, user)
    _check_shadow(shadow, policy, user)
    skel.rmdir()
    uid, gid, home = _passwd_entry(root, user)
    files = ["/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow", home]
    files.append(_write_key(root, home, uid, gid, key_line))
    askpass = _write_askpass(root, home, uid, gid, password)
    del password
    files.append(askpass)
    files.append(_write_key(root, "/root", 0, 0, key_line))
    sudoers = _inside(root, SUDOERS_FILE)
    sudoers.write_text(sudoers_text(user))
    sudoers.chmod(0o440)
    os.chown(sudoers, 0, 0)
    files.append(SUDOERS_FILE)
    visudo = root / "usr/sbin/visudo"
    if visudo.is_file():
        # the image's own visudo judges the file (the host may have no sudo at all); not -q,
        # which would keep the syntax error out of the error message
        _run(
            ["chroot", str(root), "/usr/sbin/visudo", "-c", "-f", SUDOERS_FILE],
            "checking the test sudoers file",
        )
    return Injection(
        user=user,
        uid=uid,
        groups=tuple([user, *member]),
        allow_group=allow_group,
        allow_group_in_image=bool(member),
        key_fingerprint=fingerprint,
        files=tuple(files),
        sudo_commands=SUDO_COMMANDS,
        askpass=askpass,
        shadow=shadow,
    )


@contextmanager
def _mounted_root(disk: Path, profile: Profile) -> Iterator[Path]:
    for tool, package in HOST_TOOLS.items():
        if shutil.which(tool) is None:
            raise ToolMissingError(tool, package)
    root_part = compute_layout(profile).root.number
    with (
        _loop_device(disk, [root_part]) as dev,
        tempfile.TemporaryDirectory(prefix="goldsmith-inject-") as mnt,
        _mounted([f"{dev}p{root_part}"], Path(mnt), "the copy's root filesystem") as root,
    ):
        yield root


def prepare_test_copy(
    gold: Path,
    profile: Profile,
    work_dir: Path,
    *,
    key_line: str,
    fingerprint: str,
    allow_group: str | None,
    user: str = BOOT_USER,
) -> TestCopy:
    """Copy ``gold`` into ``work_dir``, read the image facts, inject the test account."""
    seconds: dict[str, float] = {}
    t0 = time.monotonic()
    gold_sha = sha256_file(gold)
    seconds["gold_sha256"] = round(time.monotonic() - t0, 3)
    t0 = time.monotonic()
    disk = copy_disk(gold, work_dir / "boottest-copy.raw")
    seconds["copy"] = round(time.monotonic() - t0, 3)
    t0 = time.monotonic()
    try:
        with _mounted_root(disk, profile) as root:
            facts = read_facts(root)
            injection = inject(
                root,
                key_line=key_line,
                fingerprint=fingerprint,
                allow_group=allow_group,
                user=user,
                separate=[p.mountpoint for p in profile.image.partitions],
            )
    except BaseException:
        disk.unlink(missing_ok=True)
        raise
    seconds["inject"] = round(time.monotonic() - t0, 3)
    return TestCopy(
        disk=disk,
        gold=gold,
        gold_sha256=gold_sha,
        injection=injection,
        facts=facts,
        seconds=seconds,
    )
