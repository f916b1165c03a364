"""The session's one boot test, run in a child process beside the other tests.

Under TCG the boot test takes 9-15 minutes, most of it the guest's own CPU; the rest of the
integration tests and the unit tests take about as long on the host's other core. So once the
image is built, ``conftest.built`` starts this module as a separate process (not a thread:
the unit tests count this process's descriptors), the other tests run meanwhile, and the
tests that need the result (marked ``boot``) are ordered last and wait for it.

Run as ``python _background_boot.py OUT_DIR WORK_ROOT CACHE RESULT``; it writes the pickled
:class:`BoottestResult` to RESULT and exits 0, or prints the error and exits 1.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from goldsmith.boot.boottest import BoottestOptions, BoottestResult, run_boottest
from goldsmith.model.profile_loader import load_profile
from goldsmith.scan.exceptions import load_exceptions

PROFILE = "nanoclaw-debian13"


def options(cache: Path, work_root: Path) -> BoottestOptions:
    # Lynis and OpenSCAP inside a TCG guest take 15-30 minutes each here (a KVM guest:
    # about a minute): the CI budget cannot carry them. `make image` runs them; here the
    # chroot Lynis and oscap-chroot of the session's rootfs scan stand in.
    #
    # One vCPU: beside the other tests the host is busy, and a two-vCPU TCG guest then
    # panicked once while the kernel patched its own code at boot (an int3 Oops in
    # sched_clock_idle_wakeup_event, 10 s in); one vCPU has no other CPU to race, and leaves
    # the host's second core to the tests.
    return BoottestOptions(
        cache_dir=cache,
        work_root=work_root,
        guest_lynis=False,
        guest_openscap=False,
        exceptions=tuple(load_exceptions(load_profile(PROFILE))),
        cpus=1,
        # beside a busy host a one-vCPU TCG boot took over 10 minutes once (another TCG guest
        # was running too); the two-vCPU boot of `make image` takes about 2 minutes alone
        timeout=1200,
    )


@dataclass
class BackgroundBoot:
    """A running (or finished) background boot test and where its answer will be."""

    proc: subprocess.Popen[bytes]
    result: Path
    log: Path
    started: float

    @classmethod
    def start(cls, out_dir: Path, work_root: Path, cache: Path, scratch: Path) -> BackgroundBoot:
        result, log = scratch / "boottest-result.pickle", scratch / "boottest-process.log"
        result.unlink(missing_ok=True)
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    *(str(p) for p in (out_dir, work_root, cache, result)),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # stopped as a group if the session ends first
            )
        return cls(proc, result, log, time.monotonic())

    def wait(self, timeout: float) -> BoottestResult:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(
                f"the background boot test did not finish in {timeout:.0f} s; "
                f"its log:\n{self._tail()}"
            ) from None
        if rc != 0 or not self.result.is_file():
            raise AssertionError(f"the background boot test failed (exit {rc}):\n{self._tail()}")
        got = pickle.loads(self.result.read_bytes())  # our own child's answer
        assert isinstance(got, BoottestResult)
        return got

    def stop(self) -> None:
        """End the child and its QEMU (the session ended, or gave up waiting)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def _tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError as exc:
            return f"(no log: {exc})"


def main(argv: list[str]) -> int:
    out_dir, work_root, cache, result = (Path(a) for a in argv)
    # SIGTERM (the session ended first) unwinds run_boottest, which stops QEMU on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    got = run_boottest(out_dir, load_profile(PROFILE).profile, options(cache, work_root))
    tmp = result.with_name(result.name + ".tmp")
    tmp.write_bytes(pickle.dumps(got))
    tmp.replace(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
