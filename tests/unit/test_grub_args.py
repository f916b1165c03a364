"""The kernel command line in grub.cfg follows the image's own GRUB defaults."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from goldsmith.build.diskimage import image_grub_args, kernel_cmdline, render_grub_cfg
from goldsmith.errors import BuildError
from goldsmith.model.profile_loader import load_profile
from goldsmith.targets.base import RunResult
from goldsmith.targets.rootfs import RootfsTarget


class ShTarget(RootfsTarget):
    """Runs /bin/sh with the image's /etc/default as the working directory's copy.

    The real target chroots; here the script runs on the host against a test tree whose
    paths are rewritten, which is enough to prove the sourcing order and the parsing.
    """

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> RunResult:
        script = argv[-1].replace("/etc/default", str(self.root / "etc/default"))
        proc = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True)
        return RunResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)


def _tree(tmp_path: Path, files: dict[str, str]) -> ShTarget:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return ShTarget(tmp_path)


def test_dropins_append_in_order(tmp_path: Path) -> None:
    t = _tree(
        tmp_path,
        {
            "etc/default/grub": 'GRUB_CMDLINE_LINUX=""\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\n',
            "etc/default/grub.d/60-audit.cfg": (
                'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX audit=1 audit_backlog_limit=8192"\n'
            ),
            "etc/default/grub.d/70-aa.cfg": 'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX apparmor=1"\n',
            "etc/default/grub.d/README": 'GRUB_CMDLINE_LINUX="ignored"\n',
        },
    )
    assert image_grub_args(t) == ["audit=1", "audit_backlog_limit=8192", "apparmor=1", "quiet"]


def test_no_grub_defaults_gives_nothing(tmp_path: Path) -> None:
    assert image_grub_args(_tree(tmp_path, {"etc/hostname": "x\n"})) == []


def test_unsafe_word_is_refused(tmp_path: Path) -> None:
    t = _tree(tmp_path, {"etc/default/grub": "GRUB_CMDLINE_LINUX='init=/bin/sh;reboot'\n"})
    with pytest.raises(BuildError, match="init=/bin/sh;reboot"):
        image_grub_args(t)


def test_cmdline_merges_without_duplicates() -> None:
    profile = load_profile("nanoclaw-debian13").profile
    line = kernel_cmdline(profile, ["audit=1", profile.image.cmdline[0], "quiet"])
    words = line.split()
    assert words[0].startswith("root=UUID=") and words[1] == "ro"
    assert words.count(profile.image.cmdline[0]) == 1
    assert words[-2:] == ["audit=1", "quiet"]
    cfg = render_grub_cfg(profile, kernel="/boot/vmlinuz", initrd="/boot/initrd", extra=["audit=1"])
    assert any(
        ln.strip().startswith("linux /boot/vmlinuz") and "audit=1" in ln for ln in cfg.splitlines()
    )
