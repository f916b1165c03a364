"""goldsmith's own scan: every resolved control's check, optionally Lynis and OpenSCAP, then
exceptions and the merge into one :class:`~goldsmith.scan.merge.ScanReport`.

A scan never writes to what it scans: control checks only read (a check that needs a command
runs it through the target's chroot session, which mounts pseudo-filesystems and removes them
again), and both third-party scanners work on private copies (see :mod:`goldsmith.scan`).

The clock and the id factory are parameters, so a report is reproducible in tests.
On a running host (``--host``) only goldsmith's checks run here: the adapters scan offline
trees, and the boot test runs Lynis inside the booted image itself.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from goldsmith.checkworker import default_jobs
from goldsmith.errors import GoldsmithError
from goldsmith.model.profile_loader import LoadedProfile
from goldsmith.model.records import Source
from goldsmith.scan import ScanError
from goldsmith.scan.exceptions import apply_exceptions, load_exceptions
from goldsmith.scan.merge import ScannerRun, ScanReport, merge
from goldsmith.scan.xccdf import CIS_L2_SERVER
from goldsmith.targets.base import Target

if TYPE_CHECKING:  # the adapters load only when a scan runs them; the check side when the
    # scan checks in this process (see goldsmith.checkworker)
    from goldsmith.checkworker import CheckWorker
    from goldsmith.controls.catalogue import Catalogue
    from goldsmith.scan import lynis, openscap

__all__ = ["Clock", "IdFactory", "ScanOptions", "scan_host", "scan_rootfs", "scan_target"]

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]
IdFactory = Callable[[], uuid.UUID]


def utc_now() -> dt.datetime:
    return dt.datetime.now(tz=dt.UTC).replace(microsecond=0)


@dataclass(frozen=True)
class ScanOptions:
    lynis: bool = True
    openscap: bool = True
    openscap_profile: str = CIS_L2_SERVER
    #: scanner artifacts (Lynis report, ARF, HTML) and the scan copies go here
    work_dir: Path = Path("scan-work")
    #: where pinned scanner content (ssg-debian, lynis) is fetched and kept
    cache_dir: Path = Path("/var/cache/goldsmith")
    scanner_timeout: float = 1800
    #: processes goldsmith's own checks run in (2: a forked child checks half; see check_all)
    jobs: int = field(default_factory=default_jobs)


def scan_rootfs(
    rootfs: Path,
    loaded: LoadedProfile,
    options: ScanOptions,
    *,
    clock: Clock = utc_now,
    new_id: IdFactory = uuid.uuid4,
    catalogue: Catalogue | None = None,
    checks: CheckWorker | None = None,
) -> ScanReport:
    """Scan an unpacked rootfs: controls, then (if asked) Lynis and OpenSCAP on copies.

    ``checks``: a worker that was sent this rootfs and the profile's selection, whose findings
    are used if it has them (see :mod:`goldsmith.checkworker`).
    """
    from goldsmith.targets.rootfs import RootfsTarget

    if not rootfs.is_dir():
        raise GoldsmithError(f"{rootfs}: not a directory", hint="pass an unpacked rootfs")
    target = RootfsTarget(rootfs)
    return _scan(
        target,
        "rootfs",
        str(rootfs),
        loaded,
        options,
        clock=clock,
        new_id=new_id,
        catalogue=catalogue,
        checks=checks,
    )


def scan_host(
    loaded: LoadedProfile,
    options: ScanOptions,
    *,
    clock: Clock = utc_now,
    new_id: IdFactory = uuid.uuid4,
    catalogue: Catalogue | None = None,
    checks: CheckWorker | None = None,
) -> ScanReport:
    """Scan the running system with goldsmith's checks (``options.lynis``/``openscap`` must be
    off: see the module doc)."""
    from goldsmith.targets.host import HostTarget

    if options.lynis or options.openscap:
        raise GoldsmithError(
            "Lynis and OpenSCAP are not run by `goldsmith scan --host`",
            hint="use --no-lynis --no-openscap; the boot test runs Lynis inside the booted "
            "image, and oscap-chroot scans the rootfs",
        )
    return _scan(
        HostTarget(),
        "host",
        "/",
        loaded,
        options,
        clock=clock,
        new_id=new_id,
        catalogue=catalogue,
        checks=checks,
    )


def scan_target(
    target: Target,
    loaded: LoadedProfile,
    *,
    clock: Clock = utc_now,
    new_id: IdFactory = uuid.uuid4,
    catalogue: Catalogue | None = None,
    kind: str = "rootfs",
) -> ScanReport:
    """goldsmith's checks only, against any target (the bench and tests use this)."""
    opts = ScanOptions(lynis=False, openscap=False)
    return _scan(
        target,
        kind,
        target.description,
        loaded,
        opts,
        clock=clock,
        new_id=new_id,
        catalogue=catalogue,
    )


def _scan(
    target: Target,
    kind: str,
    where: str,
    loaded: LoadedProfile,
    options: ScanOptions,
    *,
    clock: Clock,
    new_id: IdFactory,
    catalogue: Catalogue | None,
    checks: CheckWorker | None = None,
) -> ScanReport:
    created = clock()
    today = created.date()
    exceptions = load_exceptions(loaded)  # a bad exceptions file stops the scan before work
    answer = checks.result() if checks is not None else None
    if answer is not None:
        findings, seconds = answer.findings, answer.seconds
    else:  # no worker, or it had no answer (an error then surfaces here, with its position)
        from goldsmith.controls.catalogue import load_catalogue
        from goldsmith.controls.engine import check_all, resolve

        resolved = resolve(loaded.profile, catalogue or load_catalogue(), loaded=loaded)
        t0 = time.monotonic()
        findings = check_all(target, resolved, jobs=options.jobs)
        seconds = round(time.monotonic() - t0, 3)
    runs = [ScannerRun(Source.GOLDSMITH, True, seconds=seconds)]
    lynis_result: lynis.LynisResult | None = None
    oscap_result: openscap.OscapResult | None = None
    rootfs = Path(where)
    if kind == "rootfs" and options.lynis:
        from goldsmith.scan import lynis

        lynis_result, run = _lynis(rootfs, options)
        runs.append(run)
        if lynis_result is not None:
            findings += lynis.to_findings(lynis_result)
    if kind == "rootfs" and options.openscap:
        from goldsmith.scan import openscap

        oscap_result, run = _openscap(rootfs, options)
        runs.append(run)
        if oscap_result is not None:
            findings += openscap.to_findings(oscap_result)
    excepted = apply_exceptions(findings, exceptions, today=today)
    p = loaded.profile
    return merge(
        findings,
        excepted,
        report_id=new_id(),
        created=created,
        today=today,
        target_kind=kind,
        target=where,
        profile_name=p.name,
        profile_version=p.version,
        profile_digest=loaded.digest,
        scanners=runs,
        lynis=lynis_result,
        openscap=oscap_result,
    )


def _lynis(rootfs: Path, options: ScanOptions) -> tuple[lynis.LynisResult | None, ScannerRun]:
    from goldsmith.scan import lynis

    t0 = time.monotonic()
    try:
        result = lynis.run_lynis_chroot(
            rootfs,
            work_dir=options.work_dir / "lynis",
            cache_dir=options.cache_dir,
            timeout=options.scanner_timeout,
        )
    except ScanError as exc:
        # a scanner that cannot run is a recorded outcome; the gate then has no Lynis index
        log.warning("Lynis did not run: %s", exc.message.splitlines()[0])
        return None, ScannerRun(Source.LYNIS, False, reason=exc.message.splitlines()[0])
    return result, ScannerRun(
        Source.LYNIS,
        True,
        reason="chroot (an offline rootfs: the boot test runs it on the booted image)",
        seconds=round(time.monotonic() - t0, 3),
    )


def _openscap(rootfs: Path, options: ScanOptions) -> tuple[openscap.OscapResult | None, ScannerRun]:
    from goldsmith.scan import openscap
    from goldsmith.scan.content import ensure_ssg_content

    t0 = time.monotonic()
    try:
        ds = ensure_ssg_content(options.cache_dir)
        result = openscap.run_oscap_chroot(
            rootfs,
            ds,
            options.openscap_profile,
            work_dir=options.work_dir / "openscap",
            timeout=options.scanner_timeout,
        )
    except ScanError as exc:
        log.warning("OpenSCAP did not run: %s", exc.message.splitlines()[0])
        return None, ScannerRun(Source.OPENSCAP, False, reason=exc.message.splitlines()[0])
    reason = "oscap-chroot"
    if result.crashes:
        reason += f" (attempt {len(result.crashes) + 1}; before: {'; '.join(result.crashes)})"
    return result, ScannerRun(
        Source.OPENSCAP, True, reason=reason, seconds=round(time.monotonic() - t0, 3)
    )
