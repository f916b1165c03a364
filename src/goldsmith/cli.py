"""The command line. It parses arguments, calls one function, and maps errors to exit codes.

Exit codes: 0 ok, 1 non-compliant / a gate failed / a build or boot failed,
2 usage or configuration error, 3 internal error (a bug: please report it).
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from goldsmith import __version__
from goldsmith.errors import GoldsmithError

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

out = Console()
err = Console(stderr=True, soft_wrap=True)
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
    profile: Annotated[str, typer.Argument(help="Shipped name or path.")] = "nanoclaw-debian13",
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


# build -----------------------------------------------------------------------------------------
@app.command("build")
def build(
    profile: ProfileArg = "nanoclaw-debian13",
    out_dir: Annotated[Path, typer.Option("--out", help="Output root directory.")] = Path("out"),
    cache_dir: Annotated[
        Path, typer.Option("--cache-dir", help="Base rootfs cache and work area.")
    ] = Path("/var/cache/goldsmith"),
    refresh_base: Annotated[
        bool, typer.Option("--refresh-base", help="Bootstrap again even if cached.")
    ] = False,
    disk: Annotated[bool, typer.Option("--disk/--no-disk", help="Build disk images.")] = True,
    boot_test: Annotated[
        bool, typer.Option("--boot-test/--no-boot-test", help="Boot the disk image in QEMU.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Build the gold image of a profile into OUT/<profile>-<version>/."""
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
            disk_image=disk,
            boot_test=boot_test,
        ),
        listener,
    )
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
        "boot_test": None
        if result.boot_seconds is None
        else {"seconds": result.boot_seconds, "accel": result.accel},
        "stage_seconds": result.stage_seconds,
    }
    if as_json:
        _print_json(summary)
        return
    table = Table(title=f"{loaded.profile.output_name}", show_header=False)
    table.add_row("output", summary["out_dir"])
    table.add_row("rootfs sha256", result.rootfs_sha256)
    table.add_row(
        "base", f"{result.base_digest[:16]} ({'cached' if result.base_cached else 'bootstrapped'})"
    )
    table.add_row("packages", f"{result.packages_before} in base -> {result.packages_after} final")
    table.add_row("rootfs", f"{result.files_after} files, {result.bytes_after / 1e6:.0f} MB")
    if result.boot_seconds is not None:
        table.add_row(
            "boot test", f"login prompt after {result.boot_seconds:.0f} s ({result.accel})"
        )
    table.add_row("total", f"{sum(result.stage_seconds.values()):.0f} s")
    out.print(table)


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
    opts = BoottestOptions(timeout=timeout, accel=accel, scanners=scanners, cache_dir=cache_dir)
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
    try:
        app(args=argv, prog_name="goldsmith")
        code = EXIT_OK
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (EXIT_OK if e.code is None else EXIT_FAIL)
    except GoldsmithError as e:
        if _state["debug"]:
            traceback.print_exc()
        err.print(f"[red]error:[/red] {escape(e.message)}", highlight=False)
        if e.hint:
            err.print(f"[yellow]hint:[/yellow] {escape(e.hint)}", highlight=False)
        code = e.exit_code
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
        sys.exit(code)
    return code


if __name__ == "__main__":
    main()
