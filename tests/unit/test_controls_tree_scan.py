"""tree-scan: world-writable (fixable), unowned and setuid/setgid (check-only) over a whole
fake root; links never followed, skipped trees and other file systems never entered; fast."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from controls_fixtures import make_target, tree_hash, write

from goldsmith.controls import build_rule
from goldsmith.controls.rules.tree_scan import walk
from goldsmith.errors import ProfileError
from goldsmith.model.records import Status

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown / mount need root")


def rule(scan: str, **params: Any) -> Any:
    return build_rule({"type": "tree-scan", "scan": scan, **params}, control="t")


def base(root: Path) -> None:
    write(root, "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n")
    write(root, "/etc/group", "root:x:0:\n")
    (root / "tmp").mkdir()
    (root / "tmp").chmod(0o1777)
    for d in ("proc", "sys", "dev", "run"):
        (root / d).mkdir()


def test_walk_lists_every_entry_once_without_following_links(tmp_path: Path) -> None:
    root = tmp_path / "root"
    base(root)
    outside = tmp_path / "outside"
    outside.mkdir()
    write(outside, "/secret", "host file")
    (root / "escape").symlink_to("../../outside")
    (root / "abs").symlink_to("/")
    (root / "loop").symlink_to("loop")
    paths = sorted(e.path for e in walk(make_target(root)))
    assert "/escape" in paths and "/abs" in paths and "/loop" in paths
    assert not any("secret" in p for p in paths)
    assert len(paths) == len(set(paths))
    # pathlib's rglob (3.11) does not descend symlinked directories either
    assert paths == sorted("/" + str(p.relative_to(root)) for p in root.rglob("*"))


def test_world_writable_cycle(tmp_path: Path) -> None:
    root = tmp_path / "root"
    base(root)
    write(root, "/var/lib/app/state", "x", 0o666)
    (root / "srv/drop").mkdir(parents=True)
    (root / "srv/drop").chmod(0o777)
    write(root, "/usr/bin/tool", "#!/bin/sh\n", 0o4757)  # setuid and o+w: o+w goes, 4 stays
    outside = tmp_path / "outside"
    outside.mkdir()
    outside.chmod(0o777)
    (root / "escape").symlink_to("../outside")
    write(root, "/proc/junk", "x", 0o666)  # skipped tree
    r = rule("world-writable")
    t = make_target(root)

    before = tree_hash(root)
    found = r.check(t)
    planned = r.plan(t)
    assert tree_hash(root) == before
    assert found.status is Status.FAIL
    assert [(c.object, c.before, c.after) for c in planned] == [
        ("/srv/drop", "0777", "1777"),
        ("/usr/bin/tool", "4757", "4755"),
        ("/var/lib/app/state", "0666", "0664"),
    ]
    assert r.apply(t) == planned
    assert r.check(t).status is Status.PASS
    assert r.plan(t) == []
    assert (root / "srv/drop").stat().st_mode & 0o7777 == 0o1777
    assert (root / "usr/bin/tool").stat().st_mode & 0o7777 == 0o4755
    assert outside.stat().st_mode & 0o7777 == 0o777  # behind a link: never touched
    assert (root / "proc/junk").stat().st_mode & 0o777 == 0o666
    settled = tree_hash(root)
    assert r.apply(t) == []
    assert tree_hash(root) == settled


def test_skip_and_allow(tmp_path: Path) -> None:
    base(tmp_path)
    write(tmp_path, "/proc/junk", "x", 0o666)
    write(tmp_path, "/opt/shared/file", "x", 0o666)
    t = make_target(tmp_path)
    assert rule("world-writable", allow=["/opt/shared/*"]).check(t).status is Status.PASS
    found = rule("world-writable", skip=[], allow=["/opt/*"]).check(t)
    assert found.status is Status.FAIL
    assert "/proc/junk" in found.evidence.observed
    assert rule("world-writable", fix=False).plan(t) == []


@needs_root
def test_unowned_is_check_only(tmp_path: Path) -> None:
    base(tmp_path)
    write(tmp_path, "/srv/a", "x")
    write(tmp_path, "/srv/b", "x")
    os.chown(tmp_path / "srv/a", 4242, 0)
    os.chown(tmp_path / "srv/b", 0, 4343)
    (tmp_path / "srv/link").symlink_to("a")
    os.chown(tmp_path / "srv/link", 4242, 4242, follow_symlinks=False)
    t = make_target(tmp_path)
    found = rule("unowned").check(t)
    assert found.status is Status.FAIL
    obs = found.evidence.observed
    assert "/srv/a uid 4242 unknown" in obs
    assert "/srv/b gid 4343 unknown" in obs
    assert "/srv/link uid 4242 and gid 4242 unknown" in obs
    assert "human decision" in obs
    assert rule("unowned").plan(t) == []


def test_suid_sgid_against_the_allow_list(tmp_path: Path) -> None:
    base(tmp_path)
    write(tmp_path, "/usr/bin/sudo", "x", 0o4755)
    write(tmp_path, "/usr/bin/ssh-agent", "x", 0o2755)
    write(tmp_path, "/usr/lib/x/helper", "x", 0o4750)
    write(tmp_path, "/usr/bin/plain", "x", 0o755)
    (tmp_path / "var/mail").mkdir(parents=True)
    (tmp_path / "var/mail").chmod(0o2775)  # a setgid directory is not a program
    t = make_target(tmp_path)
    found = rule("suid-sgid", allow=["/usr/bin/sudo"]).check(t)
    assert found.status is Status.FAIL
    assert found.evidence.observed.startswith(
        "/usr/bin/ssh-agent mode 2755; /usr/lib/x/helper mode 4750"
    )
    assert rule("suid-sgid").plan(t) == []
    allowed = rule("suid-sgid", allow=["/usr/bin/sudo", "/usr/bin/ssh-agent", "/usr/lib/*"])
    assert allowed.check(t).status is Status.PASS


@needs_root
def test_other_file_systems_are_not_entered_offline(tmp_path: Path) -> None:
    base(tmp_path)
    mnt = tmp_path / "mnt/data"
    mnt.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mnt)], check=True)
    try:
        write(tmp_path, "/mnt/data/file", "x", 0o666)
        t = make_target(tmp_path)
        assert rule("world-writable").check(t).status is Status.PASS
        assert any(e.path == "/mnt/data" for e in walk(t))
        assert not any(e.path.startswith("/mnt/data/") for e in walk(t))
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_twenty_thousand_entries_in_well_under_two_seconds(tmp_path: Path) -> None:
    base(tmp_path)
    for i in range(200):
        d = tmp_path / f"usr/share/pkg{i}"
        d.mkdir(parents=True)
        for j in range(99):
            (d / f"f{j}").touch()
    t = make_target(tmp_path)
    start = time.perf_counter()
    found = rule("world-writable").check(t)
    elapsed = time.perf_counter() - start
    assert found.status is Status.PASS
    walked = int(re.search(r"walked (\d+) entries", found.evidence.how).group(1))  # type: ignore[union-attr]
    assert walked >= 20_000
    assert elapsed < 2.0, elapsed


def test_params_are_validated() -> None:
    with pytest.raises(ProfileError):
        rule("everything")
    with pytest.raises(ProfileError):
        rule("suid-sgid", allow=["usr/bin/sudo"])


def _prefetch_tree(root: Path) -> None:
    base(root)
    write(root, "/srv/open", "x", 0o666)
    write(root, "/usr/bin/tool", "#!/bin/sh\n", 0o4755)
    write(root, "/home/ghost/file", "x")
    for i in range(50):
        write(root, f"/usr/share/doc/p{i}/README", "x")  # plain root:root: not handed over
    if os.geteuid() == 0:
        os.chown(root / "home/ghost/file", 4242, 4343)


def _findings(root: Path) -> list[tuple[str, str, str]]:
    t = make_target(root)
    out = []
    with t.cached():
        for kind in ("world-writable", "unowned", "suid-sgid"):
            f = rule(kind).check(t)
            out.append((kind, f.status.value, f.evidence.observed))
    return out


def test_the_prefetched_walk_finds_what_the_walk_finds(tmp_path: Path) -> None:
    from goldsmith.targets import treewalk

    root = tmp_path / "root"
    _prefetch_tree(root)
    plain = _findings(root)
    treewalk.start_prefetch(root, live=False)
    assert (str(root.resolve()), treewalk.DEFAULT_SKIP) in treewalk._prefetches
    prefetched = _findings(root)
    assert treewalk._prefetches == {}  # taken by the first tree scan, once
    assert prefetched == plain
    assert plain[0][1] == "fail" and "/srv/open" in plain[0][2]
    assert plain[2][1] == "fail" and "/usr/bin/tool" in plain[2][2]
    if os.geteuid() == 0:
        assert plain[1][1] == "fail" and "uid 4242" in plain[1][2]
    # the child hands over only entries not plain root:root, and counts all of them
    entries, n = treewalk.not_plain_root(root, set(), treewalk.DEFAULT_SKIP)
    assert n == sum(1 for _ in walk(make_target(root)))
    assert not any(e.path.startswith("/usr/share/doc") for e in entries)


def test_a_failed_prefetch_falls_back_to_walking(tmp_path: Path, monkeypatch: Any) -> None:
    from goldsmith.targets import treewalk

    root = tmp_path / "root"
    _prefetch_tree(root)
    plain = _findings(root)
    # the child cannot walk (its walk raises): it exits 1 without an answer
    monkeypatch.setattr(treewalk, "not_plain_root", lambda *a: 1 / 0)
    treewalk.start_prefetch(root, live=False)
    pre = treewalk._prefetches[(str(root.resolve()), treewalk.DEFAULT_SKIP)]
    assert _findings(root) == plain
    assert pre._child.pid is None and pre._child._read is None  # reaped, pipe closed


def test_an_unused_prefetch_is_stopped_and_reaped(tmp_path: Path) -> None:
    from goldsmith.targets import treewalk

    root = tmp_path / "root"
    _prefetch_tree(root)
    treewalk.start_prefetch(root, live=False)
    pre = treewalk.take_prefetch(root, treewalk.DEFAULT_SKIP)
    assert pre is not None
    pid = pre._child.pid
    assert pid is not None
    pre.cancel()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    assert pre.result() is None
