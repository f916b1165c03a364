"""dpkg status parsing, the allow-list closure, and install/minimise against a fake apt."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from goldsmith.build.packages import (
    dependency_closure,
    host_resolver,
    install_packages,
    minimise,
    parse_status,
    read_installed,
    unrequested_packages,
)
from goldsmith.errors import BuildError
from goldsmith.model.profile import AllowListMode, Base, Packages, Profile
from goldsmith.model.records import Change, PackageEntry
from goldsmith.targets.base import RunResult
from goldsmith.targets.rootfs import RootfsTarget


def _para(
    name: str, version: str = "1.0", status: str = "install ok installed", **fields: str
) -> str:
    lines = [f"Package: {name}", f"Status: {status}", "Architecture: amd64", f"Version: {version}"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in fields.items()]
    return "\n".join(lines) + "\n"


def _status(*paras: str) -> str:
    return "\n".join(paras)


# --- parsing ---------------------------------------------------------------------------------


def test_parse_status_fields_and_continuations() -> None:
    text = _status(
        _para(
            "app",
            "2:1.0-1",
            Depends="libfoo (>= 1.2), mta | exim4-daemon-light,\n libpre:any (<< 3) [amd64]",
            Pre_Depends="init-system-helpers (>= 1.54~)",
            Provides="app-virtual (= 2), other-virtual",
            Description="line one\n more text: with a colon",
        ),
        _para("bash", Essential="yes", Priority="required"),
    )
    app, bash = parse_status(text)
    assert app.version == "2:1.0-1"
    assert app.depends == (
        ("init-system-helpers",),
        ("libfoo",),
        ("mta", "exim4-daemon-light"),
        ("libpre",),
    )
    assert app.provides == ("app-virtual", "other-virtual")
    assert bash.essential and bash.priority == "required"
    assert not app.essential


def test_read_installed_only_installed_and_sorted(tmp_path: Path) -> None:
    status = tmp_path / "var/lib/dpkg/status"
    status.parent.mkdir(parents=True)
    status.write_text(
        _status(
            _para("zsh", "5.9"),
            _para("removed", status="deinstall ok config-files"),
            _para("half", status="install ok half-configured"),
            _para("adduser", "3.152").replace("amd64", "all"),
            _para("libc6", "2.41").replace("amd64", "i386"),
            _para("libc6", "2.41"),
        )
    )
    assert read_installed(tmp_path) == [
        PackageEntry("adduser", "3.152", "all"),
        PackageEntry("libc6", "2.41", "amd64"),
        PackageEntry("libc6", "2.41", "i386"),
        PackageEntry("zsh", "5.9", "amd64"),
    ]


def test_read_installed_without_status(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="missing"):
        read_installed(tmp_path)


# --- allow-list closure ------------------------------------------------------------------------

CLOSURE_STATUS = _status(
    # requested
    _para("app", Depends="libfoo (>= 9.9), mta | exim4, libpre:any", Pre_Depends="libearly"),
    _para("libfoo", Depends="libc6 (>= 2.0)"),
    _para("libpre"),
    _para("libearly"),
    # "mta" is virtual: provided by tinymta, so exim4 (also installed) is not needed
    _para("tinymta", Provides="mta (= 1)"),
    _para("exim4", Depends="exim4-base"),
    _para("exim4-base"),
    # second alternative used when the first is not installed
    _para("tool", Depends="not-installed | helper"),
    _para("helper"),
    # the distribution's own required set
    _para("bash", Essential="yes", Depends="libtinfo6"),
    _para("libtinfo6"),
    _para("mount", Priority="required", Depends="libmount1"),
    _para("libmount1"),
    _para("libc6"),
    # not installed: its dependency does not count
    _para("ghost", status="deinstall ok config-files", Depends="orphan-lib"),
    _para("orphan-lib"),
    _para("stray"),
)


def test_closure_follows_depends_predepends_alternatives_and_virtuals() -> None:
    status = parse_status(CLOSURE_STATUS)
    closure = dependency_closure(status, ["app", "tool", "not-installed-root"])
    assert closure == {
        "app",
        "libfoo",
        "libc6",
        "libpre",
        "libearly",
        "tinymta",
        "tool",
        "helper",
        "bash",
        "libtinfo6",
        "mount",
        "libmount1",
    }
    assert unrequested_packages(status, ["app", "tool"]) == [
        "exim4",
        "exim4-base",
        "orphan-lib",
        "stray",
    ]


def test_closure_root_by_virtual_name() -> None:
    status = parse_status(CLOSURE_STATUS)
    assert "tinymta" in dependency_closure(status, ["mta"])
    assert "exim4" in dependency_closure(status, ["exim4"])
    assert "exim4-base" in dependency_closure(status, ["exim4"])


# --- a fake apt --------------------------------------------------------------------------------

REPO: dict[str, tuple[str, list[str]]] = {
    # name: (version, depends)
    "nodejs": ("20.19", ["libnode115"]),
    "libnode115": ("20.19", ["libc6"]),
    "git": ("2.47", ["perl", "libc6"]),
    "perl": ("5.40", []),
    "libc6": ("2.41-new", []),
    "rsync": ("3.4", ["libpopt0"]),
    "libpopt0": ("1.19", []),
    "telnet": ("0.17", []),
    "rsync-gui": ("1.0", ["rsync"]),
    "openssh-server": ("10.0", []),
    "ssh-helper": ("1.0", ["openssh-server"]),
}


class FakeAptTarget(RootfsTarget):
    """A RootfsTarget whose apt-get edits the dpkg status file from REPO (no chroot)."""

    def __init__(
        self,
        root: Path,
        installed: Mapping[str, bool],
        base_versions: Mapping[str, str] | None = None,
    ):
        super().__init__(root)
        (root / "etc").mkdir(parents=True, exist_ok=True)
        # name -> auto-installed?
        self.pkgs: dict[str, bool] = dict(installed)
        self.versions = {n: REPO[n][0] for n in installed}
        self.versions.update(base_versions or {})
        self.commands: list[tuple[str, ...]] = []
        self.extra: dict[str, str] = {}  # extra status fields per package (Essential, ...)
        self._write()

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        yield

    def _write(self) -> None:
        paras = []
        for name in sorted(self.pkgs):
            deps = ", ".join(REPO[name][1])
            fields = {"Depends": deps} if deps else {}
            text = _para(name, self.versions[name], **fields)
            paras.append(text + self.extra.get(name, ""))
        p = self.root / "var/lib/dpkg/status"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(_status(*paras))

    def _needed(self) -> set[str]:
        seen: set[str] = set()
        todo = [n for n, auto in self.pkgs.items() if not auto]
        while todo:
            n = todo.pop()
            if n in seen:
                continue
            seen.add(n)
            todo += [d for d in REPO[n][1] if d in self.pkgs]
        return seen

    def _rdeps(self, names: set[str]) -> set[str]:
        out = set(names)
        changed = True
        while changed:
            changed = False
            for n in self.pkgs:
                if n not in out and any(d in out for d in REPO[n][1]):
                    out.add(n)
                    changed = True
        return out

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> RunResult:
        self.commands.append(tuple(argv))
        words = [a for a in argv[1:] if not a.startswith("-") and "::" not in a and a != "apt-get"]
        simulate = "-s" in argv
        op, names = words[0], words[1:]
        out: list[str] = []
        if op == "install":
            todo = list(names)
            while todo:
                n = todo.pop()
                if n not in REPO:
                    return RunResult(tuple(argv), 100, "", f"E: Unable to locate package {n}")
                if n not in self.pkgs or self.versions[n] != REPO[n][0]:
                    self.pkgs.setdefault(n, n not in names)
                    self.versions[n] = REPO[n][0]
                    todo += REPO[n][1]
                if n in names:
                    self.pkgs[n] = False
        elif op in ("purge", "autoremove"):
            going = self._rdeps(set(names)) if op == "purge" else set(self.pkgs) - self._needed()
            out = [f"Purg {n} [{self.versions[n]}]" for n in sorted(going)]
            if not simulate:
                for n in going:
                    del self.pkgs[n]
                    del self.versions[n]
        elif op == "update":
            lists = self.root / "var/lib/apt/lists"
            lists.mkdir(parents=True, exist_ok=True)
            (lists / "deb.example_dists_trixie_main_binary-amd64_Packages").write_text("")
        elif op == "clean":
            pass
        else:
            return RunResult(tuple(argv), 100, "", f"unknown {op}")
        if not simulate:
            self._write()
        return RunResult(tuple(argv), 0, "\n".join(out) + "\n", "")


def _profile(**packages: object) -> Profile:
    return Profile(
        name="t",
        base=Base(include=["openssh-server"], kernel=None),
        packages=Packages.model_validate(packages),
    )


def test_install_records_requested_and_pulled_in_packages(tmp_path: Path) -> None:
    t = FakeAptTarget(tmp_path, {"libc6": False}, base_versions={"libc6": "2.41-old"})
    (tmp_path / "var/lib/apt/lists").mkdir(parents=True)
    (tmp_path / "var/lib/apt/lists/deb_Packages").write_text("")
    changes = install_packages(t, ["nodejs", "git"])
    assert sorted(changes, key=lambda c: c.object) == [
        Change("packages.include", "git", "package", None, "2.47"),
        Change("packages.include", "libc6", "package", "2.41-old", "2.41-new"),
        Change("packages.include", "libnode115", "package", None, "20.19"),
        Change("packages.include", "nodejs", "package", None, "20.19"),
        Change("packages.include", "perl", "package", None, "5.40"),
    ]
    install = next(c for c in t.commands if "install" in c)
    assert "--no-install-recommends" in install and "-y" in install
    # the lists were there: no apt-get update
    assert not any("update" in c for c in t.commands)


def test_install_updates_lists_when_missing_and_reports_failure(tmp_path: Path) -> None:
    t = FakeAptTarget(tmp_path, {})
    with pytest.raises(BuildError, match="installing packages failed") as exc:
        install_packages(t, ["no-such-package"])
    assert "Unable to locate package" in str(exc.value)
    assert any("update" in c for c in t.commands)
    assert list((tmp_path / "var/lib/apt/lists").iterdir())


def test_install_nothing_is_a_no_op(tmp_path: Path) -> None:
    t = FakeAptTarget(tmp_path, {})
    assert install_packages(t, []) == []
    assert t.commands == []


def test_minimise_purges_autoremoves_and_reports(tmp_path: Path) -> None:
    # rsync-gui is there only because someone installed it; its dependency libpopt0 is auto
    t = FakeAptTarget(
        tmp_path,
        {"openssh-server": False, "telnet": False, "rsync": False, "libpopt0": True, "perl": True},
    )
    prof = _profile(purge=["telnet", "rsync", "cups"], allow_list="report")
    result = minimise(t, prof)
    removed = {(r.name, r.version, r.reason) for r in result.removed}
    assert removed == {
        ("telnet", "0.17", "purge-list"),
        ("rsync", "3.4", "purge-list"),
        ("libpopt0", "1.19", "autoremove"),
        ("perl", "5.40", "autoremove"),
    }
    assert result.absent == ("cups",)
    assert Change("packages.purge", "telnet", "package", "0.17", None) in result.changes
    assert Change("packages.autoremove", "perl", "package", "5.40", None) in result.changes
    assert len(result.changes) == 4
    assert result.unrequested == ()
    installed = {e.name for e in read_installed(tmp_path)}
    assert installed == {"openssh-server"}


def test_minimise_keep_wins_over_purge(tmp_path: Path) -> None:
    t = FakeAptTarget(tmp_path, {"openssh-server": False, "rsync": False, "libpopt0": True})
    result = minimise(t, _profile(purge=["rsync"], keep=["rsync"]))
    assert result.removed == ()
    assert result.kept == ("rsync",)
    assert {e.name for e in read_installed(tmp_path)} == {"openssh-server", "rsync", "libpopt0"}


def test_minimise_refuses_to_remove_what_was_asked_for(tmp_path: Path) -> None:
    # purging rsync would take rsync-gui with it, which packages.include asked for
    t = FakeAptTarget(
        tmp_path, {"openssh-server": False, "rsync": True, "rsync-gui": False, "libpopt0": True}
    )
    with pytest.raises(BuildError, match="rsync-gui"):
        minimise(t, _profile(include=["rsync-gui"], purge=["rsync"]))
    assert "rsync" in {e.name for e in read_installed(tmp_path)}
    assert not any("purge" in c and "-s" not in c for c in t.commands)


def test_minimise_refuses_purging_a_base_include(tmp_path: Path) -> None:
    t = FakeAptTarget(tmp_path, {"openssh-server": False})
    with pytest.raises(BuildError, match="both requested and on the purge list"):
        minimise(t, _profile(purge=["openssh-server"]))


def test_allow_list_modes(tmp_path: Path) -> None:
    def target() -> FakeAptTarget:
        d = tmp_path / f"r{len(list(tmp_path.iterdir()))}"
        d.mkdir()
        # telnet: installed by hand, asked for by nobody
        return FakeAptTarget(d, {"openssh-server": False, "telnet": False})

    assert minimise(target(), _profile(allow_list="report")).unrequested == ("telnet",)
    assert minimise(target(), _profile(allow_list="off")).unrequested == ()
    assert minimise(target(), _profile(allow_list="report", allow=["telnet"])).unrequested == ()
    with pytest.raises(BuildError, match="telnet"):
        minimise(target(), _profile(allow_list=AllowListMode.ENFORCE))


def test_essential_packages_are_allowed(tmp_path: Path) -> None:
    t = FakeAptTarget(tmp_path, {"openssh-server": False, "perl": False})
    t.extra["perl"] = "Essential: yes\n"
    t._write()
    assert minimise(t, _profile(allow_list="report")).unrequested == ()


# --- resolver --------------------------------------------------------------------------------


def test_host_resolver_swaps_and_restores_a_symlink(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/resolv.conf").symlink_to("../run/systemd/resolve/stub-resolv.conf")
    host = tmp_path / "host-resolv.conf"
    host.write_text("nameserver 192.0.2.53\n")
    t = FakeAptTarget(root, {})
    with host_resolver(t, host):
        assert (root / "etc/resolv.conf").read_text() == "nameserver 192.0.2.53\n"
        assert not (root / "etc/resolv.conf").is_symlink()
    assert (root / "etc/resolv.conf").is_symlink()
    assert str((root / "etc/resolv.conf").readlink()) == "../run/systemd/resolve/stub-resolv.conf"


def test_host_resolver_restores_a_file_after_an_error(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/resolv.conf").write_text("nameserver 10.0.0.1\n")
    (root / "etc/resolv.conf").chmod(0o640)
    host = tmp_path / "host-resolv.conf"
    host.write_text("nameserver 192.0.2.53\n")
    t = FakeAptTarget(root, {})
    with pytest.raises(RuntimeError), host_resolver(t, host):
        raise RuntimeError("apt failed")
    assert (root / "etc/resolv.conf").read_text() == "nameserver 10.0.0.1\n"
    assert (root / "etc/resolv.conf").stat().st_mode & 0o777 == 0o640
