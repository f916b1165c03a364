"""The check worker (goldsmith.checkworker): a forked process that runs goldsmith's checks
while the CLI parses arguments and loads the profile.

What must hold: its findings are the in-process findings; a worker that cannot answer (a bad
profile, a wrong root hint, a crash) changes nothing but time, and every error is the one
the in-process scan raises, with its position; no worker is left running; a scan of a live
host writes nothing to goldsmith's cache, not even through the worker; the console script
starts it only for ``scan``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from controls_fixtures import child_pids, write

from goldsmith import checkworker
from goldsmith.checkworker import Begin, CheckWorker, profile_hint, subcommand, walk_hint
from goldsmith.controls.catalogue import load_catalogue
from goldsmith.controls.engine import check_all, resolve
from goldsmith.controls.selection import Selection
from goldsmith.errors import ProfileError
from goldsmith.model.profile_loader import load_profile
from goldsmith.model.records import Source
from goldsmith.scan.run import ScanOptions, scan_rootfs
from goldsmith.targets.rootfs import RootfsTarget

NOW = dt.datetime(2026, 6, 1, 9, 30, tzinfo=dt.UTC)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    write(r, "/etc/passwd", "root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000::/home/a:/bin/sh\n")
    write(r, "/etc/group", "root:x:0:\nagent:x:1000:\n")
    write(r, "/etc/ssh/sshd_config", "PermitRootLogin yes\n")
    write(r, "/etc/sysctl.d/99-test.conf", "net.ipv4.ip_forward = 0\n")
    write(r, "/tmp/world", "w\n", 0o666)  # a tree-scan finding
    return r


def _scan(root: Path, worker: CheckWorker | None, profile: str = "nanoclaw-debian13") -> object:
    """The report, its check time zeroed (the one field that differs run to run)."""
    report = scan_rootfs(
        root,
        load_profile(profile),
        ScanOptions(lynis=False, openscap=False, jobs=2),
        clock=lambda: NOW,
        new_id=lambda: uuid.UUID(int=1),
        checks=worker,
    )
    assert [s.source for s in report.scanners] == [Source.GOLDSMITH]
    return dataclasses.replace(
        report, scanners=(dataclasses.replace(report.scanners[0], seconds=0),)
    )


# the command line ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "sub", "hint"),
    [
        (["scan", "--rootfs", "/r", "--json"], "scan", (Path("/r"), False)),
        (["--debug", "scan", "--rootfs=/r"], "scan", (Path("/r"), False)),
        (["scan", "--host", "--no-lynis"], "scan", (Path("/"), True)),
        (["scan", "--profile", "p"], "scan", None),
        (["scan", "--rootfs"], "scan", None),
        (["controls", "list"], "controls", None),
        (["--version"], None, None),
    ],
)
def test_the_subcommand_and_the_walk_hint_are_read_from_the_command_line(
    args: list[str], sub: str | None, hint: tuple[Path, bool] | None
) -> None:
    assert subcommand(args) == sub
    assert walk_hint(args) == hint


@pytest.mark.parametrize(
    ("args", "ref"),
    [
        (["scan", "--rootfs", "/r"], "nanoclaw-debian13"),
        (["scan", "--profile", "p.yaml"], "p.yaml"),
        (["scan", "-p", "nanoclaw-debian12"], "nanoclaw-debian12"),
        (["scan", "--profile=x"], "x"),
    ],
)
def test_the_profile_hint(args: list[str], ref: str) -> None:
    assert profile_hint(args) == ref


def test_a_worker_sent_other_hints_than_the_cli_parsed_is_stopped(root: Path) -> None:
    before = child_pids()
    agreed = Begin(str(root), False, 2, cache_writable=True)
    w = _start(root, hint=(root, False))
    _select(w)
    assert w.agrees(agreed, "nanoclaw-debian13") and w.alive
    assert not w.agrees(agreed, "nanoclaw-debian12") and not w.alive  # another profile
    w = _start(root, hint=(root, False))
    assert not w.agrees(agreed._replace(root="/elsewhere"), "nanoclaw-debian13")
    assert not w.alive
    w = CheckWorker(walk=None)  # nothing sent yet: begin is sent now, and it agrees
    assert w.agrees(agreed, "nanoclaw-debian13") and w.begun == agreed
    _select(w)
    assert w.result() is not None
    assert child_pids() <= before


# the worker ------------------------------------------------------------------------------------


def _start(root: Path, *, hint: tuple[Path, bool] | None, writable: bool = True) -> CheckWorker:
    w = CheckWorker(walk=hint)
    w.begin(Begin(str(root), False, 2, cache_writable=writable))
    return w


def _select(w: CheckWorker, ref: str = "nanoclaw-debian13") -> None:
    w.select(ref, load_profile(ref))


def test_the_workers_findings_are_the_in_process_findings(root: Path) -> None:
    before = child_pids()
    loaded = load_profile("nanoclaw-debian13")
    here = check_all(RootfsTarget(root), resolve(loaded.profile, load_catalogue(), loaded=loaded))
    w = _start(root, hint=(root, False))
    _select(w)
    answer = w.result()
    assert answer is not None
    assert answer.findings == here
    assert len(here) > 300 and answer.seconds > 0
    ww = next(f for f in here if f.control == "files.world-writable")
    assert "/tmp/world" in ww.evidence.observed
    assert not w.alive and child_pids() <= before


@pytest.mark.parametrize("hint", [None, "other", "live"])
def test_a_missing_or_wrong_walk_hint_changes_nothing(
    root: Path, tmp_path: Path, hint: str | None
) -> None:
    other = tmp_path / "other"
    write(other, "/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")
    hints = {None: None, "other": (other, False), "live": (root, True)}
    expected = _scan(root, None)
    w = _start(root, hint=hints[hint])
    _select(w)
    got = _scan(root, w)
    assert got == expected


def test_a_worker_that_cannot_answer_leaves_the_error_to_the_scan(
    root: Path, tmp_path: Path
) -> None:
    """An unknown control id: the worker gives no answer, the scan in this process raises the
    error with the profile's file and line, as it does without a worker."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ncontrols:\n  sysctl.ip-forwardd: {}\n")
    errors = []
    for worker in (None, _start(root, hint=(root, False))):
        if worker is not None:
            worker.selected = str(bad)
            worker._message(Selection(controls={"sysctl.ip-forwardd": (True, {})}))
        with pytest.raises(ProfileError) as err:
            _scan(root, worker, str(bad))
        errors.append((str(err.value), err.value.file, err.value.line, err.value.hint))
    assert errors[0] == errors[1]
    assert errors[0][1:3] == (str(bad), 3)


def test_a_killed_worker_costs_time_not_findings(root: Path) -> None:
    expected = _scan(root, None)
    w = _start(root, hint=(root, False))
    pid = w._child.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    _select(w)  # into a closed pipe: no error
    assert _scan(root, w) == expected
    assert not w.alive


def test_a_worker_never_used_is_stopped(root: Path) -> None:
    before = child_pids()
    w = CheckWorker(walk=(root, False))
    assert w.alive
    w.cancel()
    assert not w.alive and child_pids() <= before
    w.cancel()  # twice is fine


@pytest.mark.parametrize("writable", [True, False])
def test_a_host_scan_worker_writes_nothing_to_the_cache(
    root: Path, goldsmith_cache: Path, writable: bool
) -> None:
    """The worker loads the catalogue before it knows whether the scan is of a live host; it
    holds the cache entries until ``begin`` says, and drops them for a host scan."""
    w = _start(root, hint=(root, False), writable=writable)
    _select(w)
    assert w.result() is not None
    entries = list(goldsmith_cache.rglob("*.json")) if goldsmith_cache.exists() else []
    assert bool(entries) is writable
    if writable:
        assert {p.parent.name for p in entries} >= {"catalogue-parse", "template-render"}


def test_prestart_only_for_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    for args in (["controls", "list"], ["scan", "--help"], ["--version"]):
        checkworker.prestart(args)
        assert checkworker.take() is None
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    checkworker.prestart(["scan", "--rootfs", "/x"])  # one CPU: no worker
    assert checkworker.take() is None


def test_the_console_script_scan_equals_the_in_process_scan(root: Path, tmp_path: Path) -> None:
    """``goldsmith scan`` as installed (worker and all) against ``goldsmith.cli.main`` called
    directly (no worker): the same report but for its id and times."""
    args = ["scan", "--rootfs", str(root), "--no-lynis", "--no-openscap", "--json"]
    script = Path(sys.executable).with_name("goldsmith")
    in_process = "import sys; from goldsmith.cli import main; sys.exit(main(sys.argv[1:]))"
    docs = []
    for argv in ([str(script), *args], [sys.executable, "-c", in_process, *args]):
        res = subprocess.run(argv, capture_output=True, text=True, check=False)
        assert res.returncode == 1, res.stderr  # the fake root fails controls
        doc = json.loads(res.stdout)
        for k in ("id", "created"):
            doc.pop(k)
        for s in doc["scanners"]:
            s.pop("seconds")
        docs.append(doc)
    assert docs[0] == docs[1]
    assert docs[0]["summary"]["failed"] > 100


def test_prestart_sends_what_the_command_line_names(root: Path) -> None:
    before = child_pids()
    checkworker.prestart(["scan", "--rootfs", str(root), "--no-lynis", "-p", "nanoclaw-debian13"])
    w = checkworker.take()
    assert w is not None and checkworker.take() is None
    assert w.begun == Begin(str(root), False, checkworker.default_jobs(), cache_writable=True)
    assert w.selected == "nanoclaw-debian13" and w.loaded is not None
    assert w.loaded.digest == load_profile("nanoclaw-debian13").digest
    answer = w.result()
    assert answer is not None and len(answer.findings) > 300
    assert child_pids() <= before
