"""Every control of the shipped catalogue, one case each, on its own small fake root.

The root looks like a stock Debian 13 minbase for the files the control reads, built from
the control's own params (a sysctl key set to another value in a vendor file, a package to
purge in the dpkg status, a unit installed but not enabled, ...). For each control:

1. check() is FAIL (STOCK_PASSES: stock Debian already satisfies it, PASS is asserted);
2. check() and plan() leave a hash of the whole tree unchanged;
3. apply() returns the planned changes, then check() is PASS;
4. a second apply() returns [] and leaves the tree hash unchanged.

CHECK_ONLY controls (a human must decide the fix) pass on the stock root and fail on a root
with the violation, where plan() and apply() are empty and nothing is written.

Commands that apply runs inside the image (apt-get, pam-auth-update, groupadd, usermod, ...)
go to FakeImageTarget (tests/unit/fake_image.py), which emulates exactly those on the fake
root's files and refuses any other command.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable
from pathlib import Path

import pytest
from apparmor_fixtures import apparmor_dir
from controls_fixtures import tree_hash, write
from fake_image import FakeImageTarget, pam_auth_update

from goldsmith.controls.base import Control, Rule
from goldsmith.controls.catalogue import load_catalogue
from goldsmith.controls.rules.config_option import ConfigOptionRule
from goldsmith.controls.rules.file_content import FileContentRule
from goldsmith.controls.rules.file_mode import FileModeRule
from goldsmith.controls.rules.managed_file import ManagedFileRule
from goldsmith.controls.rules.mount_options import MountOptionsRule
from goldsmith.controls.rules.package import PackageRule, PackageState
from goldsmith.controls.rules.pam import PamRule
from goldsmith.controls.rules.service import ServiceRule, ServiceState
from goldsmith.controls.rules.sysctl import SysctlRule
from goldsmith.controls.rules.tree_scan import ScanKind, TreeScanRule
from goldsmith.model.records import Status

CATALOGUE = load_catalogue()
IDS = list(CATALOGUE.controls)

# stock Debian 13 files ---------------------------------------------------------------------------

PASSWD = """root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
bin:x:2:2:bin:/bin:/usr/sbin/nologin
sys:x:3:3:sys:/dev:/usr/sbin/nologin
sync:x:4:65534:sync:/bin:/bin/sync
man:x:6:12:man:/var/cache/man:/usr/sbin/nologin
_apt:x:42:65534::/nonexistent:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
"""
SHADOW = """root:*:20300:0:99999:7:::
daemon:*:20300:0:99999:7:::
bin:*:20300:0:99999:7:::
sys:*:20300:0:99999:7:::
sync:*:20300:0:99999:7:::
man:*:20300:0:99999:7:::
_apt:*:20300:0:99999:7:::
nobody:*:20300:0:99999:7:::
"""
GROUP = """root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
man:x:12:
sudo:x:27:
shadow:x:42:
users:x:100:
nogroup:x:65534:
"""
SHELLS = "# /etc/shells: valid login shells\n/bin/sh\n/usr/bin/sh\n/bin/bash\n/usr/bin/bash\n"
SHELLS += "/bin/rbash\n/usr/bin/rbash\n/usr/bin/dash\n"
LOGIN_DEFS = """# /etc/login.defs - Configuration control definitions for the login package.
MAIL_DIR        /var/mail
ENV_SUPATH      PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENV_PATH        PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games
UMASK           022
HOME_MODE       0700
PASS_MAX_DAYS   99999
PASS_MIN_DAYS   0
PASS_WARN_AGE   7
UID_MIN                  1000
UID_MAX                 60000
SYS_UID_MAX               999
GID_MIN                  1000
GID_MAX                 60000
SYS_GID_MAX               999
# SHA_CRYPT_MIN_ROUNDS 5000
# SHA_CRYPT_MAX_ROUNDS 5000
"""
SSHD_CONFIG = """# This is the sshd server system-wide configuration file.
Include /etc/ssh/sshd_config.d/*.conf
#Port 22
#PermitRootLogin prohibit-password
#MaxAuthTries 6
KbdInteractiveAuthentication no
UsePAM yes
X11Forwarding yes
PrintMotd no
AcceptEnv LANG LC_* COLORTERM NO_COLOR
Subsystem\tsftp\t/usr/lib/openssh/sftp-server
"""
RSYSLOG_CONF = """module(load="imuxsock")
module(load="imklog")
$FileOwner root
$FileGroup adm
$FileCreateMode 0640
$DirCreateMode 0755
$Umask 0022
$IncludeConfig /etc/rsyslog.d/*.conf
*.*;auth,authpriv.none\t\t-/var/log/syslog
"""
#: config-option files whose stock Debian content matters (others: a commented default)
STOCK_CONFIG = {
    "/etc/ssh/sshd_config": SSHD_CONFIG,
    "/etc/login.defs": LOGIN_DEFS,
    "/etc/rsyslog.conf": RSYSLOG_CONF,
    "/etc/default/sysstat": 'ENABLED="false"\n',
    "/etc/default/debsums": "CRON_CHECK=never\n",
    "/etc/audit/auditd.conf": (
        "log_file = /var/log/audit/audit.log\nlog_group = adm\nmax_log_file = 8\n"
        "max_log_file_action = ROTATE\nspace_left_action = SYSLOG\naction_mail_acct = root\n"
        "admin_space_left_action = SUSPEND\ndisk_full_action = SUSPEND\n"
        "disk_error_action = SUSPEND\n"
    ),
}
UNIX_PROFILE = """Name: Unix authentication
Default: yes
Priority: 256
Auth-Type: Primary
Auth:
\t[success=end default=ignore]\tpam_unix.so nullok try_first_pass
Auth-Initial:
\t[success=end default=ignore]\tpam_unix.so nullok
Account-Type: Primary
Account:
\t[success=end new_authtok_reqd=done default=ignore]\tpam_unix.so
Account-Initial:
\t[success=end new_authtok_reqd=done default=ignore]\tpam_unix.so
Session-Type: Additional
Session:
\trequired\tpam_unix.so
Session-Initial:
\trequired\tpam_unix.so
Password-Type: Primary
Password:
\t[success=end default=ignore]\tpam_unix.so obscure use_authtok try_first_pass yescrypt
Password-Initial:
\t[success=end default=ignore]\tpam_unix.so obscure yescrypt
"""
DPKG_BASE = ("base-files", "bash", "dpkg", "libc6", "login", "passwd")
#: file-mode paths that are directories on Debian
DIRS = {"/etc", "/usr", "/usr/lib", "/usr/libexec", "/usr/local", "/usr/share", "/var/log"}
DIRS |= {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/usr/share/keyrings"}
DIRS |= {"/var/log/audit", "/etc/apt/trusted.gpg.d", "/etc/apt/auth.conf.d"}


def stock_base(root: Path) -> None:
    write(root, "/etc/os-release", 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\n')
    write(root, "/etc/passwd", PASSWD)
    write(root, "/etc/group", GROUP)
    write(root, "/etc/shadow", SHADOW, 0o640)
    write(root, "/etc/gshadow", "".join(f"{g.split(':')[0]}:*::\n" for g in GROUP.split()), 0o640)
    for f in ("shadow", "gshadow"):
        os.chown(root / "etc" / f, 0, 42)
    write(root, "/etc/shells", SHELLS)
    write(root, "/etc/login.defs", LOGIN_DEFS)
    write(root, "/root/.profile", "# ~/.profile\n", 0o644)
    write(root, "/root/.bashrc", "# ~/.bashrc\n", 0o644)
    (root / "root").chmod(0o700)
    dirs = ("usr/local/sbin", "usr/local/bin", "usr/sbin", "usr/bin", "usr/lib", "tmp", "var/tmp")
    for d in (*dirs, "usr/games", "usr/local/games"):  # base-files makes the games dirs
        (root / d).mkdir(parents=True, exist_ok=True)
    for link in ("bin", "sbin", "lib"):  # merged /usr
        (root / link).symlink_to(f"usr/{link}")
    (root / "tmp").chmod(0o1777)
    (root / "var/tmp").chmod(0o1777)
    status = "\n".join(
        f"Package: {p}\nStatus: install ok installed\nVersion: 1\n" for p in DPKG_BASE
    )
    write(root, "/var/lib/dpkg/status", status)


# per rule type: the stock root for one rule (with what the control is about) --------------------
Setup = Callable[[Path, Rule], None]


def _sysctl(root: Path, r: Rule) -> None:
    assert isinstance(r, SysctlRule)
    other = "1" if r.value != "1" else "0"
    write(root, "/usr/lib/sysctl.d/50-vendor.conf", f"{r.key} = {other}\n")
    (root / "etc/sysctl.d").mkdir(parents=True, exist_ok=True)


def _config_option(root: Path, r: Rule) -> None:
    assert isinstance(r, ConfigOptionRule)
    text = STOCK_CONFIG.get(r.path)
    if text is None:
        comment = f"[{r.section}]\n#{r.key}=\n" if r.section else f"# {r.key}\n"
        text = f"# {r.path}: shipped with defaults commented out\n{comment}"
    write(root, r.path, text)
    if r.style == "sshd":
        (root / "etc/ssh/sshd_config.d").mkdir(exist_ok=True)


def _package(root: Path, r: Rule) -> None:
    assert isinstance(r, PackageRule)
    if r.state is PackageState.ABSENT:
        with (root / "var/lib/dpkg/status").open("a") as f:
            f.write(f"\nPackage: {r.name}\nStatus: install ok installed\nVersion: 1\n")


def _unit(root: Path, r: Rule) -> None:
    assert isinstance(r, ServiceRule)
    target = "timers.target" if r.unit.endswith(".timer") else "multi-user.target"
    write(
        root,
        f"/usr/lib/systemd/system/{r.unit}",
        f"[Unit]\nDescription={r.unit}\n\n[Install]\nWantedBy={target}\n",
    )
    (root / "etc/systemd/system").mkdir(parents=True, exist_ok=True)
    if r.state is not ServiceState.ENABLED:
        wants = root / f"etc/systemd/system/{target}.wants"
        wants.mkdir(parents=True, exist_ok=True)
        (wants / r.unit).symlink_to(f"/usr/lib/systemd/system/{r.unit}")


def _file_mode(root: Path, r: Rule) -> None:
    """The files exist with modes looser than the control allows (an admin's or a package's
    chmod): stock Debian's own modes mostly pass these controls."""
    assert isinstance(r, FileModeRule)
    for pattern in r.paths:
        path = pattern.replace("*", "stock")
        p = root / path.lstrip("/")
        if path in DIRS or path.endswith(".d") or posixpath.basename(path).startswith("cron."):
            p.mkdir(parents=True, exist_ok=True)
            p.chmod(0o777)
        elif p.exists():
            p.chmod(0o666)
        else:
            write(root, path, "stock\n", 0o666)


def _mount(root: Path, r: Rule) -> None:
    assert isinstance(r, MountOptionsRule)
    write(
        root,
        "/etc/fstab",
        "# /etc/fstab: static file system information.\n"
        "UUID=1  /  ext4  errors=remount-ro  0 1\n"
        f"UUID=2  {r.mountpoint}  ext4  defaults  0 2\n",
    )


def _managed(root: Path, r: Rule) -> None:
    assert isinstance(r, ManagedFileRule)
    stock = {"/etc/pam.d/su": "auth       sufficient pam_rootok.so\n@include common-auth\n"}
    if r.path in stock:
        write(root, r.path, stock[r.path])
    (root / "etc/sudoers.d").mkdir(parents=True, exist_ok=True)


def _pam(root: Path, r: Rule) -> None:
    assert isinstance(r, PamRule)
    write(root, "/usr/share/pam-configs/unix", UNIX_PROFILE)
    pam_auth_update(root)


def _banner(root: Path, r: Rule) -> None:
    write(root, "/etc/issue", "Debian GNU/Linux 13 \\n \\l\n\n")
    write(root, "/etc/issue.net", "Debian GNU/Linux 13\n")
    write(root, "/etc/motd", "\nThe programs included with the Debian GNU/Linux system\n")


def _cron_at(root: Path, r: Rule) -> None:
    write(root, "/etc/crontab", "SHELL=/bin/sh\n")
    write(root, "/etc/cron.deny", "nobody\n")


def _file_content(root: Path, r: Rule) -> None:
    """Stock content; a remove_matching control gets the line it removes."""
    assert isinstance(r, FileContentRule)
    stock = {
        "/etc/apt/sources.list": "deb http://deb.debian.org/debian trixie main\n",
        "/etc/security/limits.conf": "#*               soft    core            0\n"
        + ("*               hard    core            unlimited\n" if r.remove_matching else ""),
        "/etc/chrony/chrony.conf": "pool 2.debian.pool.ntp.org iburst\n"
        "keyfile /etc/chrony/chrony.keys\n",
        "/etc/sudoers": "Defaults\tenv_reset\nroot\tALL=(ALL:ALL) ALL\n%sudo\tALL=(ALL:ALL) ALL\n"
        "@includedir /etc/sudoers.d\n",
        "/etc/rsyslog.conf": RSYSLOG_CONF,
        # as libpam-pwquality ships it (pam.libpam-pwquality installs it first): all commented
        "/etc/security/pwquality.conf": "# minlen = 8\n#\n# enforce_for_root\n",
    }
    for path in r.paths:
        if path in stock:
            write(root, path, stock[path])


def _account_db(root: Path, r: Rule) -> None:
    return None


def _tree_scan(root: Path, r: Rule) -> None:
    assert isinstance(r, TreeScanRule)
    if r.scan is ScanKind.WORLD_WRITABLE:
        write(root, "/var/lib/app/state.json", "{}\n", 0o666)  # a package's careless file
    write(root, "/usr/bin/passwd", "ELF", 0o4755)


def _apparmor(root: Path, r: Rule) -> None:
    """As the apparmor package leaves it: unix-chkpwd in complain mode, runc unconfined."""
    apparmor_dir(root)


def _nothing(root: Path, r: Rule) -> None:
    return None


SETUP: dict[str, Setup] = {
    "sysctl": _sysctl,
    "config-option": _config_option,
    "package": _package,
    "service": _unit,
    "file-mode": _file_mode,
    "mount-options": _mount,
    "managed-file": _managed,
    "pam": _pam,
    "banner": _banner,
    "cron-at-permissions": _cron_at,
    "file-content": _file_content,
    "account-db": _account_db,
    "tree-scan": _tree_scan,
    "apparmor-profiles": _apparmor,
    "audit-rules": _nothing,  # stock: no rules.d file of ours
    "kernel-module": _nothing,  # stock: no modprobe.d entry for the module
    "group": _nothing,  # stock /etc/group lacks the group
}


# account-db drift: what an image picks up that the fixable conditions catch ---------------------
def _sub(root: Path, path: str, old: str, new: str) -> None:
    p = root / path.lstrip("/")
    text = p.read_text()
    assert old in text, (path, old)
    p.write_text(text.replace(old, new, 1))


def _put(path: str, text: str) -> Callable[[Path], None]:
    def put(root: Path) -> None:
        write(root, path, text)

    return put


def _add_user(root: Path) -> None:
    _sub(root, "/etc/passwd", "nobody:", "alice:x:1000:100::/home/alice:/bin/bash\nnobody:")
    _sub(root, "/etc/shadow", "nobody:", "alice:$y$j9T$s$h:20300:0:99999:7:::\nnobody:")


DRIFT: dict[str, Callable[[Path], None]] = {
    "accounts.shadowed-passwords": lambda root: _sub(
        root, "/etc/passwd", "root:x:", "root:$y$j9T$salt$hash:"
    ),
    "accounts.no-empty-passwords": lambda root: _sub(root, "/etc/shadow", "man:*:", "man::"),
    "accounts.root-only-gid0": lambda root: _sub(root, "/etc/passwd", "root:x:0:0:", "root:x:0:4:"),
    "accounts.root-access-controlled": lambda root: _sub(root, "/etc/shadow", "root:*:", "root::"),
    "groups.shadow-empty": lambda root: _sub(root, "/etc/group", "shadow:x:42:", "shadow:x:42:man"),
    "accounts.system-nologin": lambda root: _sub(
        root, "/etc/passwd", "/var/cache/man:/usr/sbin/nologin", "/var/cache/man:/bin/sh"
    ),
    "accounts.nologin-locked": lambda root: _sub(root, "/etc/shadow", "man:*:", "man:$y$x$y$z:"),
    "accounts.root-path-integrity": lambda root: (root / "usr/local/bin").chmod(0o777),
    "accounts.home-dirs": _add_user,
    "accounts.dot-files": lambda root: (root / "root/.bashrc").chmod(0o666),
}


# controls stock Debian satisfies, and the check-only ones ---------------------------------------
#: id -> why stock Debian 13 already passes (PASS is asserted, and apply is a no-op)
STOCK_PASSES = {
    "sshd.use-pam": "Debian's sshd_config sets UsePAM yes",
    "sshd.kbd-interactive-authentication": "Debian's sshd_config sets it to no",
    "login-defs.pass-warn-age": "Debian's login.defs ships PASS_WARN_AGE 7",
    "rsyslog.file-create-mode": "Debian's rsyslog.conf sets $FileCreateMode 0640",
    "auditd.action-mail-acct": "Debian's auditd.conf sets action_mail_acct = root",
}

#: id -> (why apply cannot fix it, the violation) for conditions a human must decide
CHECK_ONLY: dict[str, tuple[str, Callable[[Path], None]]] = {
    "accounts.root-only-uid0": (
        "a second uid 0 account: remove or renumber is a decision",
        lambda root: _sub(root, "/etc/passwd", "nobody:", "toor:x:0:0::/root:/bin/bash\nnobody:"),
    ),
    "groups.root-only-gid0": (
        "a second gid 0 group",
        lambda root: _sub(root, "/etc/group", "nogroup:", "wheel:x:0:\nnogroup:"),
    ),
    "accounts.primary-groups-exist": (
        "which group is meant is a decision",
        lambda root: _sub(root, "/etc/passwd", "man:x:6:12:", "man:x:6:77:"),
    ),
    "accounts.unique-uids": (
        "which account keeps the uid is a decision",
        lambda root: _sub(root, "/etc/passwd", "man:x:6:", "man:x:3:"),
    ),
    "groups.unique-gids": (
        "which group keeps the gid is a decision",
        lambda root: _sub(root, "/etc/group", "man:x:12:", "man:x:3:"),
    ),
    "accounts.unique-names": (
        "which entry is the account is a decision",
        lambda root: _sub(
            root, "/etc/passwd", "nobody:", "man:x:60:60::/:/usr/sbin/nologin\nnobody:"
        ),
    ),
    "groups.unique-names": (
        "which entry is the group is a decision",
        lambda root: _sub(root, "/etc/group", "nogroup:", "man:x:60:\nnogroup:"),
    ),
    "accounts.last-change-in-past": (
        "a future change date needs a look at the clock that wrote it",
        lambda root: _sub(root, "/etc/shadow", "man:*:20300:", "man:*:99999:"),
    ),
    "files.suid-sgid-reviewed": (
        "whether a setuid binary off the allow list is needed is a decision",
        lambda root: os.chmod(write(root, "/usr/local/bin/tool", "ELF"), 0o4755),
    ),
    "files.unowned": (
        "who should own a file is a decision",
        lambda root: os.chown(write(root, "/opt/orphan", "x\n"), 12345, 12345),
    ),
    "chrony.time-sources": (
        "which time servers to use is a decision",
        _put("/etc/chrony/chrony.conf", "keyfile /etc/chrony/chrony.keys\n"),
    ),
    "chrony.runs-as-chrony": (
        "a 'user' line is a local decision",
        _put("/etc/chrony/chrony.conf", "pool 2.debian.pool.ntp.org\nuser root\n"),
    ),
    "sudo.nopasswd-absent": (
        "a NOPASSWD grant is a local decision",
        _put("/etc/sudoers.d/ops", "%sudo ALL=(ALL) NOPASSWD: ALL\n"),
    ),
    "sudo.authenticate-not-disabled": (
        "a !authenticate default is a local decision",
        _put("/etc/sudoers.d/ops", "Defaults !authenticate\n"),
    ),
    "rsyslog.no-remote-input": (
        "a log receiver may be intended",
        _put("/etc/rsyslog.d/recv.conf", 'module(load="imtcp")\n'),
    ),
}

#: rule types whose apply always runs a command in the image (through FakeImageTarget)
COMMAND_TYPES = {"package", "pam", "group"}

#: id -> why the control cannot be exercised on a fake root
SKIP: dict[str, str] = {}


def test_the_parametrised_ids_are_the_whole_catalogue() -> None:
    assert set(IDS) == set(load_catalogue().controls)
    assert len(IDS) == len(set(IDS))
    assert not (set(STOCK_PASSES) | set(CHECK_ONLY) | set(DRIFT) | set(SKIP)) - set(IDS)
    assert not set(STOCK_PASSES) & set(CHECK_ONLY)
    assert set(SETUP) >= {c.rule_type for c in CATALOGUE.controls.values()}


@pytest.fixture(autouse=True)
def _no_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    """atomic_write's fsyncs are durability only (the rename is what makes the write atomic);
    on a shared, busy disk 400 of them take most of this file's wall-clock time."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)


def _root(tmp_path: Path, c: Control) -> tuple[Path, FakeImageTarget, Rule]:
    root = tmp_path / "root"
    root.mkdir()
    stock_base(root)
    rule = c.rule()
    SETUP[c.rule_type](root, rule)
    return root, FakeImageTarget(root), rule


@pytest.mark.parametrize("cid", IDS)
def test_control_cycle(cid: str, tmp_path: Path) -> None:
    if cid in SKIP:
        pytest.skip(SKIP[cid])
    c = CATALOGUE.controls[cid]
    root, t, rule = _root(tmp_path, c)

    if cid in CHECK_ONLY:
        _, violate = CHECK_ONLY[cid]
        stock = tree_hash(root)
        assert c.check(t).status is Status.PASS
        assert tree_hash(root) == stock
        violate(root)
        before = tree_hash(root)
        assert before != stock
        found = c.check(t)
        assert found.status is Status.FAIL, found.evidence
        assert c.plan(t) == [] and c.apply(t) == []
        assert c.check(t).status is Status.FAIL
        assert tree_hash(root) == before
        assert t.commands == []
        return

    if cid in STOCK_PASSES:
        before = tree_hash(root)
        found = c.check(t)
        assert found.status is Status.PASS, found.evidence
        assert c.plan(t) == [] and c.apply(t) == []
        assert tree_hash(root) == before
        assert t.commands == []
        return

    if cid in DRIFT:
        stock = tree_hash(root)
        assert c.check(t).status is Status.PASS  # stock passes; the drift is what it catches
        assert tree_hash(root) == stock
        DRIFT[cid](root)

    before = tree_hash(root)
    first = c.check(t)
    planned = c.plan(t)
    assert tree_hash(root) == before, "check/plan wrote to the target"
    assert t.commands == [], "check/plan ran a command"
    assert first.status is Status.FAIL, first.evidence
    assert first.evidence.expected and first.evidence.observed and first.evidence.how
    assert planned, "a failing fixable control planned nothing"
    assert all(ch.control == cid for ch in planned)

    applied = c.apply(t)
    assert applied[: len(planned)] == planned
    assert tree_hash(root) != before
    if c.rule_type in COMMAND_TYPES:
        assert t.commands, "the fix ran no command in the image"
    after = c.check(t)
    assert after.status is Status.PASS, after.evidence
    assert c.plan(t) == []

    settled = tree_hash(root)
    ran = len(t.commands)
    assert c.apply(t) == []
    assert tree_hash(root) == settled
    assert len(t.commands) == ran, "a second apply ran a command"
    assert rule.check(t).status is Status.PASS


def test_the_fake_image_refuses_a_command_it_does_not_emulate(tmp_path: Path) -> None:
    stock_base(tmp_path)
    t = FakeImageTarget(tmp_path)
    before = tree_hash(tmp_path)
    with pytest.raises(AssertionError, match="does not know"):
        t.run(["systemctl", "enable", "cron.service"])
    with pytest.raises(AssertionError, match="does not know"):
        t.run(["apt-get", "remove", "-y", "bash"], env={"DEBIAN_FRONTEND": "noninteractive"})
    assert tree_hash(tmp_path) == before


def test_the_fake_apt_get_installs_and_purges_in_the_dpkg_status(tmp_path: Path) -> None:
    stock_base(tmp_path)
    t = FakeImageTarget(tmp_path)
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    present = PackageRule(name="aide", control="x")
    assert present.check(t).status is Status.FAIL
    t.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "aide"], env=env)
    assert present.check(t).status is Status.PASS
    t.run(["apt-get", "purge", "-y", "-q", "bash"], env=env)
    status = (tmp_path / "var/lib/dpkg/status").read_text()
    assert "Package: bash\n" not in status and "Package: dpkg\n" in status
