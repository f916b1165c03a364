"""The last step before export: no caches, no build leftovers, no shared identity.

What goes, and why:

- apt's downloaded packages, lists and binary caches: the image installs nothing by itself, and
  stale lists would only mislead; ``apt-get update`` on a host fetches fresh ones. The
  ``partial`` directories and the archives' ``lock`` stay as apt leaves them after ``clean``;
  the lists' ``lock`` goes, so no file at all is left under /var/lib/apt/lists (apt recreates
  it when it next takes the lock).
- ``*-old`` backups of the dpkg and debconf databases: the previous state of a build step.
- Log files written during the build (dpkg.log, apt's history and term logs, alternatives.log)
  are emptied, not deleted, so their owner and mode (``btmp`` is 0660 root:utmp) stay as the
  packages made them; rotated logs are deleted. The build's own record of every package change
  is the list of Change records, so nothing is lost, and the timestamps in those logs would
  make two builds differ.
- Everything under /tmp and /var/tmp.
- Per-machine identity: SSH host keys (every host made from the image would share them),
  ``/etc/machine-id`` (left as an empty file: systemd generates one at boot),
  ``/var/lib/dbus/machine-id`` (a symlink to it), the systemd random seed and credential
  secret. A first-boot unit regenerates the SSH host keys before sshd starts.
"""

from __future__ import annotations

import hashlib
import logging

from goldsmith.errors import BuildError
from goldsmith.model.records import Change, FileType
from goldsmith.targets.base import StatResult, Target

logger = logging.getLogger(__name__)

CONTROL = "image.finalize"

HOSTKEY_UNIT = "goldsmith-ssh-hostkeys.service"
HOSTKEY_UNIT_PATH = f"/etc/systemd/system/{HOSTKEY_UNIT}"
#: enabled like `systemctl enable` would from the [Install] section below
HOSTKEY_UNIT_WANTED_BY = ("multi-user.target", "ssh.service")
HOSTKEY_UNIT_TEXT = f"""\
# Installed by goldsmith: the gold image ships without SSH host keys, so every host made from
# it gets its own. Debian's sshd-keygen.service does the same only under ConditionFirstBoot,
# which an image with an empty /etc/machine-id does not meet; this unit keys on the missing
# key itself.
[Unit]
Description=Generate SSH host keys missing from the gold image
Documentation=man:ssh-keygen(1)
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
After=local-fs.target
Before=ssh.service sshd.service ssh.socket

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy={" ".join(HOSTKEY_UNIT_WANTED_BY)}
"""

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

#: (directory, names kept) whose other entries are removed
_CLEAR_DIRS: tuple[tuple[str, frozenset[str]], ...] = (
    # the lists' lock file goes too: apt creates it (O_CREAT) whenever it takes the lock
    ("/var/lib/apt/lists", frozenset({"partial"})),
    ("/var/lib/apt/lists/partial", frozenset()),
    ("/var/cache/apt/archives", frozenset({"lock", "partial"})),
    ("/var/cache/apt/archives/partial", frozenset()),
    ("/tmp", frozenset()),
    ("/var/tmp", frozenset()),
)
_REMOVE_GLOBS = (
    "/var/cache/apt/*.bin",
    "/var/cache/debconf/*-old",
    "/var/lib/dpkg/*-old",
    "/etc/ssh/ssh_host_*",
    "/var/lib/systemd/random-seed",
    "/var/lib/systemd/credential.secret",
    # ldconfig's aux-cache records inode numbers and mtimes of the build tree, so it differs
    # on every build; ldconfig recreates it on the host when it next runs.
    "/var/cache/ldconfig/aux-cache",
)
#: rotated or compressed logs: removed rather than emptied
_ROTATED_SUFFIXES = (".gz", ".xz", ".zst", ".bz2", ".old")


def finalize(target: Target, *, hostname: str | None = None) -> list[Change]:
    """Strip build leftovers and per-machine identity; set the hostname; return every change."""
    changes: list[Change] = []
    _apt_clean(target, changes)
    for directory, keep in _CLEAR_DIRS:
        st = target.lstat(directory)
        if st is None or st.type is not FileType.DIR:
            continue
        for name in target.listdir(directory):
            if name not in keep:
                _remove(target, f"{directory}/{name}", changes)
    for pattern in _REMOVE_GLOBS:
        for path in target.glob(pattern):
            _remove(target, path, changes)
    _empty_logs(target, "/var/log", changes)
    _machine_id(target, changes)
    _hostkey_unit(target, changes)
    if hostname is not None:
        _write_if_different(target, "/etc/hostname", hostname + "\n", 0o644, changes)
        _hosts_entry(target, hostname, changes)
    logger.info("finalize: %d changes", len(changes))
    return changes


_APT_CACHE_GLOBS = ("/var/cache/apt/archives/*.deb", "/var/cache/apt/*.bin")


def _apt_clean(target: Target, changes: list[Change]) -> None:
    """apt-get clean, recorded as one change: the downloaded packages are build-time files
    that no inventory holds, so one line per .deb would only be noise."""
    if not target.exists("/usr/bin/apt-get"):
        return
    before = [p for g in _APT_CACHE_GLOBS for p in target.glob(g)]
    res = target.run(["apt-get", "clean"], env={"LC_ALL": "C"}, check=False)
    if not res.ok:
        raise BuildError("apt-get clean failed", argv=res.argv, stderr=res.stderr)
    after = [p for g in _APT_CACHE_GLOBS for p in target.glob(g)]
    if before != after:
        changes.append(
            Change(
                CONTROL,
                "/var/cache/apt",
                "apt-get clean",
                f"{len(before)} files",
                f"{len(after)} files",
            )
        )


def _remove(target: Target, path: str, changes: list[Change]) -> None:
    st = target.lstat(path)
    if st is None:
        return
    if st.type is FileType.DIR:
        target.rmtree(path)
    else:
        target.unlink(path)
    changes.append(Change(CONTROL, path, "exists", str(st.type), None))


def _empty_logs(target: Target, directory: str, changes: list[Change]) -> None:
    st = target.lstat(directory)
    if st is None or st.type is not FileType.DIR:
        return
    for name in target.listdir(directory):
        path = f"{directory}/{name}"
        st = target.lstat(path)
        if st is None:
            continue
        if st.type is FileType.DIR:
            _empty_logs(target, path, changes)
        elif st.type is FileType.FILE:
            if name.endswith(_ROTATED_SUFFIXES) or _is_numbered_rotation(name):
                _remove(target, path, changes)
            elif st.size:
                digest = hashlib.sha256(target.read_bytes(path)).hexdigest()
                _rewrite(target, path, b"", st)
                changes.append(
                    Change(CONTROL, path, "content", f"sha256:{digest}", f"sha256:{EMPTY_SHA256}")
                )


def _is_numbered_rotation(name: str) -> bool:
    # dpkg.log.1, syslog.2: what logrotate leaves behind
    stem, dot, num = name.rpartition(".")
    return bool(stem) and dot == "." and num.isdigit()


def _rewrite(target: Target, path: str, data: bytes, st: StatResult) -> None:
    target.write_bytes(path, data, mode=st.mode, uid=st.uid, gid=st.gid)


def _machine_id(target: Target, changes: list[Change]) -> None:
    st = target.lstat("/etc/machine-id")
    if st is not None and st.type is not FileType.FILE:
        _remove(target, "/etc/machine-id", changes)
        st = None
    if st is None or st.size or st.mode != 0o444 or (st.uid, st.gid) != (0, 0):
        before = None if st is None else _describe_file(target, "/etc/machine-id", st)
        target.write_bytes("/etc/machine-id", b"", mode=0o444)
        changes.append(Change(CONTROL, "/etc/machine-id", "content", before, "empty, 0444"))
    dbus = "/var/lib/dbus/machine-id"
    st = target.lstat(dbus)
    if st is not None and not (
        st.type is FileType.SYMLINK and target.readlink(dbus) == "/etc/machine-id"
    ):
        _remove(target, dbus, changes)
        target.symlink("/etc/machine-id", dbus)
        changes.append(Change(CONTROL, dbus, "target", None, "/etc/machine-id"))


def _describe_file(target: Target, path: str, st: StatResult) -> str:
    digest = hashlib.sha256(target.read_bytes(path)).hexdigest()
    return f"sha256:{digest}, {st.mode:04o}"


def _hostkey_unit(target: Target, changes: list[Change]) -> None:
    if not target.exists("/usr/bin/ssh-keygen"):
        logger.info("no ssh-keygen in the image; no host key unit")
        return
    target.mkdir("/etc/systemd/system", parents=True)
    _write_if_different(target, HOSTKEY_UNIT_PATH, HOSTKEY_UNIT_TEXT, 0o644, changes)
    for wanted_by in HOSTKEY_UNIT_WANTED_BY:
        wants = f"/etc/systemd/system/{wanted_by}.wants"
        link = f"{wants}/{HOSTKEY_UNIT}"
        st = target.lstat(wants)
        if st is None:
            target.mkdir(wants, 0o755, parents=True)
        st = target.lstat(link)
        if st is not None:
            if st.type is FileType.SYMLINK and target.readlink(link) == HOSTKEY_UNIT_PATH:
                continue
            _remove(target, link, changes)
        target.symlink(HOSTKEY_UNIT_PATH, link)
        changes.append(Change(CONTROL, link, "target", None, HOSTKEY_UNIT_PATH))


def _write_if_different(
    target: Target, path: str, text: str, mode: int, changes: list[Change]
) -> None:
    st = target.lstat(path)
    before: str | None = None
    if st is not None:
        if st.type is FileType.FILE:
            before = target.read_text(path)
            if before == text and st.mode == mode and (st.uid, st.gid) == (0, 0):
                return
        else:
            _remove(target, path, changes)
    target.write_text(path, text, mode=mode)
    changes.append(Change(CONTROL, path, "content", before, text))


def _hosts_entry(target: Target, hostname: str, changes: list[Change]) -> None:
    """Debian's convention: the hostname resolves through 127.0.1.1 in /etc/hosts."""
    st = target.lstat("/etc/hosts")
    if st is None or st.type is not FileType.FILE:
        return
    before = target.read_text("/etc/hosts")
    lines = [ln for ln in before.splitlines() if not ln.startswith("127.0.1.1")]
    entry = f"127.0.1.1\t{hostname}"
    # right after the localhost line, where Debian's installer puts it
    at = next((i + 1 for i, ln in enumerate(lines) if ln.startswith("127.0.0.1")), 0)
    lines.insert(at, entry)
    after = "\n".join(lines) + "\n"
    if after != before:
        _rewrite(target, "/etc/hosts", after.encode(), st)
        changes.append(Change(CONTROL, "/etc/hosts", "content", before, after))
