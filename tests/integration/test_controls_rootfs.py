"""The command-running primitives (package, user, group, pam) cycled on a real Debian 13
minbase rootfs through RootfsTarget (chroot): fail -> apply -> pass -> nothing left to do."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from goldsmith.controls import build_rule
from goldsmith.controls.rules import config_option as rules_config_option
from goldsmith.errors import ValidationFailedError
from goldsmith.model.records import Status
from goldsmith.targets.rootfs import RootfsTarget

pytestmark = pytest.mark.integration

CACHE = Path(os.environ.get("GOLDSMITH_TEST_CACHE", "/var/cache/goldsmith-test"))
TARBALL = CACHE / "controls-trixie-minbase-ssh.tar"


@pytest.fixture(scope="session")
def minbase_tar() -> Path:
    if not TARBALL.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = CACHE / "controls-trixie-minbase-ssh.tmp.tar"
        subprocess.run(
            [
                "mmdebstrap",
                "--variant=minbase",
                "--include=less,openssh-server",
                "--skip=cleanup/apt/lists",
                "trixie",
                str(tmp),
                "http://deb.debian.org/debian",
            ],
            check=True,
            capture_output=True,
        )
        tmp.rename(TARBALL)
    return TARBALL


@pytest.fixture
def rootfs(minbase_tar: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RootfsTarget]:
    root = Path("/var/tmp") / "helper-controls" / tmp_path_factory.mktemp("r").name
    root.mkdir(parents=True)
    subprocess.run(["tar", "-xf", str(minbase_tar), "-C", str(root)], check=True)
    t = RootfsTarget(root)
    with t.session():
        yield t
    shutil.rmtree(root)


def cycle(t: RootfsTarget, spec: dict[str, object]) -> None:
    rule = build_rule(spec, control="it")
    assert rule.check(t).status is Status.FAIL
    assert rule.plan(t)
    assert rule.apply(t)
    after = rule.check(t)
    assert after.status is Status.PASS, after.evidence
    assert rule.plan(t) == []
    assert rule.apply(t) == []


def test_package_absent_then_present(rootfs: RootfsTarget) -> None:
    cycle(rootfs, {"type": "package", "name": "less", "state": "absent"})
    cycle(rootfs, {"type": "package", "name": "less", "state": "present"})


def test_group_then_user(rootfs: RootfsTarget) -> None:
    cycle(rootfs, {"type": "group", "name": "nanoclaw", "gid": 990})
    cycle(
        rootfs,
        {
            "type": "user",
            "name": "nanoclaw",
            "uid": 990,
            "group": "nanoclaw",
            "home": "/opt/nanoclaw",
        },
    )
    cycle(
        rootfs,
        {
            "type": "user",
            "name": "nanoclaw",
            "uid": 990,
            "group": "nanoclaw",
            "home": "/opt/nanoclaw",
            "shell": "/bin/false",
        },
    )


def test_pam_faillock_profile(rootfs: RootfsTarget) -> None:
    cycle(
        rootfs,
        {
            "type": "pam",
            "name": "goldsmith-faillock",
            "title": "faillock",
            "priority": 1024,
            "sections": {
                "Auth-Type": "Primary",
                "Auth": ["[default=die] pam_faillock.so authfail deny=5 unlock_time=900"],
                "Account-Type": "Additional",
                "Account": ["required pam_faillock.so"],
            },
        },
    )
    text = (rootfs.root / "etc/pam.d/common-auth").read_text()
    assert "pam_faillock.so authfail deny=5 unlock_time=900" in text


SSHD_VALIDATE = list(rules_config_option.SSHD_VALIDATE)


def test_sshd_option_validated_in_the_image(rootfs: RootfsTarget) -> None:
    spec = {
        "type": "config-option",
        "path": "/etc/ssh/sshd_config",
        "style": "sshd",
        "key": "PermitRootLogin",
        "value": "no",
        "dropin": "/etc/ssh/sshd_config.d/00-goldsmith.conf",
        "validate": SSHD_VALIDATE,
    }
    cycle(rootfs, spec)
    bad = build_rule({**spec, "key": "MaxAuthTries", "value": "many"}, control="it")
    before = (rootfs.root / "etc/ssh/sshd_config").read_text()
    with pytest.raises(ValidationFailedError):
        bad.apply(rootfs)
    assert (rootfs.root / "etc/ssh/sshd_config").read_text() == before
