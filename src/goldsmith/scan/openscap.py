"""OpenSCAP (ComplianceAsCode content) against an offline rootfs, and an XCCDF results parser.

How it runs: exactly what ``oscap-chroot`` does (set ``OSCAP_PROBE_ROOT`` and
``OSCAP_EVALUATION_TARGET``, run ``oscap xccdf eval``; that wrapper is a 3 kB shell script in
``openscap-utils``, which would also pull rpm onto the host), on a private copy of the rootfs
(:func:`goldsmith.scan.scan_copy`), because:

* the dpkg probe opens the image's package database through libapt with ``RootDir`` set to
  the probe root and writes ``var/cache/apt/pkgcache.bin`` there, and the probes leave
  temporary files at the root of the tree;
* libapt reads the *host's* configuration first: a host that sets ``Dir::Cache::pkgcache ""``
  (Debian's container images do) makes every package look absent. ``APT_CONFIG`` points at a
  file of our own with a real pkgcache name and an empty configuration-parts directory;
* ``oscap`` resolves an absolute symlink target on the host (``/etc/x -> /usr/lib/y`` reads the
  host's ``/usr/lib/y``). In the copy, every absolute symlink is rewritten to the equivalent
  relative one first (pseudo-filesystems such as ``/dev/null`` excepted: there the host's node
  is what the image gets at run time), so every probe reads the image.

OpenSCAP treats a root without the ``linux-base`` package as a container and marks many CIS
rules notapplicable; :attr:`OscapResult.linux_base_installed` records whether that happened.

Results: ARF, XCCDF results and the HTML report stay in ``work_dir`` as artifacts.
``pass_rate`` is pass / (pass + fail + error) over the rules the profile selected.
"""

from __future__ import annotations

import dataclasses
import gzip
import logging
import os
import shutil
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from xml.etree.ElementTree import Element

from defusedxml.ElementTree import iterparse

from goldsmith.errors import ToolMissingError
from goldsmith.model.records import Evidence, Finding, Source, Status
from goldsmith.scan import ScanError, remove_scan_copy, run_host, scan_copy
from goldsmith.scan.xccdf import CIS_L1_SERVER as CIS_L1_SERVER
from goldsmith.scan.xccdf import CIS_L2_SERVER as CIS_L2_SERVER
from goldsmith.scan.xccdf import RuleStatus as RuleStatus

log = logging.getLogger(__name__)

XCCDF_NS = "http://checklists.nist.gov/xccdf/1.2"
_X = "{" + XCCDF_NS + "}"
#: ComplianceAsCode marks CIS *benchmark* section numbers with this href; the CIS Controls
#: (``/controls/``, CSC safeguards) are a different catalogue and are not collected.
CIS_BENCHMARK_HREF = "cisecurity.org/cis-benchmarks"
#: in-image directories whose absolute symlinks are left alone (see module doc)
_PSEUDO_FS = ("/dev/", "/proc/", "/sys/", "/run/")


_TO_STATUS = {
    RuleStatus.PASS: Status.PASS,
    RuleStatus.FIXED: Status.PASS,
    RuleStatus.FAIL: Status.FAIL,
    RuleStatus.ERROR: Status.ERROR,
    RuleStatus.UNKNOWN: Status.ERROR,
    RuleStatus.NOTAPPLICABLE: Status.NOT_APPLICABLE,
}


@dataclass(frozen=True)
class RuleResult:
    rule_id: str
    result: RuleStatus
    severity: str
    title: str
    cis_ids: tuple[str, ...] = ()

    @property
    def short_id(self) -> str:
        """The rule id without ComplianceAsCode's prefix (``sshd_disable_root_login``)."""
        return self.rule_id.removeprefix("xccdf_org.ssgproject.content_rule_")


@dataclass(frozen=True)
class OscapResult:
    benchmark_id: str
    benchmark_version: str
    profile_id: str
    rules: tuple[RuleResult, ...]  # every rule-result, notselected ones included
    product: str | None = None  # "debian13", from the benchmark id
    test_system: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    score: float | None = None
    #: False: OpenSCAP took the root for a container (many CIS rules notapplicable)
    linux_base_installed: bool | None = None
    results_path: Path | None = None
    arf_path: Path | None = None
    report_path: Path | None = None
    duration_s: float | None = None
    #: earlier attempts that oscap did not survive (signal and log), in order
    crashes: tuple[str, ...] = ()

    @property
    def selected(self) -> tuple[RuleResult, ...]:
        return tuple(r for r in self.rules if r.result is not RuleStatus.NOTSELECTED)

    @property
    def counts(self) -> dict[RuleStatus, int]:
        c = Counter(r.result for r in self.rules)
        return {s: c.get(s, 0) for s in RuleStatus}

    @property
    def pass_rate(self) -> float | None:
        """pass / (pass + fail + error) over the selected rules; None if none applied."""
        c = self.counts
        applicable = c[RuleStatus.PASS] + c[RuleStatus.FAIL] + c[RuleStatus.ERROR]
        return c[RuleStatus.PASS] / applicable if applicable else None

    @property
    def cis_reference_key(self) -> str | None:
        return f"cis-{self.product}" if self.product else None


# parsing -------------------------------------------------------------------------------------
def parse_xccdf_results(path: Path) -> OscapResult:
    """Parse an XCCDF 1.2 results file (``oscap --results``, the benchmark with its
    TestResult) or an ARF report (``--results-arf``); ``.gz`` files are read compressed.

    Titles, severities and CIS references come from the ``Rule`` elements in the same
    document. The last TestResult in the document is the one returned.
    """
    try:
        with _open(path) as f:
            return _parse(f, str(path))
    except ScanError:
        raise
    except (OSError, EOFError) as exc:
        raise ScanError(f"cannot read OpenSCAP results {path}: {exc}") from exc
    except Exception as exc:  # ParseError and defusedxml's refusals (entities, DTDs)
        raise ScanError(f"OpenSCAP results {path} are not valid XML: {exc}") from exc


def _open(path: Path) -> IO[bytes] | gzip.GzipFile:
    if path.suffix == ".gz":
        return gzip.GzipFile(path, "rb")
    return path.open("rb")


@dataclass
class _RuleMeta:
    title: str = ""
    severity: str = "unknown"
    cis: tuple[str, ...] = ()


def _parse(source: IO[bytes] | gzip.GzipFile, name: str) -> OscapResult:
    meta: dict[str, _RuleMeta] = {}
    benchmark_id = benchmark_version = ""
    test_result: Element | None = None
    for event, elem in iterparse(source, events=("start", "end"), forbid_dtd=True):
        tag = elem.tag
        if event == "start":
            if tag == _X + "Benchmark" and not benchmark_id:
                benchmark_id = elem.get("id", "")
            continue
        if tag == _X + "version" and not benchmark_version:
            benchmark_version = (elem.text or "").strip()
        elif tag == _X + "Rule":
            meta[elem.get("id", "")] = _rule_meta(elem)
            elem.clear()
        elif tag == _X + "TestResult":
            test_result = elem  # kept whole (small); the benchmark's big parts are cleared
        elif tag in (_X + "Group", _X + "Value", _X + "Profile"):
            _clear_keep(elem)
    if test_result is None:
        raise ScanError(
            f"{name} holds no XCCDF 1.2 TestResult",
            hint="pass the file written by oscap --results or --results-arf",
        )
    return _result(test_result, meta, benchmark_id, benchmark_version)


def _clear_keep(elem: Element) -> None:
    """Free a Group's text and attributes (its Rules were read at their own end event)."""
    for child in list(elem):
        if child.tag not in (_X + "Group", _X + "Rule"):
            elem.remove(child)


def _rule_meta(rule: Element) -> _RuleMeta:
    title_el = rule.find(_X + "title")
    cis = tuple(
        (ref.text or "").strip()
        for ref in rule.findall(_X + "reference")
        if CIS_BENCHMARK_HREF in ref.get("href", "") and (ref.text or "").strip()
    )
    return _RuleMeta(
        title=" ".join((title_el.text or "").split()) if title_el is not None else "",
        severity=rule.get("severity", "unknown"),
        cis=cis,
    )


def _result(
    tr: Element, meta: dict[str, _RuleMeta], benchmark_id: str, benchmark_version: str
) -> OscapResult:
    profile_el = tr.find(_X + "profile")
    rules: list[RuleResult] = []
    for rr in tr.iter(_X + "rule-result"):
        rule_id = rr.get("idref", "")
        text = (rr.findtext(_X + "result") or "").strip()
        try:
            status = RuleStatus(text)
        except ValueError:
            raise ScanError(f"rule {rule_id}: unknown XCCDF result {text!r}") from None
        m = meta.get(rule_id, _RuleMeta())
        rules.append(
            RuleResult(
                rule_id=rule_id,
                result=status,
                severity=rr.get("severity", m.severity),
                title=m.title,
                cis_ids=m.cis,
            )
        )
    score_el = tr.find(_X + "score")
    score = float(score_el.text) if score_el is not None and score_el.text else None
    return OscapResult(
        benchmark_id=benchmark_id or tr.findtext(_X + "benchmark") or "",
        benchmark_version=benchmark_version or tr.get("version", ""),
        profile_id=profile_el.get("idref", "") if profile_el is not None else "",
        rules=tuple(rules),
        product=_product(benchmark_id),
        test_system=tr.get("test-system"),
        start_time=tr.get("start-time"),
        end_time=tr.get("end-time"),
        score=score,
    )


def _product(benchmark_id: str) -> str | None:
    # xccdf_org.ssgproject.content_benchmark_DEBIAN-13 -> debian13
    marker = "content_benchmark_"
    if marker not in benchmark_id:
        return None
    return benchmark_id.split(marker, 1)[1].replace("-", "").lower() or None


# findings ------------------------------------------------------------------------------------
def to_findings(result: OscapResult) -> list[Finding]:
    """One finding per selected rule that was evaluated or found not applicable; rules the
    content could not check (notchecked, informational) are left out, as are notselected."""
    ref_key = result.cis_reference_key or "cis"
    how_base = f"OpenSCAP {result.test_system or ''} {result.profile_id}".strip()
    findings: list[Finding] = []
    for r in result.rules:
        status = _TO_STATUS.get(r.result)
        if status is None:
            continue
        findings.append(
            Finding(
                control=f"openscap:{r.short_id}",
                status=status,
                evidence=Evidence(
                    expected=r.title or r.rule_id,
                    observed=f"XCCDF result {r.result.value} (severity {r.severity})",
                    how=f"{how_base}, {result.benchmark_id} {result.benchmark_version}",
                ),
                source=Source.OPENSCAP,
                references=tuple(f"{ref_key}: {c}" for c in r.cis_ids),
            )
        )
    return findings


# running -------------------------------------------------------------------------------------
#: signals that mean oscap itself crashed (not a timeout: run_host kills with SIGKILL and says so)
CRASH_SIGNALS = (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT)
#: attempts before a crashing oscap is reported as not run
CRASH_ATTEMPTS = 2


def run_oscap_chroot(
    rootfs: Path,
    datastream: Path,
    profile_id: str,
    *,
    work_dir: Path,
    timeout: float = 900,
    keep_copy: bool = False,
) -> OscapResult:
    """Evaluate ``profile_id`` of ``datastream`` against a copy of ``rootfs`` (never written).

    Artifacts in ``work_dir``: ``oscap-arf.xml``, ``oscap-results.xml``, ``oscap-report.html``,
    ``oscap.log`` (oscap's stdout and stderr), and ``oscap-crash-N.log`` for an attempt oscap
    did not survive (a crash by signal is run again, up to :data:`CRASH_ATTEMPTS` in all; the
    result's ``crashes`` says so, and the scan report's OpenSCAP entry with it).
    """
    oscap = shutil.which("oscap")
    if oscap is None:
        raise ToolMissingError("oscap", "openscap-scanner")
    if not datastream.is_file():
        raise ScanError(f"SCAP datastream {datastream} not found")
    work_dir = work_dir.resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    arf, results, report = (
        work_dir / "oscap-arf.xml",
        work_dir / "oscap-results.xml",
        work_dir / "oscap-report.html",
    )
    for stale in (arf, results, report, *work_dir.glob("oscap-crash-*.log")):
        stale.unlink(missing_ok=True)
    apt_conf = _write_apt_config(work_dir / "oscap-apt")
    linux_base = linux_base_installed(rootfs)
    if not linux_base:
        log.warning(
            "%s has no linux-base package: OpenSCAP will treat it as a container and mark "
            "many CIS rules notapplicable",
            rootfs,
        )
    argv = [
        oscap,
        "xccdf",
        "eval",
        "--profile",
        profile_id,
        "--results",
        str(results),
        "--results-arf",
        str(arf),
        "--report",
        str(report),
        str(datastream.resolve()),
    ]
    dest = work_dir / "oscap-rootfs"
    crashes: list[str] = []
    start = time.monotonic()
    while True:
        # a fresh copy for every attempt: a crashed run may have left probe files in its own
        with scan_copy(rootfs, dest, keep=keep_copy) as copy:
            rewritten = relativize_absolute_symlinks(copy)
            log.debug("rewrote %d absolute symlinks in the scan copy", rewritten)
            env = {
                "APT_CONFIG": str(apt_conf),
                "OSCAP_PROBE_ROOT": str(copy.resolve()),
                "OSCAP_EVALUATION_TARGET": f"chroot://{rootfs.resolve()}",
            }
            # 0: every rule passed, 2: some failed; 1 is an error; a crash is retried below
            rc, out, err = run_host(
                argv,
                what="running oscap",
                timeout=timeout,
                env=env,
                ok_codes=(0, 2, *(-s for s in CRASH_SIGNALS)),
            )
        if rc in (0, 2):
            break
        record_crash(crashes, work_dir / "oscap", -rc, out, err)
        if len(crashes) >= CRASH_ATTEMPTS:
            raise ScanError(
                f"running oscap: killed by {signal.Signals(-rc).name} on all "
                f"{CRASH_ATTEMPTS} attempts (outputs in {work_dir}/oscap-crash-*.log)",
                argv=argv,
                stderr=err or out,
            )
        # run once more (see record_crash), on a fresh copy
        for stale in (arf, results, report):
            stale.unlink(missing_ok=True)
        if keep_copy:  # only the last attempt's copy is kept
            remove_scan_copy(dest)
    duration = time.monotonic() - start
    (work_dir / "oscap.log").write_text(run_log(out, err))
    if not results.is_file():
        raise ScanError(f"oscap (exit status {rc}) wrote no results", argv=argv, stderr=err)
    parsed = parse_xccdf_results(results)
    rate = parsed.pass_rate
    log.info(
        "OpenSCAP %s on %s: pass rate %s in %.1f s",
        profile_id,
        rootfs,
        f"{rate:.1%}" if rate is not None else "n/a",
        duration,
    )
    return dataclasses.replace(
        parsed,
        linux_base_installed=linux_base,
        results_path=results,
        arf_path=arf if arf.is_file() else None,
        report_path=report if report.is_file() else None,
        duration_s=duration,
        crashes=tuple(crashes),
    )


def run_log(out: str, err: str) -> str:
    """An oscap run's stdout and stderr as one log text."""
    return out + ("\n--- stderr ---\n" + err if err else "")


def record_crash(crashes: list[str], prefix: Path, sig: int, out: str, err: str) -> None:
    """Keep the output of an oscap run killed by ``sig`` as ``<prefix>-crash-N.log`` and add
    the crash to ``crashes``; the caller runs oscap once more. oscap 1.3.7 crashed once
    (SIGSEGV) in CI on an image it scans cleanly every other time."""
    path = prefix.with_name(f"{prefix.name}-crash-{len(crashes) + 1}.log")
    path.write_text(run_log(out, err))
    crashes.append(f"killed by {signal.Signals(sig).name}, output in {path.name}")
    log.warning("%s %s: running it once more", prefix.name, crashes[-1])


def _write_apt_config(base: Path) -> Path:
    parts = base / "apt.conf.d"
    parts.mkdir(parents=True, exist_ok=True)
    conf = base / "apt.conf"
    conf.write_text(
        'Dir::Cache::pkgcache "pkgcache.bin";\n'
        'Dir::Cache::srcpkgcache "srcpkgcache.bin";\n'
        f'Dir::Etc::parts "{parts}";\n'
        'Dir::Etc::main "/dev/null";\n'
    )
    return conf


def linux_base_installed(rootfs: Path) -> bool:
    """True if the image's dpkg database has linux-base installed."""
    status = rootfs / "var/lib/dpkg/status"
    if status.is_symlink() or not status.is_file():
        return False
    return any(
        _field(stanza, "Package") == "linux-base"
        and (_field(stanza, "Status") or "").endswith(" installed")
        for stanza in status.read_text("utf-8", errors="replace").split("\n\n")
    )


def _field(stanza: str, name: str) -> str | None:
    for line in stanza.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return None


def relativize_absolute_symlinks(root: Path) -> int:
    """Rewrite every absolute symlink under ``root`` to the equivalent relative link, so a
    tool resolving links on the host still lands inside ``root``. Links into pseudo
    filesystems (/dev, /proc, /sys, /run) are left as they are. Returns how many changed.

    Only for scan copies: it changes the tree. ``..`` in the new link is resolved by the
    kernel from the link's real directory (the walk never enters a symlinked directory), so
    the lexical relative path is the right one -- as long as the old target has no ``..`` of
    its own: such links (none in a stock Debian tree) are left absolute.
    """
    count = 0
    for directory, links in _walk(root):
        in_dir = "/" + str(directory.relative_to(root)) if directory != root else "/"
        for link in links:
            target = str(link.readlink())
            if not target.startswith("/") or target.startswith(_PSEUDO_FS):
                continue
            if target in ("/dev", "/proc", "/sys", "/run"):
                continue
            if ".." in target.split("/"):
                # "/lib/../x" depends on what /lib links to; a lexical rewrite could point
                # elsewhere (or above the root), so such a link is left as it is.
                log.debug("not rewriting %s -> %s (contains '..')", link, target)
                continue
            rel = os.path.relpath(os.path.normpath(target), in_dir)
            link.unlink()
            link.symlink_to(rel)
            count += 1
    return count


def _walk(root: Path) -> Iterator[tuple[Path, list[Path]]]:
    """(directory, symlinks in it) for every real directory under root."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        d = Path(dirpath)
        yield d, [d / n for n in (*dirnames, *filenames) if (d / n).is_symlink()]
