"""Target.cached / Target.memo: expensive reads (the tree walk, dpkg status, modprobe.d) are
done once per scan, and every write or command through the target (or through the apply
journal wrapping it) forgets them, so a check after an apply never sees a stale answer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from controls_fixtures import make_target, write

from goldsmith.controls import build_rule
from goldsmith.controls.engine import JournalTarget
from goldsmith.controls.rules import package, tree_scan
from goldsmith.model.records import Status
from goldsmith.targets.base import RunResult
from goldsmith.targets.rootfs import RootfsTarget

DPKG = "/var/lib/dpkg/status"


def stanza(name: str, status: str = "install ok installed") -> str:
    return f"Package: {name}\nStatus: {status}\nVersion: 1.0\n\n"


def rule(spec: dict[str, Any]) -> Any:
    return build_rule(spec, control="t")


def count_calls(monkeypatch: Any, module: Any, name: str) -> list[int]:
    calls = [0]
    real = getattr(module, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_memo_only_inside_a_cached_block(tmp_path: Path) -> None:
    t = make_target(tmp_path)
    n = [0]

    def compute() -> int:
        n[0] += 1
        return n[0]

    assert t.memo("k", compute) == 1
    assert t.memo("k", compute) == 2  # outside a block: never remembered
    with t.cached():
        assert t.memo("k", compute) == 3
        assert t.memo("k", compute) == 3
        with t.cached():  # nested: the same memo
            assert t.memo("k", compute) == 3
        assert t.memo("k", compute) == 3
    assert t.memo("k", compute) == 4  # the block ended: forgotten


def test_every_kind_of_write_forgets(tmp_path: Path) -> None:
    write(tmp_path, "/etc/a", "a\n")
    t = make_target(tmp_path)
    writes = [
        lambda: t.write_text("/etc/b", "b\n"),
        lambda: t.write_bytes("/etc/c", b"c\n"),
        lambda: t.chmod("/etc/a", 0o600),
        lambda: t.chown("/etc/a", 0, 0),
        lambda: t.mkdir("/etc/d"),
        lambda: t.symlink("a", "/etc/e"),
        lambda: t.unlink("/etc/e"),
        lambda: t.rmtree("/etc/d"),
    ]
    with t.cached():
        for i, change in enumerate(writes):
            t.memo("k", lambda i=i: i)  # type: ignore[misc]
            change()
            assert t.memo("k", lambda: "fresh") == "fresh", i
            t.invalidate()


class CommandTarget(RootfsTarget):
    """A subclass overriding run(): its override is wrapped too."""

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> RunResult:
        # what "apt-get purge" would do to the status file, behind the target's file API
        status = self.root / DPKG.lstrip("/")
        status.write_text(stanza("bash"))
        return RunResult(tuple(argv), 0, "", "")


def test_a_command_forgets_in_a_subclass(tmp_path: Path) -> None:
    write(tmp_path, DPKG, stanza("bash") + stanza("telnet"))
    t = CommandTarget(tmp_path)
    telnet_absent = rule({"type": "package", "name": "telnet", "state": "absent"})
    with t.cached():
        assert telnet_absent.check(t).status is Status.FAIL
        t.run(["apt-get", "purge", "-y", "telnet"])
        assert telnet_absent.check(t).status is Status.PASS


def test_dpkg_status_is_parsed_once_per_scan(tmp_path: Path, monkeypatch: Any) -> None:
    write(tmp_path, DPKG, stanza("bash") + stanza("telnet"))
    t = make_target(tmp_path)
    calls = count_calls(monkeypatch, package, "_parse_dpkg_status")
    with t.cached():
        for name in ("bash", "telnet", "nis", "rsh-client"):
            rule({"type": "package", "name": name, "state": "absent"}).check(t)
        assert calls[0] == 1
        # the public function hands out a copy: changing it changes nothing cached
        package.dpkg_status(t).clear()
        assert package.dpkg_status(t)["bash"] == ("installed", "1.0")
    assert calls[0] == 1


def test_a_write_to_dpkg_status_through_the_target_is_seen(tmp_path: Path) -> None:
    write(tmp_path, DPKG, stanza("bash") + stanza("telnet"))
    t = make_target(tmp_path)
    telnet_absent = rule({"type": "package", "name": "telnet", "state": "absent"})
    with t.cached():
        assert telnet_absent.check(t).status is Status.FAIL
        t.write_text(DPKG, stanza("bash"))
        assert telnet_absent.check(t).status is Status.PASS


def base(root: Path) -> None:
    write(root, "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n")
    write(root, "/etc/group", "root:x:0:\n")
    for d in ("proc", "sys", "dev", "run"):
        (root / d).mkdir()


def test_one_walk_for_every_tree_scan_and_apply_then_check_sees_the_fix(
    tmp_path: Path, monkeypatch: Any
) -> None:
    base(tmp_path)
    write(tmp_path, "/srv/open", "x\n", mode=0o666)
    t = make_target(tmp_path)
    walks = count_calls(monkeypatch, tree_scan, "_tree")  # the walk every scan kind shares
    ww = rule({"type": "tree-scan", "scan": "world-writable"})
    with t.cached():
        assert ww.check(t).status is Status.FAIL
        rule({"type": "tree-scan", "scan": "unowned"}).check(t)
        rule({"type": "tree-scan", "scan": "suid-sgid"}).check(t)
        assert walks[0] == 1
        # apply through the journal the engine uses: the chmod goes to the inner target
        assert ww.apply(JournalTarget(t))
        assert ww.check(t).status is Status.PASS
        assert walks[0] == 2  # apply reused the checks' walk; the check after the chmod not


def test_a_rollback_through_the_journal_is_seen(tmp_path: Path) -> None:
    base(tmp_path)
    write(tmp_path, "/srv/open", "x\n", mode=0o666)
    t = make_target(tmp_path)
    ww = rule({"type": "tree-scan", "scan": "world-writable"})
    with t.cached():
        journal = JournalTarget(t)
        ww.apply(journal)
        assert ww.check(journal).status is Status.PASS
        journal.rollback()
        assert ww.check(journal).status is Status.FAIL
        assert ww.check(t).status is Status.FAIL


def test_a_new_modprobe_file_written_through_the_target_is_seen(tmp_path: Path) -> None:
    write(tmp_path, "/etc/modprobe.d/other.conf", "blacklist usb-storage\n")
    t = make_target(tmp_path)
    cramfs = rule({"type": "kernel-module", "name": "cramfs"})
    usb = rule({"type": "kernel-module", "name": "usb-storage"})
    with t.cached():
        assert cramfs.check(t).status is Status.FAIL
        assert usb.check(t).status is Status.FAIL  # blacklisted, but no install line
        cramfs.apply(t)
        assert cramfs.check(t).status is Status.PASS
        t.write_text("/etc/modprobe.d/other.conf", "install usb-storage /bin/false\n")
        t.write_text("/etc/modprobe.d/usb.conf", "blacklist usb_storage\n")
        assert usb.check(t).status is Status.PASS


def test_reads_are_remembered_and_every_write_forgets_them(tmp_path: Path) -> None:
    write(tmp_path, "/etc/a", "one\n")
    t = make_target(tmp_path)
    with t.cached():
        assert t.read_text("/etc/a") == "one\n"
        assert t.listdir("/etc") == ["a"]
        # behind the target's back: not seen inside the block (that is the memo)...
        (tmp_path / "etc/a").write_text("two\n")
        assert t.read_text("/etc/a") == "one\n"
        # ...but any write through the target forgets every remembered read
        t.write_text("/etc/b", "b\n")
        assert t.read_text("/etc/a") == "two\n"
        assert t.listdir("/etc") == ["a", "b"]
        t.listdir("/etc").append("not cached")  # a list handed out is the caller's own
        assert t.listdir("/etc") == ["a", "b"]
        t.unlink("/etc/a")
        assert t.stat("/etc/a") is None
        assert not t.exists("/etc/a")
    (tmp_path / "etc/b").write_text("c\n")
    assert t.read_text("/etc/b") == "c\n"  # outside a block nothing is remembered


def test_journal_reads_and_inner_writes_share_one_memo(tmp_path: Path) -> None:
    write(tmp_path, "/etc/a", "one\n")
    t = make_target(tmp_path)
    journal = JournalTarget(t)
    with t.cached():
        assert journal.read_text("/etc/a") == "one\n"
        t.write_text("/etc/a", "two\n")  # the inner target: the journal's reads see it
        assert journal.read_text("/etc/a") == "two\n"
        journal.write_text("/etc/a", "three\n")
        assert t.read_text("/etc/a") == "three\n"
        journal.rollback()  # writes to the inner target directly
        assert journal.read_text("/etc/a") == "two\n"
