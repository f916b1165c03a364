"""Side-by-side timing of goldsmith scan, oscap-chroot (CIS Level 2 Server) and Lynis (chroot)
on one unpacked rootfs, in one run. Not a test: it prints times and ratios.

    sudo .venv/bin/python bench/scan_bench.py --rootfs /var/tmp/rootfs [--work /var/tmp/bench]
    sudo .venv/bin/python bench/scan_bench.py --tar out/<name>/rootfs.tar.zst

Each tool runs the way goldsmith runs it. goldsmith: the real CLI in a fresh process
(``goldsmith scan --rootfs R --no-lynis --no-openscap``: every control of the default profile,
Python start-up included), best of ``--repeat`` runs with goldsmith's cache warm (one run
before them, with an empty cache of its own, fills it and is printed too). OpenSCAP and
Lynis: through goldsmith's adapters, which first copy the rootfs (the scanners write into
what they scan); the ratios use the scanner's own run time *without* that copy, which
flatters them, and the copy time is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from goldsmith.scan.content import ensure_lynis, ensure_ssg_content
from goldsmith.scan.lynis import run_lynis_chroot
from goldsmith.scan.openscap import CIS_L2_SERVER, run_oscap_chroot

TARGETS = {"openscap": 20.0, "lynis": 30.0}


def goldsmith_scan(
    rootfs: Path, profile: str, repeat: int, cache: Path
) -> tuple[float, list[float], int, list[float]]:
    """Best wall time of the CLI, every run's, the number of findings, and each run's own
    record of how long the checks took (``scanners[goldsmith].seconds`` of its report: the
    part of the run after start-up, i.e. after Python, imports, profile and catalogue).

    The runs share goldsmith's cache in ``cache``, empty before the first run: the first run
    is cold (it parses the catalogue and renders the templates, and fills the cache), the
    others are warm, as every scan after the first on a machine is."""
    exe = Path(sys.executable).with_name("goldsmith")
    argv = [str(exe), "scan", "--rootfs", str(rootfs), "--profile", profile]
    argv += ["--no-lynis", "--no-openscap", "--json"]
    env = {**os.environ, "GOLDSMITH_CACHE_DIR": str(cache)}
    times: list[float] = []
    checks: list[float] = []
    findings = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
        times.append(time.perf_counter() - t0)
        if res.returncode not in (0, 1):
            sys.exit(f"goldsmith scan failed ({res.returncode}):\n{res.stderr}")
        doc = json.loads(res.stdout)
        findings = len(doc["findings"])
        checks += [s["seconds"] for s in doc["scanners"] if s["source"] == "goldsmith"]
    return min(times), times, findings, checks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--rootfs", type=Path, help="an unpacked rootfs")
    src.add_argument("--tar", type=Path, help="a rootfs.tar.zst to unpack first")
    ap.add_argument("--work", type=Path, default=Path("/var/tmp/goldsmith-bench"))
    ap.add_argument("--cache-dir", type=Path, default=Path("/var/cache/goldsmith"))
    ap.add_argument("--profile", default="nanoclaw-debian13")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = ap.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=args.work))
    rootfs = args.rootfs
    if args.tar is not None:
        rootfs = run_dir / "rootfs"
        rootfs.mkdir()
        subprocess.run(["tar", "--zstd", "-xpf", str(args.tar), "-C", str(rootfs)], check=True)
    assert rootfs is not None
    # content fetched before timing starts (cached after the first run)
    ds = ensure_ssg_content(args.cache_dir)
    lynis_dir = ensure_lynis(args.cache_dir)

    g_cache = run_dir / "goldsmith-cache"
    g_runs = goldsmith_scan(rootfs, args.profile, 1 + args.repeat, g_cache)
    g_cold, g_warm = g_runs[1][0], g_runs[1][1:]
    g_best, g_all, n_controls, g_checks = min(g_warm), g_warm, g_runs[2], g_runs[3][1:]

    t0 = time.perf_counter()
    oscap = run_oscap_chroot(rootfs, ds, CIS_L2_SERVER, work_dir=run_dir / "openscap")
    o_total = time.perf_counter() - t0
    o_scan = oscap.duration_s or o_total

    t0 = time.perf_counter()
    lynis = run_lynis_chroot(rootfs, work_dir=run_dir / "lynis", lynis_dir=lynis_dir)
    l_total = time.perf_counter() - t0
    l_scan = lynis.duration_s or l_total

    numbers = {
        "rootfs": str(rootfs),
        "goldsmith": {
            "seconds": round(g_best, 3),
            "cold": round(g_cold, 3),
            "runs": [round(t, 3) for t in g_all],
            "median": round(statistics.median(g_all), 3),
            "controls": n_controls,
            "checks_seconds": [round(c, 3) for c in g_checks],
        },
        "openscap": {
            "seconds": round(o_scan, 3),
            "with_copy": round(o_total, 3),
            "profile": CIS_L2_SERVER,
            "rules_selected": len(oscap.selected),
            "pass_rate": None if oscap.pass_rate is None else round(oscap.pass_rate * 100, 2),
        },
        "lynis": {
            "seconds": round(l_scan, 3),
            "with_copy": round(l_total, 3),
            "tests": lynis.tests_performed,
            "hardening_index": lynis.hardening_index,
        },
        "ratios": {"openscap": round(o_scan / g_best, 1), "lynis": round(l_scan / g_best, 1)},
        "targets": TARGETS,
    }
    if args.json:
        print(json.dumps(numbers, indent=2))
    else:
        print(f"rootfs: {rootfs}")
        print(f"{'tool':<34}{'seconds':>10}{'with copy':>12}{'ratio':>9}{'target':>9}")
        print(
            f"{'goldsmith scan (' + str(n_controls) + ' controls)':<34}{g_best:>10.2f}"
            f"{'-':>12}{'1.0x':>9}{'':>9}"
        )
        for name, scan_s, total in (("openscap", o_scan, o_total), ("lynis", l_scan, l_total)):
            label = {
                "openscap": f"oscap CIS L2 ({len(oscap.selected)} rules)",
                "lynis": f"Lynis chroot ({lynis.tests_performed} tests)",
            }[name]
            ratio = scan_s / g_best
            ok = "ok" if ratio >= TARGETS[name] else "MISS"
            print(
                f"{label:<34}{scan_s:>10.2f}{total:>12.2f}{ratio:>8.1f}x"
                f"{'>=' + format(TARGETS[name], 'g') + 'x':>7} {ok}"
            )
        print(
            f"goldsmith runs (warm cache): {', '.join(f'{t:.2f}' for t in g_all)} s; "
            f"the first, with an empty cache: {g_cold:.2f} s"
        )
        print(
            f"  of which the checks themselves (the rest is start-up): "
            f"{', '.join(f'{c:.2f}' for c in g_checks)} s"
        )
    shutil.rmtree(run_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
