"""Waiting on a guest's serial console: a kernel panic ends the wait at once, with the reason.

The "guest" is a shell printing what a booting kernel prints, then staying alive (as QEMU does
after a panic), so only the panic detection can end the wait before the timeout.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from goldsmith.boot.qemu import LOGIN_RE, RunningVM
from goldsmith.errors import BootTestError

PANIC = (
    "[    9.766760] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI\\n"
    "[    9.802356] Kernel panic - not syncing: Fatal exception in interrupt\\n"
    "[    9.838004] ---[ end Kernel panic - not syncing: Fatal exception in interrupt ]---\\n"
)


def _vm(tmp_path: Path, script: str) -> RunningVM:
    proc = subprocess.Popen(
        ["sh", "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None
    )
    return RunningVM(
        proc,
        accel="tcg",
        argv=["sh"],
        console_log=tmp_path / "console.log",
        qmp_socket=tmp_path / "qmp.sock",
        stderr_path=tmp_path / "qemu.stderr",
        ports={},
    )


def _stop(vm: RunningVM) -> None:
    vm.proc.kill()
    vm.proc.wait()


def test_a_kernel_panic_ends_the_wait_for_the_login_prompt(tmp_path: Path) -> None:
    vm = _vm(tmp_path, f"printf 'GNU GRUB\\n{PANIC}'; exec sleep 60")
    t0 = time.monotonic()
    try:
        with pytest.raises(BootTestError, match="the guest kernel panicked") as info:
            vm.wait_for(LOGIN_RE, timeout=50)
    finally:
        _stop(vm)
    assert time.monotonic() - t0 < 20  # not the 50 s timeout
    assert "Kernel panic - not syncing: Fatal exception in interrupt" in info.value.message
    assert "accel tcg" in info.value.message and "Oops: int3" in info.value.message
    assert "Kernel panic" in (tmp_path / "console.log").read_text()


def test_the_login_prompt_is_found_and_a_quiet_console_times_out(tmp_path: Path) -> None:
    vm = _vm(
        tmp_path, "printf 'Debian GNU/Linux 13 nanoclaw ttyS0\\n\\nnanoclaw login: '; exec sleep 60"
    )
    try:
        assert vm.wait_for(LOGIN_RE, timeout=20).group(0).strip() == b"nanoclaw login:"
        with pytest.raises(BootTestError, match=r"no .* on the console after 1 s"):
            vm.wait_for(LOGIN_RE, timeout=1, start=vm.mark())
    finally:
        _stop(vm)
