"""The command line. It parses arguments, calls one function, and maps errors to exit codes.

Exit codes: 0 ok, 1 non-compliant / a gate failed / a build or boot failed,
2 usage or configuration error, 3 internal error (a bug: please report it).
"""

from __future__ import annotations

import gc
import json
import signal
import sys
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from goldsmith import DEFAULT_PROFILE, __version__
from goldsmith.errors import GoldsmithError, Terminated, terminate_as_interrupt

# Start-up (pydantic schemas, the catalogue, Jinja2 templates) allocates hundreds of thousands
# of objects that live until exit, and the cyclic GC's default gen-0 threshold (700) rescans
# them over and over: ~12 % of a whole-catalogue scan. Cycles are still collected, later.
gc.set_threshold(100_000, 10, 10)

if TYPE_CHECKING:
    from rich.console import Console

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

app = typer.Typer(
    name="goldsmith",
    help="Forge a hardened, CIS-aligned gold image for NanoClaw agent hosts, and prove it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
profile_app = typer.Typer(help="Inspect and validate profiles.", no_args_is_help=True)
app.add_typer(profile_app, name="profile")
controls_app = typer.Typer(help="Inspect the control catalogue.", no_args_is_help=True)
app.add_typer(controls_app, name="controls")


class _LazyConsole:
    """A rich Console made on first use: rich takes ~50 ms to import, and a ``--json`` run
    (``scan --json``, as the bench and CI run it) never prints through it."""

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._kwargs)
        return getattr(self._console, name)


out = cast("Console", _LazyConsole())
err = cast("Console", _LazyConsole(stderr=True, soft_wrap=True))


def escape(markup: str) -> str:
    """rich's markup escape, imported when first needed."""
    from rich.markup import escape as rich_escape

    return rich_escape(markup)


_state: dict[str, bool] = {"debug": False}

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
ProfileArg = Annotated[
    str,
    typer.Option("--profile", "-p", help="A shipped profile name or a path to a profile YAML."),
]


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    _state["debug"] = debug
    if version:
        out.print(f"goldsmith {__version__}")
        raise typer.Exit(0)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


# profile ---------------------------------------------------------------------------------------
@profile_app.command("show")
def profile_show(
    profile: Annotated[str, typer.Argument(help="Shipped name or path.")] = DEFAULT_PROFILE,
    as_json: JsonOpt = False,
) -> None:
    """Print the fully resolved profile (after extends:)."""
    from goldsmith.model.profile_loader import dump_resolved_yaml, load_profile

    loaded = load_profile(profile)
    if as_json:
        _print_json(loaded.profile.model_dump(mode="json"))
    else:
        sys.stdout.write(f"# resolved from: {', '.join(loaded.sources)}\n")
        sys.stdout.write(f"# digest: {loaded.digest}\n")
        sys.stdout.write(dump_resolved_yaml(loaded.profile))


@profile_app.command("schema")
def profile_schema() -> None:
    """Print the profile JSON Schema."""
    from goldsmith.model.profile_loader import profile_json_schema

    _print_json(profile_json_schema())


@profile_app.command("validate")
def profile_validate(
    file: Annotated[str, typer.Argument(help="Profile YAML file or shipped name.")],
    as_json: JsonOpt = False,
) -> None:
    """Validate a profile; exit 2 with file:line:column: key: message if it is invalid."""
    from goldsmith.model.profile_loader import load_profile

    loaded = load_profile(file)
    if as_json:
        _print_json(
            {
                "valid": True,
                "name": loaded.profile.name,
                "digest": loaded.digest,
                "sources": list(loaded.sources),
            }
        )
    else:
        out.print(f"[green]valid[/green]: {loaded.profile.name} ({loaded.digest[:12]})")


@profile_app.command("list")
def profile_list(as_json: JsonOpt = False) -> None:
    """List the profiles shipped with goldsmith."""
    from goldsmith.model.profile_loader import list_shipped

    names = list_shipped()
    if as_json:
        _print_json(names)
    else:
        for n in names:
            out.print(n)


# controls --------------------------------------------------------------------------------------
BENCHMARKS = ("cis-debian13", "cis-debian12")


@controls_app.command("list")
def controls_list(
    benchmark: Annotated[
        str | None,
        typer.Option("--benchmark", help="Only controls of cis-debian13 or cis-debian12."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the catalogue's controls (id, level, rule type, CIS Debian 13 and 12 ids)."""
    from goldsmith.controls.report import control_rows, coverage_summary

    if benchmark is not None and benchmark not in BENCHMARKS:
        raise GoldsmithError(
            f"unknown benchmark {benchmark!r}", hint="one of: " + ", ".join(BENCHMARKS)
        )
    bench: Any = benchmark
    rows = control_rows(bench)
    summary = coverage_summary(bench) if bench else None
    if as_json:
        _print_json({"controls": rows, "coverage": summary} if summary else rows)
        return
    from rich.table import Table

    table = Table(show_edge=False)
    table.add_column("id", no_wrap=True)
    for col in ("level", "rule", "CIS D13", "CIS D12"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["id"],
            f"L{r['level']}",
            r["rule"],
            ", ".join(r["cis-debian13"]),
            ", ".join(r["cis-debian12"]),
        )
    out.print(table)
    out.print(f"{len(rows)} controls")
    if summary:
        out.print(
            f"{summary['benchmark']}: {summary['automated']} of {summary['recommendations']} "
            f"L1/L2 Server recommendations automated ({summary['percent_automated']}%), "
            f"{summary['manual']} manual, {summary['not_applicable']} not applicable, "
            f"{len(summary['missing'])} missing"
        )


@controls_app.command("show")
def controls_show(
    control_id: Annotated[str, typer.Argument(metavar="ID", help="A control id.")],
    as_json: JsonOpt = False,
) -> None:
    """Show one control: metadata, references, default params and rationale."""
    from goldsmith.controls.report import control_detail

    d = control_detail(control_id)
    if as_json:
        _print_json(d)
        return
    out.print(f"[bold]{escape(d['id'])}[/bold]: {escape(d['title'])}")
    out.print(f"level      L{d['level']}")
    out.print(f"rule       {d['rule']}")
    out.print(f"defined at {d['defined_at']}")
    for kind, refs in d["references"].items():
        out.print(f"{kind:<14} {', '.join(refs)}")
    out.print("params:")
    for k, v in d["params"].items():
        out.print(f"  {k}: {escape(json.dumps(v, default=str))}", highlight=False)
    out.print(f"rationale: {escape(d['rationale'])}")


# apply -----------------------------------------------------------------------------------------
@app.command("apply")
def apply(
    profile: ProfileArg = DEFAULT_PROFILE,
    rootfs: Annotated[Path, typer.Option("--rootfs", help="The image tree to harden.")] = Path(),
    check: Annotated[
        bool, typer.Option("--check", help="Only show what would change; change nothing.")
    ] = False,
    diff: Annotated[bool, typer.Option("--diff", help="Show unified diffs of files.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Apply a profile's controls to a rootfs (all or nothing), or --check what would change.

    Exit 0: compliant (nothing would change / every check passes or is excepted); 1: --check
    found changes, or a check fails after the apply; 2: a bad profile or a rejected option.
    """
    from goldsmith.controls.report import apply_profile
    from goldsmith.model.profile_loader import load_profile

    if rootfs == Path():
        raise GoldsmithError("--rootfs is required", hint="goldsmith apply --rootfs DIR")
    loaded = load_profile(profile)
    report = apply_profile(loaded, rootfs, check=check, diff=diff)
    if as_json:
        _print_json(
            {
                "check_mode": report.check_mode,
                "changes": [asdict(c) for c in report.changes],
                "diffs": {p.control: p.diffs for p in report.planned if p.diffs},
                "findings": [asdict(f) for f in report.findings],
                "unexcepted_failures": [f.control for f in report.unexcepted],
                "seconds": report.seconds,
            }
        )
    else:
        for p in report.planned:
            for c in p.changes:
                out.print(
                    f"{escape(c.control)}: {escape(c.object)} {c.attribute}: "
                    f"{escape(str(c.before))} -> {escape(str(c.after))}",
                    highlight=False,
                )
            if diff:
                for d in p.diffs:
                    sys.stdout.write(d if d.endswith("\n") else d + "\n")
        for f in report.unexcepted:
            out.print(f"[red]{f.status}[/red] {escape(f.control)}: {escape(f.evidence.observed)}")
        verb = "would change" if report.check_mode else "changed"
        out.print(
            f"{len(report.changes)} changes {verb} by {len(report.planned)} controls "
            f"({report.seconds:.1f} s)"
        )
    if (report.check_mode and report.would_change) or report.unexcepted:
        raise typer.Exit(EXIT_FAIL)


# build -----------------------------------------------------------------------------------------
@app.command("build")
def build(
    profile: ProfileArg = DEFAULT_PROFILE,
    out_dir: Annotated[Path, typer.Option("--out", help="Output root directory.")] = Path("out"),
    cache_dir: Annotated[
        Path, typer.Option("--cache-dir", help="Base rootfs cache and work area.")
    ] = Path("/var/cache/goldsmith"),
    refresh_base: Annotated[
        bool, typer.Option("--refresh-base", help="Bootstrap again even if cached.")
    ] = False,
    disk: Annotated[bool, typer.Option("--disk/--no-disk", help="Build disk images.")] = True,
    scan: Annotated[
        bool,
        typer.Option(
            "--scan/--no-scan",
            help="Scan the finished rootfs: controls, Lynis (chroot), OpenSCAP CIS L2.",
        ),
    ] = False,
    boot_test: Annotated[
        bool,
        typer.Option(
            "--boot-test/--no-boot-test",
            help="Run the boot test (QEMU, SSH, live checks, Lynis in the guest).",
        ),
    ] = False,
    gate: Annotated[
        bool,
        typer.Option("--gate/--no-gate", help="Evaluate the profile's gates; exit 1 on a miss."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Build the gold image of a profile into OUT/<profile>-<version>/.

    With --scan, --boot-test and --gate this is the whole pipeline `make image` runs: the
    image, its scan reports, its boot test and the verdict of its gates, all in one directory.
    """
    from goldsmith.model.profile_loader import load_profile

    loaded = load_profile(profile)  # a bad profile stops here, before anything is written
    from goldsmith.pipeline.build import BuildOptions, build_image
    from goldsmith.pipeline.stages import StageEvent

    def listener(stage: str, event: StageEvent, detail: str) -> None:
        if as_json:
            return
        mark = {
            StageEvent.START: "[cyan]…[/cyan]",
            StageEvent.DONE: "[green]✓[/green]",
            StageEvent.FAILED: "[red]✗[/red]",
            StageEvent.SKIPPED: "[dim]-[/dim]",
        }[event]
        err.print(f"{mark} {stage:<16} {detail}")

    result = build_image(
        loaded,
        BuildOptions(
            out_root=out_dir,
            cache_dir=cache_dir,
            refresh_base=refresh_base,
            disk_image=disk or boot_test,
            scan=scan,
        ),
        listener,
    )
    boot_doc: dict[str, Any] | None = None
    if boot_test:
        from goldsmith.boot.boottest import BoottestOptions, run_boottest
        from goldsmith.scan.exceptions import load_exceptions

        listener("boot-test", StageEvent.START, "QEMU, SSH, live checks, Lynis in the guest")
        boot = run_boottest(
            result.out_dir,
            loaded.profile,
            BoottestOptions(cache_dir=cache_dir, exceptions=tuple(load_exceptions(loaded))),
            progress=None if as_json else (lambda msg: err.print(f"[dim]  … {escape(msg)}[/dim]")),
        )
        listener(
            "boot-test",
            StageEvent.DONE if boot.passed else StageEvent.FAILED,
            f"{'passed' if boot.passed else 'FAILED'}: {boot.path}",
        )
        boot_doc = {
            "passed": boot.passed,
            "result": str(boot.path),
            "failed": boot.doc["summary"]["failed"],
            "error": boot.doc.get("error"),
        }
    gates_doc: dict[str, Any] | None = None
    if gate:
        from goldsmith.pipeline.gates import evaluate_gates, read_results

        outcome = evaluate_gates(loaded.profile.gates, read_results(result.out_dir))
        gates_doc = {
            "passed": all(g.passed for g in outcome),
            "gates": [
                {
                    "name": g.name,
                    "passed": g.passed,
                    "required": g.required,
                    "observed": g.observed,
                    "explanation": g.explanation,
                }
                for g in outcome
            ],
        }
        (result.out_dir / "gates.json").write_text(json.dumps(gates_doc, indent=2) + "\n")
    summary: dict[str, Any] = {
        "out_dir": str(result.out_dir),
        "rootfs_tar": str(result.rootfs_tar),
        "rootfs_sha256": result.rootfs_sha256,
        "base_digest": result.base_digest,
        "base_cached": result.base_cached,
        "packages": {"base": result.packages_before, "final": result.packages_after},
        "files": result.files_after,
        "rootfs_bytes": result.bytes_after,
        "disk": None
        if result.disk is None
        else {
            "raw": str(result.disk.raw) if result.disk.raw else None,
            "qcow2": str(result.disk.qcow2) if result.disk.qcow2 else None,
        },
        "boot_test": boot_doc,
        "gates": gates_doc,
        "stage_seconds": result.stage_seconds,
    }
    failed = (boot_doc is not None and not boot_doc["passed"]) or (
        gates_doc is not None and not gates_doc["passed"]
    )
    if as_json:
        _print_json(summary)
        if failed:
            raise typer.Exit(EXIT_FAIL)
        return
    from rich.table import Table

    table = Table(title=f"{loaded.profile.output_name}", show_header=False)
    table.add_row("output", summary["out_dir"])
    table.add_row("rootfs sha256", result.rootfs_sha256)
    table.add_row(
        "base", f"{result.base_digest[:16]} ({'cached' if result.base_cached else 'bootstrapped'})"
    )
    table.add_row("packages", f"{result.packages_before} in base -> {result.packages_after} final")
    table.add_row("rootfs", f"{result.files_after} files, {result.bytes_after / 1e6:.0f} MB")
    if boot_doc is not None:
        table.add_row(
            "boot test",
            "passed"
            if boot_doc["passed"]
            else f"FAILED: {', '.join(boot_doc['failed'])} {boot_doc['error'] or ''}".strip(),
        )
    table.add_row("total", f"{sum(result.stage_seconds.values()):.0f} s (without the boot test)")
    out.print(table)
    if gates_doc is not None:
        for g in gates_doc["gates"]:
            mark = "[green]pass[/green]" if g["passed"] else "[red]MISS[/red]"
            out.print(f"{mark} {g['name']}: {escape(g['observed'])} (required {g['required']})")
            if g["explanation"]:
                out.print(f"     {escape(g['explanation'])}")
    if failed:
        raise typer.Exit(EXIT_FAIL)


# boot test -------------------------------------------------------------------------------------
@app.command("boottest")
def boottest(
    image: Annotated[Path, typer.Argument(help="A build output dir (or a disk image in one).")],
    profile: Annotated[
        str | None,
        typer.Option("--profile", "-p", help="Profile (default: the one build.json names)."),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the login prompt.")] = 600,
    accel: Annotated[str, typer.Option(help="auto, kvm or tcg.")] = "auto",
    scanners: Annotated[
        bool, typer.Option(help="Run goldsmith scan, Lynis and OpenSCAP in the guest.")
    ] = True,
    guest_lynis: Annotated[
        bool,
        typer.Option(
            "--guest-lynis/--no-guest-lynis",
            help="Run Lynis inside the guest (slow under TCG: 10+ minutes).",
        ),
    ] = True,
    guest_openscap: Annotated[
        bool,
        typer.Option(
            "--guest-openscap/--no-guest-openscap",
            help="Run OpenSCAP CIS L2 inside the guest (slow under TCG: 15+ minutes).",
        ),
    ] = True,
    scanner_timeout: Annotated[
        float,
        typer.Option(
            "--scanner-timeout",
            help="Seconds each in-guest scanner may take (TCG: Lynis and OpenSCAP take "
            "15-30 minutes each on a busy 2-core host).",
        ),
    ] = 3600,
    cache_dir: Annotated[
        Path, typer.Option("--cache-dir", help="Scanner content and zipapp cache.")
    ] = Path("/var/cache/goldsmith"),
    as_json: JsonOpt = False,
) -> None:
    """Boot a test copy of the image, log in over SSH, run the live checks and scanners."""
    from goldsmith.boot.boottest import BoottestOptions, recorded_profile, run_boottest
    from goldsmith.model.profile_loader import load_profile

    _find_disk(image)  # no disk image: a usage error before anything else
    ref = profile or recorded_profile(image)
    loaded = load_profile(ref)
    from goldsmith.scan.exceptions import load_exceptions

    opts = BoottestOptions(
        timeout=timeout,
        accel=accel,
        scanners=scanners,
        guest_lynis=guest_lynis,
        guest_openscap=guest_openscap,
        scanner_timeout=scanner_timeout,
        cache_dir=cache_dir,
        exceptions=tuple(load_exceptions(loaded)),
    )
    progress = None if as_json else (lambda msg: err.print(f"[dim]… {escape(msg)}[/dim]"))
    result = run_boottest(image, loaded.profile, opts, progress=progress)
    if as_json:
        _print_json(result.doc)
    else:
        for c in result.checks:
            mark = "[green]pass[/green]" if c.to_json()["passed"] else f"[red]{c.status}[/red]"
            out.print(f"{mark:>22} {c.id:<28} {escape(c.observed[:100])}")
        if result.doc.get("error"):
            out.print(f"[red]error:[/red] {escape(str(result.doc['error']))}")
        verdict = "[green]passed[/green]" if result.passed else "[red]FAILED[/red]"
        out.print(f"boot test {verdict}; wrote {result.path}")
    if not result.passed:
        raise typer.Exit(EXIT_FAIL)


def _find_disk(path: Path) -> Path:
    """A disk image, or the one in a build output directory (qcow2 preferred)."""
    if path.is_dir():
        for pattern in ("*.qcow2", "*.raw"):
            found = sorted(p for p in path.glob(pattern) if not p.name.startswith("."))
            if found:
                return found[0]
        raise GoldsmithError(
            f"{path}: no disk image (*.qcow2 or *.raw) in this directory",
            hint="build one with: goldsmith build --disk",
        )
    if not path.is_file():
        raise GoldsmithError(f"{path}: no such disk image")
    return path


# scan ------------------------------------------------------------------------------------------
@app.command("scan")
def scan(
    rootfs: Annotated[
        Path | None, typer.Option("--rootfs", help="Scan this unpacked rootfs (read only).")
    ] = None,
    host: Annotated[bool, typer.Option("--host", help="Scan the running system.")] = False,
    profile: ProfileArg = DEFAULT_PROFILE,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Write scan.json, scan.junit.xml, scan.sarif and artifacts."),
    ] = None,
    lynis: Annotated[
        bool | None,
        typer.Option("--lynis/--no-lynis", help="Run Lynis (chroot; default on for --rootfs)."),
    ] = None,
    openscap: Annotated[
        bool | None,
        typer.Option(
            "--openscap/--no-openscap", help="Run oscap-chroot, CIS L2 (default on for --rootfs)."
        ),
    ] = None,
    cache_dir: Annotated[
        Path, typer.Option("--cache-dir", help="Pinned scanner content cache.")
    ] = Path("/var/cache/goldsmith"),
    as_json: JsonOpt = False,
) -> None:
    """Run every control's check (and Lynis, OpenSCAP); exit 1 if a failure is not excepted."""
    import tempfile

    from goldsmith import checkworker as check_worker

    worker = check_worker.take()  # forked by the console script (see goldsmith.checkworker)
    try:
        if (rootfs is None) == (not host):
            raise GoldsmithError("give exactly one of --rootfs DIR and --host")
        root = rootfs if rootfs is not None else Path("/")
        if host:  # a scan leaves the host as it found it: it reads goldsmith's cache only
            from goldsmith.cache import set_writable

            set_writable(False)
        jobs = check_worker.default_jobs()
        begin = check_worker.Begin(str(root), host, jobs, cache_writable=not host)
        if worker is not None and not (root.is_dir() and worker.agrees(begin, profile)):
            worker.cancel()
            worker = None
        if worker is None:
            from goldsmith.targets.treewalk import start_prefetch

            # the walk of the tree scans runs in a child process while the profile, the
            # catalogue and the modules they need load (a scan only reads: see treewalk)
            start_prefetch(root, live=host)

        from goldsmith.model.profile_loader import load_profile

        loaded = worker.loaded if worker is not None else None
        if loaded is None:
            loaded = load_profile(profile)
            if worker is not None:
                worker.select(profile, loaded)
        from goldsmith.scan.formats import OutputFormat, write_reports
        from goldsmith.scan.run import ScanOptions, scan_host, scan_rootfs

        with tempfile.TemporaryDirectory(prefix="goldsmith-scan-", dir="/var/tmp") as tmp:
            opts = ScanOptions(
                lynis=lynis if lynis is not None else rootfs is not None,
                openscap=openscap if openscap is not None else rootfs is not None,
                work_dir=out_dir if out_dir is not None else Path(tmp),
                cache_dir=cache_dir,
                jobs=jobs,
            )
            if rootfs is not None:
                report = scan_rootfs(rootfs, loaded, opts, checks=worker)
            else:
                report = scan_host(loaded, opts, checks=worker)
    finally:
        if worker is not None:
            worker.cancel()
    written = write_reports(report, out_dir) if out_dir is not None else []
    if as_json:
        sys.stdout.write(OutputFormat.JSON.to_format().render(report))
    else:
        _print_scan(report, written)
    if not report.compliant:
        raise typer.Exit(EXIT_FAIL)


def _print_scan(report: Any, written: list[Path]) -> None:
    from rich.table import Table

    from goldsmith.model.records import Status

    table = Table(title=f"goldsmith scan: {escape(report.target)} ({report.profile_name})")
    table.add_column("CIS section")
    for head in ("passed", "failed", "excepted", "n/a", "errors"):
        table.add_column(head, justify="right")
    cols = (Status.PASS, Status.FAIL, Status.EXCEPTED, Status.NOT_APPLICABLE, Status.ERROR)
    for s in report.sections():
        table.add_row(f"{s.section} {s.title}", *(str(s.counts[c]) for c in cols))
    total = report.counts()
    table.add_row("[bold]all findings[/bold]", *(f"[bold]{total[c]}[/bold]" for c in cols))
    out.print(table)
    for run in report.scanners:
        state = "ran" if run.ran else "[red]did not run[/red]"
        secs = f" in {run.seconds:.1f} s" if run.seconds is not None else ""
        note = f" ({escape(run.reason)})" if run.reason else ""
        out.print(f"{run.source.value:>10}: {state}{secs}{note}")
    if report.lynis is not None:
        out.print(f"Lynis hardening index: {report.lynis.hardening_index} ({report.lynis.mode})")
    if report.openscap is not None and report.openscap.pass_rate is not None:
        out.print(
            f"OpenSCAP pass rate: {report.openscap.pass_rate:.1%} ({report.openscap.profile_id})"
        )
    for d in report.disagreements:
        out.print(
            f"[yellow]disagreement[/yellow] CIS {d.cis}: "
            f"goldsmith {d.goldsmith}, OpenSCAP {d.openscap}"
        )
    unchecked = 0
    for r in report.exceptions:
        if r.state == "unchecked":
            unchecked += 1
        elif r.state != "active":
            out.print(
                f"[yellow]{r.state} exception[/yellow]: {escape(r.exception.control)} "
                f"(expires {r.exception.expires})"
            )
    if unchecked:
        out.print(
            f"{unchecked} exceptions name a scanner that did not run in this scan (unchecked)"
        )
    for item in report.items:
        if item.finding.status in (Status.FAIL, Status.ERROR):
            f = item.finding
            out.print(
                f"[red]{f.status.value}[/red] {escape(f.control)}: "
                f"{escape(f.evidence.observed[:120])}"
            )
    for path in written:
        out.print(f"wrote {path}")
    verdict = "[green]compliant[/green]" if report.compliant else "[red]NOT compliant[/red]"
    out.print(f"{verdict}: {report.failures_not_excepted} failures not excepted")


# gate ------------------------------------------------------------------------------------------
@app.command("gate")
def gate(
    profile: ProfileArg = DEFAULT_PROFILE,
    results: Annotated[
        Path, typer.Option("--results", help="Directory with scan.json and boottest.json.")
    ] = Path(),
    as_json: JsonOpt = False,
) -> None:
    """Evaluate the profile's gates over the results; explain each miss; exit 1 on any."""
    from goldsmith.model.profile_loader import load_profile
    from goldsmith.pipeline.gates import evaluate_gates, read_results

    loaded = load_profile(profile)
    outcome = evaluate_gates(loaded.profile.gates, read_results(results))
    if as_json:
        _print_json(
            {
                "passed": all(g.passed for g in outcome),
                "gates": [
                    {
                        "name": g.name,
                        "passed": g.passed,
                        "required": g.required,
                        "observed": g.observed,
                        "explanation": g.explanation,
                    }
                    for g in outcome
                ],
            }
        )
    else:
        for g in outcome:
            mark = "[green]pass[/green]" if g.passed else "[red]MISS[/red]"
            out.print(f"{mark} {g.name}: {escape(g.observed)} (required {escape(g.required)})")
            if g.explanation:
                out.print(f"     {escape(g.explanation)}")
    if not all(g.passed for g in outcome):
        raise typer.Exit(EXIT_FAIL)


# inventory -------------------------------------------------------------------------------------
@app.command("inventory")
def inventory(
    rootfs: Annotated[Path, typer.Argument(help="A rootfs directory.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Write JSON here.")],
) -> None:
    """Record every file and package of a rootfs as JSON."""
    from goldsmith.build.inventory import take_inventory, write_inventory

    if not rootfs.is_dir():
        raise GoldsmithError(f"{rootfs}: not a directory")
    inv = take_inventory(rootfs)
    write_inventory(inv, output)
    out.print(f"{len(inv.files)} files, {len(inv.packages)} packages -> {output}")


# entry point -----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: the one place errors become exit codes.

    Typer runs in standalone mode, so usage errors are printed by it and end in SystemExit(2);
    everything goldsmith raises is caught here.
    """
    signals: list[int] = []
    try:
        # SIGTERM/SIGHUP (a CI job cancelled, a closed terminal) end the run like Ctrl-C:
        # as an exception, so mounts, loop devices and VMs are cleaned up on the way out
        with terminate_as_interrupt() as signals:
            app(args=argv, prog_name="goldsmith")
        code = EXIT_OK
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (EXIT_OK if e.code is None else EXIT_FAIL)
        if signals:  # typer turned the Terminated into exit 130 (its Ctrl-C code)
            err.print(f"terminated ({signal.Signals(signals[0]).name}); cleaned up")
            code = 128 + signals[0]
    except GoldsmithError as e:
        if _state["debug"]:
            traceback.print_exc()
        err.print(f"[red]error:[/red] {escape(e.message)}", highlight=False)
        if e.hint:
            err.print(f"[yellow]hint:[/yellow] {escape(e.hint)}", highlight=False)
        code = e.exit_code
    except Terminated as e:
        err.print(f"terminated ({e.args[0]}); cleaned up")
        code = 128 + e.signum
    except KeyboardInterrupt:
        err.print("interrupted")
        code = 130
    except Exception:
        traceback.print_exc()
        err.print(
            "[red]internal error[/red]: this is a bug in goldsmith; please report it "
            "with the traceback above"
        )
        code = EXIT_INTERNAL
    if argv is None:
        # The process ends here and everything it allocated dies with it: frozen objects are
        # left out of the interpreter's final cyclic collection, which otherwise walks them all
        # (~0.1 s of a one-second whole-catalogue scan, measured side by side in bench/).
        gc.freeze()
        sys.exit(code)
    return code


if __name__ == "__main__":
    main()
