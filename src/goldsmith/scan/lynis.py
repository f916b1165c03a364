"""Lynis against an offline rootfs, and a parser for its ``lynis-report.dat``.

How it runs (``mode="chroot"``): the rootfs is copied (:func:`goldsmith.scan.scan_copy`), the
copy gets the usual chroot pseudo-filesystems from :class:`RootfsTarget`, and Debian's lynis
(pinned, from :func:`goldsmith.scan.content.ensure_lynis`) is copied into the copy's ``/run``
tmpfs and started with ``--usecwd``, so it reads only its own include files, database and
default profile, never a profile the image ships. Nothing is installed with apt: installing
lynis would change the package set being scanned. The chroot is entered through
``unshare --mount --pid --net --ipc --uts --fork --mount-proc``: a fresh PID namespace, so Lynis
sees no host processes, and an empty network namespace, so it sees no host sockets and its
``apt-get update`` cannot reach the network (``/proc/sys`` is re-bound read-only inside).

What a chroot cannot show: the running kernel (sysctls, loaded modules), services and
processes. Lynis still reads ``/proc/sys`` -- the build host's kernel -- so warnings of tests
marked ``live`` in ``lynis_map.yaml`` are reported ``not_applicable`` in chroot mode and are
proven at boot test.

Findings: each Lynis *warning* is a ``fail`` finding keyed ``lynis:<TEST-ID>``. *Suggestions*
are advisory (Lynis suggests e.g. installing fail2ban or a malware scanner on every host):
they are not findings, because :class:`Status` has no advisory state and a suggestion is
neither a pass nor a failure; they stay in :attr:`LynisResult.suggestions` for the manifest.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from goldsmith.errors import ToolMissingError
from goldsmith.model.records import Evidence, Finding, Source, Status
from goldsmith.scan import ScanError, run_host, scan_copy
from goldsmith.targets.rootfs import RootfsTarget

log = logging.getLogger(__name__)

#: where the lynis program lives inside the scan copy (on the /run tmpfs of the session)
LYNIS_DIR_IN_IMAGE = "/run/goldsmith-lynis"
REPORT_NAME = "lynis-report.dat"
LOG_NAME = "lynis.log"

# Runs on the host inside the new namespaces: re-bind /proc/sys read-only over the fresh proc
# mount, then enter the image.
_ENTER = (
    'r=$1; shift; mount --bind "$r/proc/sys" "$r/proc/sys" '
    '&& mount -o remount,bind,ro "$r/proc/sys" && exec chroot "$r" "$@"'
)


@dataclass(frozen=True)
class LynisItem:
    """One warning or suggestion line: ``TEST-ID|message|details|solution|``."""

    test_id: str
    message: str
    details: str | None = None
    solution: str | None = None


@dataclass(frozen=True)
class LynisResult:
    lynis_version: str
    hardening_index: int
    tests_performed: int
    warnings: tuple[LynisItem, ...]
    suggestions: tuple[LynisItem, ...]
    tests_executed: tuple[str, ...] = ()
    tests_skipped: tuple[str, ...] = ()
    #: Lynis' own "exceptional events" (a test that could not run properly)
    exceptions: tuple[LynisItem, ...] = ()
    os_fullname: str | None = None
    #: "report" (parsed from a file), "chroot" (offline rootfs) or "host" (a running system)
    mode: str = "report"
    #: every scalar key of the report, and every list key (``key[]=``) with its values
    values: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    lists: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    report_path: Path | None = None
    log_path: Path | None = None
    duration_s: float | None = None


@dataclass(frozen=True)
class LynisMapping:
    test_id: str
    subsystem: str
    controls: tuple[str, ...] = ()
    cis_debian13: tuple[str, ...] = ()
    live: bool = False

    def references(self) -> tuple[str, ...]:
        return tuple(f"cis-debian13: {c}" for c in self.cis_debian13) + tuple(
            f"goldsmith: {c}" for c in self.controls
        )


# parsing -------------------------------------------------------------------------------------
def parse_report(text: str) -> LynisResult:
    """Parse the text of ``lynis-report.dat``. Raises ScanError if it is not a complete
    report (no ``lynis_version`` or ``hardening_index``: Lynis stopped before the end)."""
    values: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        if key.endswith("[]"):
            lists.setdefault(key[:-2], []).append(value)
        else:
            values[key] = value
    for required in ("lynis_version", "hardening_index"):
        if required not in values:
            raise ScanError(
                f"Lynis report has no {required}: the audit did not complete",
                hint="see lynis.log next to the report for where it stopped",
            )
    try:
        index = int(values["hardening_index"])
    except ValueError:
        raise ScanError(
            f"Lynis hardening_index is not a number: {values['hardening_index']!r}"
        ) from None
    executed = _pipe_list(values.get("tests_executed", ""))
    done = values.get("lynis_tests_done", "")
    return LynisResult(
        lynis_version=values["lynis_version"],
        hardening_index=index,
        tests_performed=int(done) if done.isdigit() else len(executed),
        warnings=_items(lists.get("warning", [])),
        suggestions=_items(lists.get("suggestion", [])),
        tests_executed=executed,
        tests_skipped=_pipe_list(values.get("tests_skipped", "")),
        exceptions=_items(lists.get("exception_event", [])),
        os_fullname=values.get("os_fullname"),
        values=MappingProxyType(values),
        lists=MappingProxyType({k: tuple(v) for k, v in lists.items()}),
    )


def _pipe_list(value: str) -> tuple[str, ...]:
    return tuple(v for v in value.split("|") if v)


def _items(lines: list[str]) -> tuple[LynisItem, ...]:
    seen: dict[LynisItem, None] = {}  # Lynis repeats some lines; keep the first, in order
    for line in lines:
        seen.setdefault(_item(line), None)
    return tuple(seen)


def _item(value: str) -> LynisItem:
    test_id, _, rest = value.partition("|")
    rest = rest.removesuffix("|")
    # The message is free text and may itself contain "|": details and solution are the
    # last two fields, so split those off from the right.
    parts = rest.rsplit("|", 2)
    message = parts[0]
    details = parts[1] if len(parts) > 1 else None
    solution = parts[2] if len(parts) > 2 else None
    return LynisItem(test_id.strip(), message.strip(), _dash(details), _dash(solution))


def _dash(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return None if value in ("", "-") else value


# mapping -------------------------------------------------------------------------------------
@functools.cache
def lynis_mapping() -> Mapping[str, LynisMapping]:
    """The partial Lynis test id -> subsystem/CIS table shipped in ``lynis_map.yaml``."""
    text = resources.files("goldsmith.scan").joinpath("lynis_map.yaml").read_text("utf-8")
    return MappingProxyType(_parse_mapping(yaml.safe_load(text)))


def _parse_mapping(doc: Any) -> dict[str, LynisMapping]:
    if not isinstance(doc, dict) or not isinstance(doc.get("tests"), dict):
        raise ScanError("lynis_map.yaml: expected a mapping with a 'tests' mapping")
    out: dict[str, LynisMapping] = {}
    for test_id, entry in doc["tests"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("subsystem"), str):
            raise ScanError(f"lynis_map.yaml: {test_id}: needs a 'subsystem'")
        unknown = set(entry) - {"subsystem", "controls", "cis-debian13", "live"}
        if unknown:
            raise ScanError(f"lynis_map.yaml: {test_id}: unknown keys {sorted(unknown)}")
        out[str(test_id)] = LynisMapping(
            test_id=str(test_id),
            subsystem=entry["subsystem"],
            controls=tuple(str(c) for c in entry.get("controls", ())),
            cis_debian13=tuple(str(c) for c in entry.get("cis-debian13", ())),
            live=bool(entry.get("live", False)),
        )
    return out


# findings ------------------------------------------------------------------------------------
def to_findings(result: LynisResult) -> list[Finding]:
    """One finding per Lynis warning (``fail``; ``not_applicable`` for a test that reads the
    running system when the scan ran in a chroot). Suggestions are not findings."""
    mapping = lynis_mapping()
    how_mode = {"chroot": "in a chroot of the image", "host": "on the running system"}.get(
        result.mode, "from its report"
    )
    findings: list[Finding] = []
    for w in result.warnings:
        m = mapping.get(w.test_id)
        observed = w.message + (f" ({w.details})" if w.details else "")
        status = Status.FAIL
        how = f"Lynis {result.lynis_version} test {w.test_id}, run {how_mode}"
        if m is not None and m.live and result.mode == "chroot":
            status = Status.NOT_APPLICABLE
            how += "; this test reads the running system, which a chroot does not have"
        findings.append(
            Finding(
                control=f"lynis:{w.test_id}",
                status=status,
                evidence=Evidence(
                    expected=f"no Lynis warning from {w.test_id}", observed=observed, how=how
                ),
                source=Source.LYNIS,
                references=m.references() if m is not None else (),
            )
        )
    return findings


# running -------------------------------------------------------------------------------------
def run_lynis_chroot(
    rootfs: Path,
    *,
    work_dir: Path,
    timeout: float = 600,
    lynis_dir: Path | None = None,
    cache_dir: Path | None = None,
    keep_copy: bool = False,
) -> LynisResult:
    """Run Lynis on a copy of ``rootfs``; ``rootfs`` itself is never written.

    ``lynis_dir`` is a ``--usecwd`` layout (see :func:`ensure_lynis`); without it the pinned
    Debian lynis is fetched into ``cache_dir`` (default ``work_dir/cache``). The report and
    log are kept in ``work_dir`` as artifacts (``lynis-report.dat``, ``lynis.log``).
    """
    for tool, package in (("unshare", "util-linux"), ("chroot", "coreutils")):
        if shutil.which(tool) is None:
            raise ToolMissingError(tool, package)
    work_dir.mkdir(parents=True, exist_ok=True)
    if lynis_dir is None:
        from goldsmith.scan.content import ensure_lynis

        lynis_dir = ensure_lynis(cache_dir or work_dir / "cache")
    if not (lynis_dir / "lynis").is_file():
        raise ScanError(f"{lynis_dir} holds no lynis program")
    report_out, log_out = work_dir / REPORT_NAME, work_dir / LOG_NAME
    for stale in (report_out, log_out):
        stale.unlink(missing_ok=True)
    with scan_copy(rootfs, work_dir / "lynis-rootfs", keep=keep_copy) as copy:
        target = RootfsTarget(copy)
        with target.session():
            # /run in the copy is now the session's fresh tmpfs (a symlinked /run was refused)
            in_run = copy / LYNIS_DIR_IN_IMAGE.lstrip("/")
            shutil.copytree(lynis_dir, in_run, symlinks=True)
            report_in, log_in = (
                f"{LYNIS_DIR_IN_IMAGE}/{REPORT_NAME}",
                f"{LYNIS_DIR_IN_IMAGE}/{LOG_NAME}",
            )
            lynis_cmd = (
                f"cd {LYNIS_DIR_IN_IMAGE} && exec ./lynis audit system --usecwd --no-colors "
                f"--quick --auditor goldsmith --logfile {log_in} --report-file {report_in}"
            )
            argv = [
                "unshare",
                "--mount",
                "--pid",
                "--net",
                "--ipc",
                "--uts",
                "--fork",
                f"--mount-proc={copy}/proc",
                "--",
                "/bin/sh",
                "-c",
                _ENTER,
                "sh",
                str(copy),
                "/bin/sh",
                "-c",
                lynis_cmd,
            ]
            start = time.monotonic()
            # Lynis' exit status mixes "found warnings" with fatal errors; whether the report
            # is complete (parse_report checks) is what tells them apart.
            rc, _, stderr = run_host(
                argv, what="running Lynis", timeout=timeout, ok_codes=range(256)
            )
            duration = time.monotonic() - start
            for src, dst in (
                (copy / report_in.lstrip("/"), report_out),
                (copy / log_in.lstrip("/"), log_out),
            ):
                if src.is_file():
                    shutil.copyfile(src, dst)
    if not report_out.is_file():
        raise ScanError(f"Lynis (exit status {rc}) wrote no report", argv=argv, stderr=stderr)
    result = parse_report(report_out.read_text("utf-8", errors="replace"))
    log.info(
        "Lynis %s on %s: hardening index %d, %d warnings, %d suggestions in %.1f s",
        result.lynis_version,
        rootfs,
        result.hardening_index,
        len(result.warnings),
        len(result.suggestions),
        duration,
    )
    return dataclasses.replace(
        result,
        mode="chroot",
        report_path=report_out,
        log_path=log_out if log_out.is_file() else None,
        duration_s=duration,
    )
