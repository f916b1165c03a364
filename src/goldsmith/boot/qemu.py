"""Boot a disk image under QEMU and watch its serial console.

``running_vm`` is the building block: it starts ``qemu-system-x86_64`` on the disk (no
``-kernel``: SeaBIOS boots GRUB from the disk), reads the serial console from QEMU's stdout
into a log file and a ``ConsoleWatcher``, forwards loopback TCP ports to the guest
(user-mode networking, ``hostfwd=tcp:127.0.0.1:HOST-:GUEST``), and talks QMP over a unix
socket in a private temporary directory. Whatever happens in the ``with`` body (failure,
timeout, Ctrl-C), the VM is killed on the way out. ``boot_to_login`` is the boot test:
console to a ``login:`` prompt, then an ACPI power-off.

KVM: ``/dev/kvm`` can exist and still be unusable (nested virtualisation without VT-x:
QEMU aborts with "failed to set MSR"). ``kvm_usable`` asks QEMU itself with a short real
probe, once per process. A host whose KVM is PVM (the ``kvm_pvm`` module: KVM without VT-x
for PVM-enabled guest kernels only) passes that probe, and GRUB even runs, but a stock Debian
kernel never prints a line: it is judged unusable before QEMU is asked.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from goldsmith.errors import BootTestError, ToolMissingError

log = logging.getLogger(__name__)

QEMU = "qemu-system-x86_64"
QEMU_PACKAGE = "qemu-system-x86"
LOGIN_RE = re.compile(rb"(?:^|\n)[A-Za-z0-9][A-Za-z0-9.-]* login: ?", re.MULTILINE)
#: the guest kernel gave up: nothing a wait is waiting for will show after this line
PANIC_RE = re.compile(rb"Kernel panic - not syncing[^\n]*")
# CSI and OSC escape sequences, charset selections; the login prompt is matched without them
_ANSI_RE = re.compile(
    rb"\x1b(?:\[[0-9;?!<=>]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()][0-9A-Za-z])"
)
_WINDOW = 16 * 1024
KVM_PROBE_SECONDS = 3.0
#: where loaded kernel modules show (``kvm_pvm`` is looked for there)
SYS_MODULE = Path("/sys/module")


# --- KVM probe -----------------------------------------------------------------------------


@dataclass(frozen=True)
class KvmProbe:
    usable: bool
    reason: str


def kvm_probe_argv() -> list[str]:
    """A VM with the flags a KVM boot uses (``-cpu host``), no disk, nothing to boot."""
    return [
        QEMU,
        "-machine",
        "pc,accel=kvm",
        "-cpu",
        "host",
        "-m",
        "64",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        "none",
    ]


def parse_kvm_probe(returncode: int | None, stderr: str) -> KvmProbe:
    """Judge a probe run. ``returncode`` None: QEMU was still running after the probe time,
    i.e. the vCPU was created, its registers set and it ran; that is a working KVM."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "warning:" not in ln]
    first = errors[0] if errors else (lines[0] if lines else "")
    if returncode is None:
        return KvmProbe(True, "QEMU ran a KVM guest")
    if "failed to set MSR" in stderr or "kvm_buf_set_msrs" in stderr:
        return KvmProbe(False, f"KVM cannot run this CPU (nested without VT-x?): {first}")
    if "Could not access KVM kernel module" in stderr or "/dev/kvm" in stderr:
        return KvmProbe(False, f"KVM not accessible: {first}")
    if "kvm" in stderr.lower() and ("not supported" in stderr or "failed to initialize" in stderr):
        return KvmProbe(False, f"KVM not supported: {first}")
    if returncode == 0:
        # a guest with nothing to boot does not power off by itself; exiting is odd
        return KvmProbe(False, f"QEMU exited at once under KVM: {first or 'no message'}")
    return KvmProbe(False, f"QEMU failed under KVM (exit {returncode}): {first or 'no message'}")


def kvm_module_problem(sys_module: Path = SYS_MODULE) -> str | None:
    """Why the host's KVM module cannot boot a stock guest kernel, or ``None``.

    PVM (``kvm_pvm``, "Pagetable-based Virtual Machine") runs guests without VT-x, but only
    guest kernels built for it. Seen here: QEMU starts, SeaBIOS and GRUB run, then the Debian
    kernel stalls without a line on the console (the host logs ``kvm-pvm: INTERNAL_ERROR``).
    """
    if (sys_module / "kvm_pvm").is_dir():
        return (
            "the host's KVM is PVM (module kvm_pvm), which runs only PVM-enabled guest "
            "kernels, not the image's stock kernel"
        )
    return None


@functools.cache
def probe_kvm() -> KvmProbe:
    if not os.path.exists("/dev/kvm"):  # noqa: PTH110
        return KvmProbe(False, "/dev/kvm does not exist")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return KvmProbe(False, "/dev/kvm is not readable and writable for this user")
    problem = kvm_module_problem()
    if problem is not None:
        log.info("KVM probe: unusable (%s)", problem)
        return KvmProbe(False, problem)
    if shutil.which(QEMU) is None:
        return KvmProbe(False, f"{QEMU} is not installed")
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            kvm_probe_argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
        )
        try:
            returncode: int | None = proc.wait(timeout=KVM_PROBE_SECONDS)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    result = parse_kvm_probe(returncode, stderr)
    log.info("KVM probe: %s (%s)", "usable" if result.usable else "unusable", result.reason)
    return result


def kvm_usable() -> bool:
    return probe_kvm().usable


def resolve_accel(accel: str) -> str:
    if accel == "auto":
        return "kvm" if kvm_usable() else "tcg"
    if accel not in ("kvm", "tcg"):
        raise BootTestError(f"unknown accelerator {accel!r}", hint="use auto, kvm or tcg")
    return accel


# --- console -------------------------------------------------------------------------------


def strip_ansi(data: bytes) -> bytes:
    return _ANSI_RE.sub(b"", data).replace(b"\r", b"")


class ConsoleWatcher:
    """Accumulates console bytes and finds patterns in them, across chunk boundaries."""

    def __init__(self) -> None:
        self._raw = bytearray()

    def feed(self, chunk: bytes) -> None:
        self._raw += chunk

    def search(self, pattern: re.Pattern[bytes], start: int = 0) -> re.Match[bytes] | None:
        """First match of ``pattern`` in the cleaned console text from raw offset ``start``.

        The text is cleaned (escape sequences, carriage returns) from the raw bytes on every
        search, so a sequence or a prompt split across chunks is still found.
        """
        return pattern.search(strip_ansi(bytes(self._raw[start:])))

    @property
    def size(self) -> int:
        return len(self._raw)

    def text(self) -> str:
        return strip_ansi(bytes(self._raw)).decode("utf-8", "replace")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.text().splitlines()[-lines:])


# --- QMP -----------------------------------------------------------------------------------


class QmpClient:
    """Just enough QMP: greeting, capabilities negotiation, commands; events are skipped."""

    def __init__(self, path: Path, *, timeout: float = 10.0) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        self._sock.connect(str(path))
        self._file = self._sock.makefile("rb")
        greeting = self._read()
        if "QMP" not in greeting:
            raise BootTestError(f"unexpected QMP greeting: {greeting}")
        self.execute("qmp_capabilities")

    def _read(self) -> dict[str, Any]:
        line = self._file.readline()
        if not line:
            raise ConnectionError("QMP connection closed")
        doc: dict[str, Any] = json.loads(line)
        return doc

    def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        msg: dict[str, Any] = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self._sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            reply = self._read()
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise BootTestError(f"QMP {command} failed: {reply['error']}")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
            self._sock.close()


# --- the VM --------------------------------------------------------------------------------


def _disk_format(disk: Path) -> str:
    with disk.open("rb") as f:
        return "qcow2" if f.read(4) == b"QFI\xfb" else "raw"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def qemu_argv(
    disk: Path,
    *,
    accel: str,
    memory_mb: int,
    cpus: int,
    qmp_socket: Path,
    snapshot: bool,
    hostfwd: Sequence[tuple[int, int]],
    extra_args: Sequence[str] = (),
) -> list[str]:
    drive = f"file={disk},format={_disk_format(disk)},if=virtio,cache=unsafe"
    if snapshot:
        drive += ",snapshot=on"
    netdev = "user,id=net0"
    for host_port, guest_port in hostfwd:
        netdev += f",hostfwd=tcp:127.0.0.1:{host_port}-:{guest_port}"
    return [
        QEMU,
        "-name",
        "goldsmith-boot-test",
        "-machine",
        f"pc,accel={accel}",
        "-cpu",
        "host" if accel == "kvm" else "max",
        "-smp",
        str(cpus),
        "-m",
        str(memory_mb),
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        "stdio",
        "-qmp",
        f"unix:{qmp_socket},server=on,wait=off",
        "-drive",
        drive,
        "-netdev",
        netdev,
        "-device",
        "virtio-net-pci,netdev=net0",
        "-device",
        "virtio-rng-pci",
        # a guest reboot or panic ends the run instead of looping
        "-no-reboot",
        *extra_args,
    ]


class RunningVM:
    """A booted (or booting) QEMU guest. Created by ``running_vm``."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        *,
        accel: str,
        argv: list[str],
        console_log: Path,
        qmp_socket: Path,
        stderr_path: Path,
        ports: dict[int, int],
    ) -> None:
        self.proc = proc
        self.accel = accel
        self.argv = argv
        self.console_log = console_log
        self.qmp_socket = qmp_socket
        #: guest port -> host port on 127.0.0.1
        self.ports = ports
        self.started = time.monotonic()
        self.console = ConsoleWatcher()
        self._stderr_path = stderr_path
        self._cond = threading.Condition()
        self._eof = False
        self._reader = threading.Thread(target=self._read_console, daemon=True)
        self._reader.start()

    def _read_console(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        with self.console_log.open("ab") as out:
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    chunk = b""
                if chunk:
                    out.write(chunk)
                    out.flush()
                with self._cond:
                    if chunk:
                        self.console.feed(chunk)
                    else:
                        self._eof = True
                    self._cond.notify_all()
                if not chunk:
                    return

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def qemu_stderr(self) -> str:
        try:
            return self._stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def mark(self) -> int:
        """The console position now: pass it as ``start`` to wait only for new output."""
        with self._cond:
            return self.console.size

    def wait_for(
        self, pattern: re.Pattern[bytes], *, timeout: float, start: int = 0
    ) -> re.Match[bytes]:
        """Block until ``pattern`` shows on the console (searched from raw offset ``start``).

        Raises BootTestError with the console's last lines on timeout, if QEMU exits, or as
        soon as the guest kernel panics (instead of waiting out the timeout).
        """
        deadline = time.monotonic() + timeout
        pos = start
        with self._cond:
            while True:
                m = self.console.search(pattern, pos)
                if m is not None:
                    return m
                panic = self.console.search(PANIC_RE, pos)
                if panic is not None:
                    tail = self.console.tail(60)
                    raise BootTestError(
                        f"the guest kernel panicked after "
                        f"{time.monotonic() - self.started:.0f} s (accel {self.accel}): "
                        f"{panic.group(0).decode('utf-8', 'replace').strip()}\n"
                        f"console (last 60 lines):\n{tail}",
                        hint=f"full console log: {self.console_log}",
                    )
                # the next search re-reads a window before the end: matches split across
                # chunks are found, and a long console is not rescanned from the start
                pos = max(start, self.console.size - _WINDOW)
                if self._eof or not self.alive:
                    exited = True
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    exited = False
                    break
                self._cond.wait(min(left, 1.0))
            tail = self.console.tail(40)
        if exited:
            try:
                rc: int | None = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                rc = None
            raise BootTestError(
                f"QEMU exited (status {rc}) before the console showed {pattern.pattern!r}\n"
                f"qemu stderr:\n{self.qemu_stderr().strip()}\n"
                f"console (last 40 lines):\n{tail}",
                hint=f"full console log: {self.console_log}",
            )
        raise BootTestError(
            f"no {pattern.pattern!r} on the console after {timeout:.0f} s (accel {self.accel})\n"
            f"console (last 40 lines):\n{tail}",
            hint=f"full console log: {self.console_log}",
        )

    def send_console(self, text: str) -> None:
        """Type on the serial console (a later issue logs in this way or over SSH)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def qmp(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        client = QmpClient(self.qmp_socket)
        try:
            return client.execute(command, arguments)
        finally:
            client.close()

    def powerdown(self, *, timeout: float = 120.0) -> bool:
        """ACPI power button, then wait for the guest to power off. True if it did."""
        if not self.alive:
            return False
        try:
            self.qmp("system_powerdown")
        except (OSError, ConnectionError, BootTestError) as e:
            log.warning("QMP system_powerdown failed: %s", e)
            return False
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("guest did not power off within %.0f s", timeout)
            return False
        return True

    def stop(self) -> None:
        """End QEMU whatever state it is in: QMP quit, then SIGKILL."""
        if self.alive:
            with contextlib.suppress(Exception):
                self.qmp("quit")
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        if self.alive:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def _die_with_parent() -> None:
    # QEMU must not outlive a killed build (prctl PR_SET_PDEATHSIG = 1)
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


@contextlib.contextmanager
def running_vm(
    disk: Path,
    *,
    accel: str = "auto",
    memory_mb: int = 1024,
    cpus: int = 2,
    log_path: Path | None = None,
    snapshot: bool = True,
    hostfwd: Sequence[tuple[int, int]] = (),
    extra_args: Sequence[str] = (),
) -> Iterator[RunningVM]:
    """Start QEMU on ``disk``; yield a RunningVM; always kill QEMU on the way out.

    ``hostfwd`` pairs are (host_port, guest_port) on 127.0.0.1; a host port of 0 picks a
    free one. ``vm.ports`` maps each guest port to its host port.
    """
    if shutil.which(QEMU) is None:
        raise ToolMissingError(QEMU, QEMU_PACKAGE)
    if not disk.is_file():
        raise BootTestError(f"disk image {disk} does not exist")
    used = resolve_accel(accel)
    if used == "kvm" and accel == "kvm" and not kvm_usable():
        raise BootTestError(f"KVM was requested but does not work: {probe_kvm().reason}")
    pairs = [(hp or free_port(), gp) for hp, gp in hostfwd]
    with tempfile.TemporaryDirectory(prefix="goldsmith-qemu-") as tmp:
        tmpdir = Path(tmp)
        qmp_socket = tmpdir / "qmp.sock"
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix="goldsmith-console-", suffix=".log")
            os.close(fd)
            log_path = Path(name)
        else:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_path.write_bytes(b"")
        argv = qemu_argv(
            disk,
            accel=used,
            memory_mb=memory_mb,
            cpus=cpus,
            qmp_socket=qmp_socket,
            snapshot=snapshot,
            hostfwd=pairs,
            extra_args=extra_args,
        )
        stderr_path = tmpdir / "qemu.stderr"
        log.info("starting: %s", " ".join(argv))
        with stderr_path.open("wb") as err:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                # Ctrl-C reaches us, not QEMU: we tear it down in order
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        vm = RunningVM(
            proc,
            accel=used,
            argv=argv,
            console_log=log_path,
            qmp_socket=qmp_socket,
            stderr_path=stderr_path,
            ports={gp: hp for hp, gp in pairs},
        )
        try:
            yield vm
        finally:
            vm.stop()


@dataclass(frozen=True)
class BootResult:
    accel: str  # "kvm" or "tcg"
    seconds: float  # QEMU start to the login prompt
    console_log: Path
    clean_shutdown: bool  # the guest powered itself off after the ACPI power button
    shutdown_seconds: float | None = None


def boot_to_login(
    disk: Path,
    *,
    timeout: float = 300,
    accel: str = "auto",
    memory_mb: int = 1024,
    log_path: Path | None = None,
    snapshot: bool = True,
    extra_args: Sequence[str] = (),
    powerdown_timeout: float = 120.0,
) -> BootResult:
    """Boot ``disk`` to a ``login:`` prompt on the serial console, then power it off.

    Raises BootTestError (with the console's last 40 lines) if there is no login prompt
    within ``timeout`` seconds or QEMU dies first. A guest that does not power off after
    the ACPI power button is killed; ``clean_shutdown`` says which happened.
    """
    with running_vm(
        disk,
        accel=accel,
        memory_mb=memory_mb,
        log_path=log_path,
        snapshot=snapshot,
        extra_args=extra_args,
    ) as vm:
        vm.wait_for(LOGIN_RE, timeout=timeout)
        seconds = round(time.monotonic() - vm.started, 3)
        log.info("login prompt after %.1f s (%s)", seconds, vm.accel)
        t0 = time.monotonic()
        clean = vm.powerdown(timeout=powerdown_timeout)
        shutdown = round(time.monotonic() - t0, 3) if clean else None
        return BootResult(
            accel=vm.accel,
            seconds=seconds,
            console_log=vm.console_log,
            clean_shutdown=clean,
            shutdown_seconds=shutdown,
        )
