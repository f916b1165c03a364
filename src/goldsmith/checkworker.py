"""goldsmith's checks in a worker process, started before the command line is even parsed.

A whole-catalogue ``goldsmith scan`` is mostly start-up: the CLI (typer), pydantic and the
profile on one side; the rule modules, the catalogue and then the checks on the other. The two
sides do not need each other until the checks start, so on a machine with two or more CPUs
the console script (:mod:`goldsmith.entry`) forks this worker as soon as it sees the ``scan``
subcommand (:func:`prestart`), after importing what both sides need (pydantic). Then:

1. the parent reads the tree and the profile the command line plainly names (``--rootfs DIR``
   or ``--host``, ``--profile P``: :func:`walk_hint`, :func:`profile_hint`), sends ``begin``
   (that tree, live or not, how many processes the checks may use, whether goldsmith's cache
   may be written: not for ``--host``), loads the profile and sends its
   :class:`~goldsmith.controls.selection.Selection` (plain data: which controls run, their
   params, where the profile wrote them); then it imports and runs the CLI;
2. meanwhile the worker imports the check side, starts the tree walk of the named tree
   (:mod:`goldsmith.targets.treewalk`), loads the catalogue (holding what it would write to
   goldsmith's cache until ``begin`` says whether it may), resolves and checks
   (``check_all``, itself split over two processes) and sends back the findings and how long
   the checks took;
3. the scan command compares what was sent with what the CLI parsed
   (:meth:`CheckWorker.agrees`); if they differ it stops the worker and scans in its own
   process, as it does when there is no worker.

The worker only ever answers with findings or not at all: any error in it (a bad profile, an
unreadable catalogue, a bug) makes it exit without an answer, and the parent then resolves and
checks in its own process, which raises the same error with its file and line. So the worker
can make a scan faster, never different. A parent that ends without taking the answer (another
command, an error, a signal) kills the worker; a worker whose parent is gone exits on EOF.

This module imports nothing heavy: the console script imports it before anything else.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from goldsmith.forked import Forked, read_message, write_message

if TYPE_CHECKING:
    from goldsmith.model.profile_loader import LoadedProfile
    from goldsmith.model.records import Finding


class Begin(NamedTuple):
    root: str
    live: bool
    jobs: int
    cache_writable: bool


class Answer(NamedTuple):
    findings: list[Finding]
    seconds: float


def subcommand(args: Sequence[str]) -> str | None:
    """The subcommand of a goldsmith command line (the first argument not an option: the
    root options are flags)."""
    return next((a for a in args if not a.startswith("-")), None)


class CheckWorker:
    """The parent's handle on a forked worker (see the module doc)."""

    def __init__(self, *, walk: tuple[Path, bool] | None = None) -> None:
        recv, send = os.pipe()

        def work() -> Answer | None:  # pragma: no cover - runs in the forked child
            os.close(send)  # the worker sees EOF when the parent is gone
            return _serve(recv, walk)

        try:
            self._child = Forked(work)
        finally:
            os.close(recv)
        self._send: int | None = send
        #: what was sent: the ``begin`` message, the profile ref the selection came from and
        #: the profile loaded for it
        self.begun: Begin | None = None
        self.selected: str | None = None
        self.loaded: LoadedProfile | None = None

    @property
    def alive(self) -> bool:
        return self._child.pid is not None

    def begin(self, begin: Begin) -> None:
        self.begun = begin
        self._message(begin)

    def select(self, ref: str, loaded: LoadedProfile) -> None:
        """Send the selection of profile ``ref`` (loaded as ``loaded``)."""
        from goldsmith.controls.selection import Selection

        self.selected, self.loaded = ref, loaded
        self._message(Selection.of(loaded.profile, loaded))

    def _message(self, obj: object) -> None:
        if self._send is None:
            return
        try:
            write_message(self._send, obj)
        except OSError:  # the worker is gone: result() says so
            self._close_send()

    def agrees(self, begin: Begin, ref: str) -> bool:
        """Whether what was sent is what the CLI parsed; what was not sent yet is sent now
        (the profile is loaded by the caller: :attr:`loaded` is ``None`` until then). A worker
        that disagrees is stopped: the caller scans without it."""
        if self.begun is None:
            self.begin(begin)
        if self.begun != begin or (self.selected is not None and self.selected != ref):
            self.cancel()
            return False
        return True

    def result(self) -> Answer | None:
        """The worker's answer, waiting for it; ``None`` if it has none (check here then)."""
        self._close_send()
        got = self._child.result()
        return got if isinstance(got, Answer) else None

    def cancel(self) -> None:
        """Stop the worker if it still runs (the scan ended, or never needed it)."""
        self._child.cancel()
        self._close_send()

    def _close_send(self) -> None:
        if self._send is not None:
            os.close(self._send)
            self._send = None


_started: CheckWorker | None = None


def default_jobs() -> int:
    """Processes goldsmith's checks use: 2 where two CPUs are free for this process, else 1."""
    return min(2, len(os.sched_getaffinity(0)))


def prestart(args: Sequence[str]) -> None:
    """Fork the worker now if ``args`` is a ``scan`` command line and two CPUs are free for it,
    and send it what the command line plainly says (:func:`walk_hint`, :func:`profile_hint`):
    ``begin`` and the profile's selection, so the worker can check while the CLI loads.

    Called by the console script before the CLI is imported. What was sent is only a guess:
    the scan command compares it with what the CLI parsed and stops the worker if they differ
    (see :meth:`CheckWorker.agrees`). A wrong guess costs time, never a different result; a
    profile that does not load is not sent (the CLI loads it and reports the error).
    """
    global _started
    if _started is not None or subcommand(args) != "scan":
        return
    if "--help" in args or default_jobs() < 2:
        return
    _preload()
    hint = walk_hint(args)
    try:
        worker = CheckWorker(walk=hint)
    except OSError:
        return
    _started = worker
    if hint is None:
        return
    root, live = hint
    worker.begin(Begin(str(root), live, default_jobs(), cache_writable=not live))
    from goldsmith.errors import GoldsmithError
    from goldsmith.model.profile_loader import load_profile

    ref = profile_hint(args)
    with contextlib.suppress(GoldsmithError):
        worker.select(ref, load_profile(ref))


def profile_hint(args: Sequence[str]) -> str:
    """The profile a ``scan`` command line names (``--profile P``, ``-p P``), else the
    default; a hint, as :func:`walk_hint`."""
    from goldsmith import DEFAULT_PROFILE

    for i, arg in enumerate(args):
        if arg in ("--profile", "-p") and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--profile="):
            return arg.partition("=")[2]
    return DEFAULT_PROFILE


def _preload() -> None:
    """Import, before forking, what both processes need: pydantic's model machinery (the CLI's
    parameters, the profile, the report; the catalogue and the rules) and goldsmith's records.
    Imported once and shared, instead of twice on two busy CPUs."""
    from pydantic import TypeAdapter

    import goldsmith.model.records  # noqa: F401

    TypeAdapter(int)  # loads the schema generator and the plugin loader, once


def walk_hint(args: Sequence[str]) -> tuple[Path, bool] | None:
    """The tree a ``scan`` command line names (``--rootfs DIR`` or ``--host``), read before the
    CLI parses it, so the worker can start the tree walk before ``begin``. Only a hint: a walk
    is keyed by the root it walked, and the worker walks the root ``begin`` names if the hint
    named another (a wrong hint costs a walk that nobody takes)."""
    for i, arg in enumerate(args):
        if arg == "--host":
            return Path("/"), True
        if arg == "--rootfs" and i + 1 < len(args):
            return Path(args[i + 1]), False
        if arg.startswith("--rootfs="):
            return Path(arg.partition("=")[2]), False
    return None


def take() -> CheckWorker | None:
    """The prestarted worker, handed over once (``None`` if there is none)."""
    global _started
    worker, _started = _started, None
    return worker


# the worker ------------------------------------------------------------------------------------


def _serve(  # pragma: no cover - runs in the forked child
    recv: int, walk: tuple[Path, bool] | None
) -> Answer | None:
    """The worker (a :class:`~goldsmith.forked.Forked` child): import the check side, follow
    the parent's two messages and return the answer (``None``: none, the parent checks)."""
    from goldsmith import cache
    from goldsmith.controls.catalogue import load_catalogue
    from goldsmith.controls.engine import Selection, check_all, resolve_selection
    from goldsmith.targets import treewalk

    if walk is not None:  # the hinted tree, walked while the catalogue loads
        treewalk.start_prefetch(walk[0], live=walk[1])

    # the catalogue does not depend on the command line: load it before ``begin`` comes,
    # holding any cache entry it writes until ``begin`` says whether writing is allowed
    cache.hold_writes()
    catalogue = load_catalogue()
    begin = read_message(recv)
    if not isinstance(begin, Begin):
        return None
    cache.set_writable(begin.cache_writable)
    root = Path(begin.root)
    if walk is None or (walk[1], os.path.realpath(walk[0])) != (
        begin.live,
        os.path.realpath(root),
    ):
        treewalk.cancel_prefetches()  # no hint or a wrong one: walk what the CLI named
        treewalk.start_prefetch(root, live=begin.live)
    target: Any
    if begin.live:
        from goldsmith.targets.host import HostTarget

        target = HostTarget()
    else:
        from goldsmith.targets.rootfs import RootfsTarget

        target = RootfsTarget(root)
    selection = read_message(recv)
    if not isinstance(selection, Selection):
        return None
    resolved = resolve_selection(selection, catalogue)
    t0 = time.monotonic()
    findings = check_all(target, resolved, jobs=begin.jobs)
    return Answer(findings, round(time.monotonic() - t0, 3))
