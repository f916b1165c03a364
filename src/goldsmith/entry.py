"""The ``goldsmith`` console script.

For ``goldsmith scan`` it first forks the check worker (:mod:`goldsmith.checkworker`), so the
rule modules and the catalogue load beside the CLI instead of after it; then it runs the CLI
(:func:`goldsmith.cli.main`), which does everything else, for every command.
"""

from __future__ import annotations

import sys


def main() -> None:
    from goldsmith.checkworker import prestart

    prestart(sys.argv[1:])
    from goldsmith.cli import main as cli_main

    cli_main()
