"""The boot-test copy: the account lands in the copy, never in the gold image (root only)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from goldsmith.boot.inject import (
    ASKPASS_NAME,
    SUDOERS_FILE,
    AgeingPolicy,
    ShadowEntry,
    _check_shadow,
    ageing_policy,
    askpass_text,
    new_password,
    prepare_test_copy,
    read_facts,
    sha256_file,
    sudoers_text,
)
from goldsmith.build.diskimage import compute_layout, mkfs_argv, render_sfdisk_script
from goldsmith.errors import BootTestError
from goldsmith.model.profile import Partition, Profile
from goldsmith.model.profile_loader import load_profile

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("sfdisk") is None or shutil.which("useradd") is None,
    reason="needs root (loop devices, mount), sfdisk and useradd",
)
LIBCRYPT = ctypes.util.find_library("crypt")


def crypt(password: str, setting: str) -> str:
    assert LIBCRYPT is not None
    lib = ctypes.CDLL(LIBCRYPT)
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    return str(lib.crypt(password.encode(), setting.encode()).decode())


KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJtestkeytestkeytestkeytestkeytestkeytestkey t@x"


def small_profile() -> Profile:
    base = load_profile("nanoclaw-debian13").profile
    image = base.image.model_copy(
        update={
            "root_size": "24M",
            "partitions": [
                Partition(mountpoint="/tmp", fs="tmpfs", size="8M", options=["nodev"]),
                Partition(mountpoint="/var/log", fs="ext4", size="8M", options=["nodev"]),
            ],
        }
    )
    return base.model_copy(update={"image": image})


def make_tree(root: Path, *, with_group: bool = True) -> None:
    (root / "etc/audit/rules.d").mkdir(parents=True)
    (root / "etc/sudoers.d").mkdir(parents=True)
    (root / "etc/ssh").mkdir(parents=True)
    (root / "home").mkdir()
    (root / "root").mkdir(mode=0o700)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/shadow").write_text("root:*:20000:0:99999:7:::\n")
    groups = "root:x:0:\n" + ("sshusers:x:998:\n" if with_group else "")
    (root / "etc/group").write_text(groups)
    (root / "etc/gshadow").write_text(groups.replace(":x:", ":*:").replace(":998:", ":"))
    (root / "etc/shadow").chmod(0o640)
    # as the hardened image has it (permissions.shadow-backup); no gshadow- at all
    (root / "etc/shadow-").write_text("root:*:19999:0:99999:7:::\n")
    (root / "etc/shadow-").chmod(0o000)
    (root / "etc/skel").mkdir()
    # the hardened image's ageing policy; INACTIVE spelt as the image spells it (with blanks,
    # which useradd itself does not read)
    (root / "etc/login.defs").write_text(
        "PASS_MAX_DAYS\t365\nPASS_MIN_DAYS\t1\nPASS_WARN_AGE\t7\nENCRYPT_METHOD YESCRYPT\n"
    )
    (root / "etc/default").mkdir()
    (root / "etc/default/useradd").write_text("# INACTIVE=-1\nSHELL=/bin/sh\nINACTIVE = 45\n")
    (root / "etc/skel/.bashrc").write_text("# stock skeleton\n")
    (root / "etc/audit/rules.d/10-base.rules").write_text("-D\n-b 8192\n")
    (root / "etc/audit/rules.d/2-first.rules").write_text("# c\n-w /etc/passwd -p wa -k id\n")
    (root / "etc/audit/rules.d/99-finalize.rules").write_text("-e 2\n")


def make_disk(tmp_path: Path, profile: Profile, **tree_kw: bool) -> Path:
    layout = compute_layout(profile)
    disk = tmp_path / "gold.raw"
    with disk.open("wb") as f:
        f.truncate(layout.size)
    subprocess.run(
        ["sfdisk", "--quiet", str(disk)],
        input=render_sfdisk_script(layout),
        text=True,
        check=True,
        capture_output=True,
    )
    for p in layout.partitions:
        tree = tmp_path / f"tree-{p.label}"
        tree.mkdir()
        if p.mountpoint == "/":
            make_tree(tree, **tree_kw)
        subprocess.run(mkfs_argv(p, tree, disk), check=True, capture_output=True)
    return disk


@contextlib.contextmanager
def mounted_root(disk: Path, profile: Profile, where: Path) -> Iterator[Path]:
    root = compute_layout(profile).root
    where.mkdir()
    subprocess.run(
        [
            "mount",
            "-o",
            f"ro,loop,offset={root.offset},sizelimit={root.size}",
            str(disk),
            str(where),
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def loop_devices_of(path: Path) -> str:
    return subprocess.run(
        ["losetup", "-j", str(path)], capture_output=True, text=True, check=False
    ).stdout


@needs_root
def test_account_goes_into_the_copy_and_the_gold_image_is_unchanged(tmp_path: Path) -> None:
    profile = small_profile()
    gold = make_disk(tmp_path, profile)
    before = sha256_file(gold)
    copy = prepare_test_copy(
        gold,
        profile,
        tmp_path / "work",
        key_line=KEY,
        fingerprint="SHA256:t",
        allow_group="sshusers",
    )
    assert sha256_file(gold) == before == copy.gold_sha256
    assert copy.disk != gold and copy.disk.is_file()
    assert not loop_devices_of(copy.disk), "loop device left attached"
    inj = copy.injection
    assert inj.user == "gsboottest" and inj.allow_group_in_image
    assert set(inj.groups) == {"gsboottest", "sshusers"}
    # the facts were read before the injection, from the image as built
    assert copy.facts.audit_rules == ("-w /etc/passwd -p wa -k id", "-D", "-b 8192", "-e 2")
    assert copy.facts.ssh_host_keys == ()

    with mounted_root(copy.disk, profile, tmp_path / "copy") as root:
        passwd = (root / "etc/passwd").read_text()
        assert "gsboottest:" in passwd
        uid, gid = (int(x) for x in passwd.split("gsboottest:x:")[1].split(":")[:2])
        assert "sshusers:x:998:gsboottest" in (root / "etc/group").read_text()
        shadow = {
            ln.split(":")[0]: ln.split(":") for ln in (root / "etc/shadow").read_text().splitlines()
        }
        # a real password for sudo (yescrypt, the image's ENCRYPT_METHOD); the image's own
        # ageing policy, INACTIVE included: today, min 1, max 365, warn 7, inactive 45
        entry = shadow["gsboottest"]
        today = int(time.time() // 86400)
        assert entry[1].startswith("$y$")
        assert today - 1 <= int(entry[2]) <= today
        assert entry[3:7] == ["1", "365", "7", "45"]
        assert inj.shadow == ShadowEntry("$y$", int(entry[2]), 1, 365, 7, 45)
        # the helper for sudo -A: the account's own, 0700, and it prints that password
        askpass = root / "var/lib/gsboottest" / ASKPASS_NAME
        assert inj.askpass == f"/var/lib/gsboottest/{ASKPASS_NAME}"
        st = askpass.lstat()
        assert st.st_mode & 0o7777 == 0o700 and (st.st_uid, st.st_gid) == (uid, gid)
        out = subprocess.run([askpass], capture_output=True, text=True, check=True).stdout
        password = out.rstrip("\n")
        assert len(password) == 32 and out == password + "\n"
        if LIBCRYPT is not None:
            assert crypt(password, entry[1]) == entry[1]
        # the password is nowhere in what the boot test records
        assert password not in json.dumps(dataclasses.asdict(inj))
        # the backups keep the gold image's modes; one it did not have is not added; none
        # holds the account's hash
        backup = (root / "etc/shadow-").stat()
        assert backup.st_mode & 0o7777 == 0 and (backup.st_uid, backup.st_gid) == (0, 0)
        assert "gsboottest:$" not in (root / "etc/shadow-").read_text()
        assert not (root / "etc/gshadow-").exists()
        assert not (root / "etc/passwd-").exists()
        # an empty skeleton: no 0644 dotfiles of the test account for the scanners to judge
        assert sorted(p.name for p in (root / "var/lib/gsboottest").iterdir()) == [
            ".ssh",
            ASKPASS_NAME,
        ]
        assert not (root / "etc/goldsmith-boottest-skel").exists()
        # on the root filesystem: a separate /home would hide it at boot
        auth = root / "var/lib/gsboottest/.ssh/authorized_keys"
        assert auth.read_text() == KEY + "\n"
        assert auth.stat().st_mode & 0o777 == 0o600
        assert auth.stat().st_uid == uid
        assert (root / "root/.ssh/authorized_keys").read_text() == KEY + "\n"
        sudoers = root / SUDOERS_FILE.lstrip("/")
        assert sudoers.read_text() == sudoers_text("gsboottest")
        assert "NOPASSWD" not in sudoers.read_text()
        assert sudoers.stat().st_mode & 0o777 == 0o440
    with mounted_root(gold, profile, tmp_path / "gold") as root:
        assert "gsboottest" not in (root / "etc/passwd").read_text()
        assert not (root / SUDOERS_FILE.lstrip("/")).exists()
        assert not (root / "root/.ssh").exists()


@needs_root
def test_missing_allow_group_is_recorded_not_invented(tmp_path: Path) -> None:
    profile = small_profile()
    gold = make_disk(tmp_path, profile, with_group=False)
    copy = prepare_test_copy(
        gold,
        profile,
        tmp_path / "work",
        key_line=KEY,
        fingerprint="SHA256:t",
        allow_group="sshusers",
    )
    assert not copy.injection.allow_group_in_image
    assert copy.injection.groups == ("gsboottest",)
    with mounted_root(copy.disk, profile, tmp_path / "copy") as root:
        assert "sshusers" not in (root / "etc/group").read_text()


@needs_root
def test_existing_user_name_is_refused_and_cleaned_up(tmp_path: Path) -> None:
    profile = small_profile()
    gold = make_disk(tmp_path, profile)
    prepare_test_copy(
        gold,
        profile,
        tmp_path / "w1",
        key_line=KEY,
        fingerprint="x",
        allow_group=None,
        user="root2",
    )
    with pytest.raises(BootTestError, match="already has a user 'root'"):
        prepare_test_copy(
            gold,
            profile,
            tmp_path / "w2",
            key_line=KEY,
            fingerprint="x",
            allow_group=None,
            user="root",
        )
    assert not (tmp_path / "w2/boottest-copy.raw").exists()
    assert not loop_devices_of(tmp_path / "w2/boottest-copy.raw")


def test_facts_follow_augenrules_order_and_skip_comments(tmp_path: Path) -> None:
    make_tree(tmp_path)
    facts = read_facts(tmp_path)
    assert facts.audit_rules_files == (
        "/etc/audit/rules.d/2-first.rules",
        "/etc/audit/rules.d/10-base.rules",
        "/etc/audit/rules.d/99-finalize.rules",
    )
    (tmp_path / "etc/ssh/ssh_host_ed25519_key").write_text("x")
    assert read_facts(tmp_path).ssh_host_keys == ("/etc/ssh/ssh_host_ed25519_key",)


def test_sudoers_names_only_the_listed_commands_and_asks_for_the_password() -> None:
    text = sudoers_text("gsboottest")
    rules = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert "gsboottest ALL=(root) GOLDSMITH_BOOTTEST" in rules
    # what sudo.nopasswd-absent, sudo.authenticate-not-disabled and OpenSCAP's
    # sudo_require_authentication look for
    assert not re.search(r"\bNOPASSWD\b", text) and not re.search(r"!\s*authenticate", text)
    assert "ALL=(root) ALL" not in text
    assert "Defaults:gsboottest !use_pty, !requiretty, !lecture" in rules
    assert sum(ln.startswith("Cmnd_Alias GOLDSMITH_BOOTTEST = ") for ln in rules) == 1


def test_passwords_are_fresh_strong_and_safe_to_quote() -> None:
    seen = {new_password() for _ in range(50)}
    assert len(seen) == 50
    for pw in seen:
        assert len(pw) == 32
        assert any(c.islower() for c in pw) and any(c.isupper() for c in pw)
        assert any(c.isdigit() for c in pw) and any(not c.isalnum() for c in pw)
        assert not set(pw) & set("'\"\\: \t$`!")
        text = askpass_text(pw)
        assert text.startswith("#!/bin/sh\n") and f"'{pw}'" in text
    with pytest.raises(BootTestError):
        askpass_text("it's")


def test_ageing_policy_reads_the_images_files_as_it_means_them(tmp_path: Path) -> None:
    make_tree(tmp_path)
    assert ageing_policy(tmp_path) == AgeingPolicy("YESCRYPT", 1, 365, 7, 45)
    (tmp_path / "etc/default/useradd").write_text("INACTIVE=-1\n")
    (tmp_path / "etc/login.defs").unlink()
    assert ageing_policy(tmp_path) == AgeingPolicy("SHA512", None, None, None, None)


def test_a_shadow_entry_off_the_images_policy_is_refused() -> None:
    policy = AgeingPolicy("YESCRYPT", 1, 365, 7, 45)
    today = int(time.time() // 86400)
    _check_shadow(ShadowEntry("$y$", today, 1, 365, 7, 45), policy, "u")
    for bad, what in (
        (ShadowEntry("*", today, 1, 365, 7, 45), "not a crypt hash"),
        (ShadowEntry("$y$", today + 2, 1, 365, 7, 45), "last change"),
        (ShadowEntry("$y$", today, 0, 99999, 7, 45), "max_days is 99999"),
        (ShadowEntry("$y$", today, 1, 365, 7, None), "inactive_days is None"),
    ):
        with pytest.raises(BootTestError, match=what):
            _check_shadow(bad, policy, "u")


def test_the_test_home_is_on_the_root_filesystem() -> None:
    from goldsmith.boot.inject import boot_home

    # /home is its own filesystem in the default profile: a home there would be hidden at boot
    assert boot_home("gsboottest", ["/home", "/tmp", "/var/log"]) == "/var/lib/gsboottest"
    assert boot_home("gsboottest", ["/var", "/home"]) == "/opt/gsboottest"
    assert boot_home("gsboottest", ["/var", "/opt"]) == "/gsboottest"
    assert boot_home("u", ["/variable"]) == "/var/lib/u"  # a prefix is not a parent
