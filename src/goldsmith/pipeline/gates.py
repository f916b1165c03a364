"""Gates: what must hold before an image is promoted, evaluated from the results on disk.

The thresholds are data in the profile (:class:`goldsmith.model.profile.Gates`); the results
are ``scan.json`` (written by ``goldsmith scan --out DIR``) and ``boottest.json`` (written by
the boot test, top-level ``"passed": bool``) in one results directory.

The Lynis hardening index and the OpenSCAP CIS Level 2 pass rate come from the booted image
when the boot test ran the scanner there (``boottest.json`` ``scanners.lynis`` /
``scanners.openscap``); otherwise from the offline scan in ``scan.json`` (Lynis in a chroot,
oscap-chroot), labelled as that fallback. A result that is missing fails its gate and says so:
a gate is never passed for lack of evidence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from goldsmith.errors import GoldsmithError
from goldsmith.model.profile import Gates
from goldsmith.scan.formats.json import ScanDocument
from goldsmith.scan.xccdf import CIS_L2_SERVER

__all__ = ["BOOTTEST_FILE", "SCAN_FILE", "GateResult", "Results", "evaluate_gates", "read_results"]

SCAN_FILE = "scan.json"
BOOTTEST_FILE = "boottest.json"


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    required: str
    observed: str
    #: why it missed (None when it passed), naming what to look at
    explanation: str | None = None


@dataclass(frozen=True)
class Results:
    scan: ScanDocument | None
    boottest: dict[str, Any] | None
    scan_path: Path
    boottest_path: Path


def read_results(results_dir: Path) -> Results:
    """Read ``scan.json`` and ``boottest.json`` from ``results_dir`` (each may be absent).

    A file that is present but unreadable or malformed is an error (exit 2), not a miss.
    """
    if not results_dir.is_dir():
        raise GoldsmithError(f"{results_dir}: not a directory")
    scan_path, boot_path = results_dir / SCAN_FILE, results_dir / BOOTTEST_FILE
    scan: ScanDocument | None = None
    if scan_path.is_file():
        try:
            scan = ScanDocument.model_validate_json(scan_path.read_bytes())
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise GoldsmithError(
                f"{scan_path}: not a goldsmith scan document: {where}: {first['msg']}",
                hint="write it with: goldsmith scan --out DIR",
            ) from None
    boot: dict[str, Any] | None = None
    if boot_path.is_file():
        try:
            loaded = json.loads(boot_path.read_text("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise GoldsmithError(f"{boot_path}: not JSON: {exc}") from None
        if not isinstance(loaded, dict) or not isinstance(loaded.get("passed"), bool):
            raise GoldsmithError(f'{boot_path}: expected an object with a boolean "passed"')
        boot = loaded
    return Results(scan, boot, scan_path, boot_path)


def evaluate_gates(gates: Gates, results: Results) -> list[GateResult]:
    """One result per gate, in a fixed order; each miss carries its explanation."""
    return [
        _lynis(gates, results),
        _failures(gates, results),
        _openscap(gates, results),
        _boot(gates, results),
    ]


def _lynis(gates: Gates, r: Results) -> GateResult:
    name, need = "lynis-hardening-index", gates.lynis_min_hardening_index
    required = f">= {need}"
    index: int | None = None
    where = ""
    lynis_boot = (r.boottest or {}).get("scanners", {}).get("lynis", {})
    if isinstance(lynis_boot, dict) and isinstance(lynis_boot.get("hardening_index"), int):
        index, where = lynis_boot["hardening_index"], "booted image (boottest.json)"
    elif r.scan is not None and r.scan.lynis is not None:
        index, where = r.scan.lynis.hardening_index, f"{r.scan.lynis.mode} scan (scan.json)"
    if index is None:
        return GateResult(
            name,
            False,
            required,
            "no Lynis result",
            f"neither {r.boottest_path.name} nor {r.scan_path.name} holds a Lynis hardening "
            "index: run the boot test, or goldsmith scan --lynis",
        )
    observed = f"{index} from the {where}"
    if index >= need:
        return GateResult(name, True, required, observed)
    return GateResult(
        name,
        False,
        required,
        observed,
        f"Lynis hardening index {index} is {need - index} below {need}; its warnings and "
        "suggestions are listed in the Lynis report",
    )


def _failures(gates: Gates, r: Results) -> GateResult:
    name, limit = "failures-not-excepted", gates.max_failures_not_excepted
    required = f"<= {limit}"
    if r.scan is None:
        return GateResult(
            name,
            False,
            required,
            "no scan result",
            f"{r.scan_path} does not exist: run goldsmith scan --out {r.scan_path.parent}",
        )
    s = r.scan.summary
    observed = (
        f"{s.failures_not_excepted} ({s.failed} failed, {s.errors} errors, "
        f"{s.expired_exceptions} expired exceptions; {s.excepted} excepted)"
    )
    # the booted image's own goldsmith scan counts too: a failure only a running system shows
    # (a file first boot wrote with the wrong mode) is as real as one in the rootfs
    guest = _guest_goldsmith(r)
    guest_count = None
    if guest is not None:
        guest_count = int(guest["failures_not_excepted"])
        observed += f"; booted image: {guest_count} ({r.boottest_path.name})"
    if s.failures_not_excepted <= limit and (guest_count is None or guest_count <= limit):
        return GateResult(name, True, required, observed)
    if s.failures_not_excepted <= limit:
        return GateResult(
            name,
            False,
            required,
            observed,
            f"the booted image's goldsmith scan has {guest_count} failures not excepted "
            f"({guest.get('artifact') if guest else ''}); the rootfs scan has none",
        )
    failing = [f.control for f in r.scan.findings if f.status in ("fail", "error")]
    expired = [e.control for e in r.scan.exceptions if e.state == "expired"]
    parts = []
    if failing:
        shown = ", ".join(failing[:10]) + (
            f" and {len(failing) - 10} more" if len(failing) > 10 else ""
        )
        parts.append(f"not excepted: {shown}")
    if expired:
        parts.append(f"expired exceptions (renew or remove): {', '.join(expired)}")
    return GateResult(
        name,
        False,
        required,
        observed,
        f"{s.failures_not_excepted - limit} over the limit; " + "; ".join(parts),
    )


def _guest_goldsmith(r: Results) -> dict[str, Any] | None:
    """The boot test's in-guest ``goldsmith scan --host`` summary, when it ran."""
    scanners = (r.boottest or {}).get("scanners")
    run = scanners.get("goldsmith") if isinstance(scanners, dict) else None
    if not isinstance(run, dict) or run.get("status") != "ran":
        return None
    summary = run.get("summary")
    if not isinstance(summary, dict) or "failures_not_excepted" not in summary:
        return None
    return {**summary, "artifact": run.get("artifact")}


def _guest_openscap(r: Results) -> dict[str, Any] | None:
    """The boot test's OpenSCAP result from inside the booted image, if it ran."""
    scanners = (r.boottest or {}).get("scanners")
    o = scanners.get("openscap") if isinstance(scanners, dict) else None
    if isinstance(o, dict) and o.get("status") == "ran" and o.get("pass_rate") is not None:
        return o
    return None


def _openscap(gates: Gates, r: Results) -> GateResult:
    name, need = "openscap-cis-l2-pass-rate", gates.openscap_min_pass_rate
    required = f">= {need:g} % of applicable CIS Level 2 Server rules"
    guest = _guest_openscap(r)
    if guest is not None and guest.get("profile") == CIS_L2_SERVER:
        rate = float(guest["pass_rate"])
        gc = guest.get("counts") or {}
        applicable = gc.get("pass", 0) + gc.get("fail", 0) + gc.get("error", 0)
        observed = (
            f"{rate:.2f} % ({gc.get('pass', 0)} of {applicable} applicable rules) from the "
            f"booted image ({r.boottest_path.name})"
        )
        if rate >= need:
            return GateResult(name, True, required, observed)
        return GateResult(
            name,
            False,
            required,
            observed,
            f"{need - rate:.2f} points below {need:g} %: {gc.get('fail', 0)} rules fail in the "
            f"booted image; they are listed in {r.boottest_path.name} (scanners.openscap.failed)",
        )
    o = r.scan.openscap if r.scan is not None else None
    if o is None:
        return GateResult(
            name,
            False,
            required,
            "no OpenSCAP result",
            f"{r.scan_path.name} holds no OpenSCAP result: run goldsmith scan --openscap",
        )
    if o.profile != CIS_L2_SERVER:
        return GateResult(
            name,
            False,
            required,
            f"OpenSCAP ran profile {o.profile}",
            f"the gate is defined over {CIS_L2_SERVER}; scan with that profile",
        )
    if o.pass_rate is None:
        return GateResult(
            name, False, required, "no applicable rules", "OpenSCAP evaluated no rule"
        )
    counts = {str(k): v for k, v in o.counts.items()}
    applicable = counts.get("pass", 0) + counts.get("fail", 0) + counts.get("error", 0)
    observed = (
        f"{o.pass_rate:.2f} % ({counts.get('pass', 0)} of {applicable} applicable rules) from "
        f"oscap-chroot on the rootfs ({r.scan_path.name}; no OpenSCAP run in the booted image)"
    )
    if o.pass_rate >= need:
        return GateResult(name, True, required, observed)
    return GateResult(
        name,
        False,
        required,
        observed,
        f"{need - o.pass_rate:.2f} points below {need:g} %: {counts.get('fail', 0)} rules fail, "
        f"{counts.get('error', 0)} errored; see the openscap findings in {r.scan_path.name}",
    )


def _boot(gates: Gates, r: Results) -> GateResult:
    name = "boot-test"
    if not gates.boot_test:
        return GateResult(name, True, "not required by the profile", "not evaluated")
    required = "passed"
    if r.boottest is None:
        return GateResult(
            name,
            False,
            required,
            "no boot test result",
            f"{r.boottest_path} does not exist: run goldsmith boottest on the build output",
        )
    if r.boottest["passed"]:
        return GateResult(name, True, required, "passed")
    failed = (
        r.boottest.get("summary", {}).get("failed")
        if isinstance(r.boottest.get("summary"), dict)
        else None
    )
    error = r.boottest.get("error")
    why = []
    if error:
        why.append(f"error: {error}")
    if isinstance(failed, list) and failed:
        why.append("failed checks: " + ", ".join(str(f) for f in failed))
    return GateResult(
        name,
        False,
        required,
        "failed",
        "; ".join(why) or f"{r.boottest_path.name} says passed: false",
    )
