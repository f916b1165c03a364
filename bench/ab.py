"""Interleaved A/B timing of shell commands: each round runs every command once, in turn, so
the machine's load drifts over all of them alike. Prints min and median wall time per command.

    .venv/bin/python bench/ab.py 20 'before=PYTHONPATH=/tmp/old/src .venv/bin/python -c ...' \\
        'after=.venv/bin/goldsmith scan --rootfs R --no-lynis --no-openscap --json'

Not a test. Output goes to /dev/null; a command that fails is reported and stops the run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rounds", type=int)
    ap.add_argument("commands", nargs="+", help="NAME=SHELL COMMAND")
    args = ap.parse_args()
    named = [c.partition("=")[::2] for c in args.commands]
    if any(not name or not cmd for name, cmd in named):
        sys.exit("each command is NAME=SHELL COMMAND")
    times: dict[str, list[float]] = {name: [] for name, _ in named}
    for _ in range(args.rounds):
        for name, cmd in named:
            t0 = time.perf_counter()
            res = subprocess.run(cmd, shell=True, stdout=subprocess.DEVNULL, check=False)
            times[name].append(time.perf_counter() - t0)
            if res.returncode not in (0, 1):  # goldsmith scan exits 1 on a failing root
                sys.exit(f"{name}: exit status {res.returncode}")
    for name, ts in times.items():
        print(f"{name:<20} min {min(ts):.3f} s  median {statistics.median(ts):.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
