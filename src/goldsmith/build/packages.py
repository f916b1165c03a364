"""Packages: what is installed (from the dpkg status file), install, minimise, allow-list.

Every package operation is recorded as a diff of the dpkg status before and after it, never by
reading apt's output: a package counts as added, changed or removed because dpkg says so.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from goldsmith.errors import BuildError
from goldsmith.model.profile import AllowListMode, Profile
from goldsmith.model.records import Change, FileType, PackageEntry, PackageRemoval
from goldsmith.targets.base import Target

logger = logging.getLogger(__name__)

STATUS_PATH = "/var/lib/dpkg/status"
_INSTALLED = ("install", "ok", "installed")

APT_ENV = {
    "DEBIAN_FRONTEND": "noninteractive",
    "LC_ALL": "C",
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
}
#: keep the image's own config files where a package ships a new default, never prompt
_APT_OPTS = (
    "-o",
    "Dpkg::Options::=--force-confdef",
    "-o",
    "Dpkg::Options::=--force-confold",
    "-o",
    "Dpkg::Use-Pty=0",
)
_APT_TIMEOUT = 3600.0


@dataclass(frozen=True)
class StatusPackage:
    """The fields of one dpkg status paragraph that the allow-list needs."""

    name: str
    version: str
    architecture: str
    installed: bool
    essential: bool = False
    priority: str = ""
    #: Depends + Pre-Depends: each group is a list of alternatives (names, no versions)
    depends: tuple[tuple[str, ...], ...] = ()
    provides: tuple[str, ...] = ()

    @property
    def entry(self) -> PackageEntry:
        return PackageEntry(name=self.name, version=self.version, architecture=self.architecture)


@dataclass(frozen=True)
class MinimiseResult:
    removed: tuple[PackageRemoval, ...] = ()
    #: installed packages no request explains (empty when the allow-list mode is off)
    unrequested: tuple[str, ...] = ()
    changes: tuple[Change, ...] = ()
    #: names on the purge list that were not installed (nothing to do)
    absent: tuple[str, ...] = ()
    #: names on the purge list that packages.keep saved
    kept: tuple[str, ...] = field(default_factory=tuple)


# --- reading ---------------------------------------------------------------------------------


def parse_status(text: str) -> list[StatusPackage]:
    """Every paragraph of a dpkg status file (installed or not), in file order."""
    packages: list[StatusPackage] = []
    for para in _paragraphs(text):
        name = para.get("package")
        if not name:
            continue
        status = tuple(para.get("status", "").split())
        depends = _parse_relations(para.get("pre-depends", "")) + _parse_relations(
            para.get("depends", "")
        )
        provides = tuple(
            alt for group in _parse_relations(para.get("provides", "")) for alt in group
        )
        packages.append(
            StatusPackage(
                name=name,
                version=para.get("version", ""),
                architecture=para.get("architecture", ""),
                installed=status == _INSTALLED,
                essential=para.get("essential", "").lower() == "yes",
                priority=para.get("priority", "").lower(),
                depends=tuple(depends),
                provides=provides,
            )
        )
    return packages


def installed_from_status(text: str) -> list[PackageEntry]:
    """Installed packages (status ``install ok installed``), sorted by name and architecture."""
    entries = {p.entry for p in parse_status(text) if p.installed}
    return sorted(entries, key=lambda e: (e.name, e.architecture, e.version))


def read_installed(root: Path) -> list[PackageEntry]:
    """Installed packages of the rootfs at ``root``, from its dpkg status file (no chroot)."""
    status = root / STATUS_PATH.lstrip("/")
    if status.is_symlink() or not status.is_file():
        raise BuildError(
            f"{status} is missing or not a regular file",
            hint="is this the root of a Debian-family system?",
        )
    return installed_from_status(status.read_text(encoding="utf-8", errors="surrogateescape"))


def _target_status(target: Target) -> str:
    return target.read_text(STATUS_PATH)


# --- install ---------------------------------------------------------------------------------


def install_packages(target: Target, names: Sequence[str]) -> list[Change]:
    """apt-get install the packages without recommends; one Change per package added or
    changed, dependencies included."""
    if not names:
        return []
    before = installed_from_status(_target_status(target))
    with target.session(), host_resolver(target):
        if not target.glob("/var/lib/apt/lists/*_Packages*"):
            logger.info("no apt lists in the target; running apt-get update")
            _apt(target, ["apt-get", *_APT_OPTS, "update"], "apt-get update failed")
        _apt(
            target,
            ["apt-get", *_APT_OPTS, "install", "-y", "--no-install-recommends", *names],
            "installing packages failed",
            hint="check the names in packages.include exist in the profile's suite and "
            "components, and that the mirror is reachable",
        )
    after = installed_from_status(_target_status(target))
    changes = _install_changes(before, after)
    missing = sorted(set(names) - {e.name for e in after})
    if missing:
        raise BuildError(f"apt-get reported success but these are not installed: {missing}")
    logger.info("installed %d packages (%d requested)", len(changes), len(names))
    return changes


@contextlib.contextmanager
def host_resolver(target: Target, host_conf: Path = Path("/etc/resolv.conf")) -> Iterator[None]:
    """Let commands in an offline image resolve names with the build host's resolver.

    ``/etc/resolv.conf`` in the image (with systemd-resolved, a symlink into /run, which is
    empty while commands run) is swapped for a copy of the host's and put back exactly as it
    was afterwards, also on errors and interrupts. A live target already resolves names.
    """
    if target.live:
        yield
        return
    try:
        conf = host_conf.read_bytes()
    except OSError:
        logger.warning("cannot read %s; commands in the image may not resolve names", host_conf)
        yield
        return
    path = "/etc/resolv.conf"
    etc = target.lstat("/etc")
    if etc is None or etc.type is not FileType.DIR:
        yield  # not a usable system yet; nothing there to resolve names with
        return
    with target.session():
        st = target.lstat(path)
        saved_link = target.readlink(path) if st and st.type is FileType.SYMLINK else None
        saved_data = target.read_bytes(path) if st and st.type is FileType.FILE else None
        if st is not None and st.type not in (FileType.FILE, FileType.SYMLINK):
            raise BuildError(f"{path} in the image is a {st.type}, not a file or symlink")
        if st is not None:
            target.unlink(path)
        target.write_bytes(path, conf, mode=0o644)
        try:
            yield
        finally:
            now = target.lstat(path)
            if now is None or now.type is not FileType.FILE or target.read_bytes(path) != conf:
                # a package (resolvconf, systemd-resolved) took it over: its version stays
                logger.info("%s was replaced by a package; keeping that version", path)
            else:
                target.unlink(path)
                if saved_link is not None:
                    target.symlink(saved_link, path)
                elif saved_data is not None and st is not None:
                    target.write_bytes(path, saved_data, mode=st.mode, uid=st.uid, gid=st.gid)


def _install_changes(before: list[PackageEntry], after: list[PackageEntry]) -> list[Change]:
    old = {(e.name, e.architecture): e.version for e in before}
    changes = []
    for e in after:
        prev = old.get((e.name, e.architecture))
        if prev != e.version:
            changes.append(Change("packages.include", _pkg_key(e), "package", prev, e.version))
    return changes


def _pkg_key(e: PackageEntry | PackageRemoval) -> str:
    # the name alone for the native architecture and "all"; name:arch for foreign ones
    if e.architecture in ("", "all", "amd64"):
        return e.name
    return f"{e.name}:{e.architecture}"


# --- minimise --------------------------------------------------------------------------------


def minimise(target: Target, profile: Profile) -> MinimiseResult:
    """Purge the purge list (minus keep), autoremove, then check the allow-list."""
    pk = profile.packages
    keep = set(pk.keep)
    status = parse_status(_target_status(target))
    installed_names = {p.name for p in status if p.installed}
    wanted_gone = [n for n in dict.fromkeys(pk.purge) if n not in keep]
    kept = tuple(sorted(n for n in pk.purge if n in keep))
    to_purge = sorted(n for n in wanted_gone if n in installed_names)
    absent = tuple(sorted(n for n in wanted_gone if n not in installed_names))
    roots = requested_roots(profile)
    conflict = sorted(set(to_purge) & roots)
    if conflict:
        raise BuildError(
            f"packages both requested and on the purge list: {', '.join(conflict)}",
            hint="remove them from the purge list or add them to packages.keep",
        )
    protected = roots | {p.name for p in status if _is_base_required(p)}

    removed: list[PackageRemoval] = []
    before = [p.entry for p in status if p.installed]
    if to_purge:
        purge_argv = ["apt-get", *_APT_OPTS, "purge", "-y", *to_purge]
        _refuse_protected(target, purge_argv, protected, "the purge list")
        _apt(target, purge_argv, "purging the purge list failed")
        after = installed_from_status(_target_status(target))
        removed += _removals(before, after, "purge-list")
        before = after
    auto_argv = ["apt-get", *_APT_OPTS, "autoremove", "--purge", "-y"]
    _refuse_protected(target, auto_argv, protected, "autoremove")
    _apt(target, auto_argv, "apt-get autoremove failed")
    after = installed_from_status(_target_status(target))
    removed += _removals(before, after, "autoremove")

    changes = tuple(
        Change(
            f"packages.{'purge' if r.reason == 'purge-list' else 'autoremove'}",
            _pkg_key(r),
            "package",
            r.version,
            None,
        )
        for r in removed
    )
    unrequested: tuple[str, ...] = ()
    if pk.allow_list is not AllowListMode.OFF:
        unrequested = tuple(unrequested_packages(parse_status(_target_status(target)), roots))
        if unrequested and pk.allow_list is AllowListMode.ENFORCE:
            raise BuildError(
                f"{len(unrequested)} installed packages were not asked for: "
                + ", ".join(unrequested),
                hint="add them to packages.allow (or packages.include), purge them, or set "
                "packages.allow_list to report",
            )
        if unrequested:
            logger.info("allow-list: %d unrequested packages", len(unrequested))
    return MinimiseResult(
        removed=tuple(removed),
        unrequested=unrequested,
        changes=changes,
        absent=absent,
        kept=kept,
    )


def _removals(
    before: list[PackageEntry], after: list[PackageEntry], reason: str
) -> list[PackageRemoval]:
    now = {(e.name, e.architecture) for e in after}
    return [
        PackageRemoval(e.name, e.version, e.architecture, reason)
        for e in before
        if (e.name, e.architecture) not in now
    ]


_SIM_REMOVE_RE = re.compile(r"^(?:Purg|Remv) (\S+)", re.MULTILINE)


def _refuse_protected(target: Target, argv: list[str], protected: set[str], what: str) -> None:
    """Simulate first: never let a purge or autoremove take a package someone asked for."""
    sim = [argv[0], "-s", *argv[1:]]
    result = _apt(target, sim, f"simulating {what} failed")
    going = {m.split(":", 1)[0] for m in _SIM_REMOVE_RE.findall(result)}
    hit = sorted(going & protected)
    if hit:
        raise BuildError(
            f"{what} would remove packages the profile needs: {', '.join(hit)}",
            argv=sim,
            hint="add the package to packages.keep, or drop what depends on it from the "
            "include lists",
        )


def _apt(target: Target, argv: list[str], message: str, hint: str | None = None) -> str:
    res = target.run(argv, env=APT_ENV, timeout=_APT_TIMEOUT, check=False)
    if not res.ok:
        raise BuildError(
            f"{message} (exit code {res.returncode})",
            argv=argv,
            stderr=(res.stderr or res.stdout),
            hint=hint,
        )
    return res.stdout


# --- allow-list ------------------------------------------------------------------------------


def requested_roots(profile: Profile) -> set[str]:
    """Package names someone asked for: base.include, the kernel, packages.include/allow/keep."""
    roots = set(profile.base.include) | set(profile.packages.include)
    roots |= set(profile.packages.allow) | set(profile.packages.keep)
    if profile.base.kernel:
        roots.add(profile.base.kernel)
    return roots


def _is_base_required(p: StatusPackage) -> bool:
    return p.installed and (p.essential or p.priority == "required")


def dependency_closure(status: Iterable[StatusPackage], roots: Iterable[str]) -> set[str]:
    """Names of installed packages reachable from ``roots`` and from every installed package
    that is Essential or Priority required, through Depends and Pre-Depends.

    Version constraints and architecture qualifiers are ignored. For a group of alternatives
    the first alternative that is installed (as a package or through Provides) satisfies it; a
    virtual name is satisfied by every installed package providing it.
    """
    installed = [p for p in status if p.installed]
    by_name: dict[str, list[StatusPackage]] = {}
    providers: dict[str, set[str]] = {}
    for p in installed:
        by_name.setdefault(p.name, []).append(p)
        for v in p.provides:
            providers.setdefault(v, set()).add(p.name)

    def resolve(name: str) -> list[str]:
        if name in by_name:
            return [name]
        return sorted(providers.get(name, ()))

    queue = sorted({n for r in roots for n in resolve(r)})
    queue += sorted({p.name for p in installed if _is_base_required(p)})
    seen: set[str] = set()
    while queue:
        name = queue.pop()
        if name in seen:
            continue
        seen.add(name)
        for pkg in by_name[name]:
            for group in pkg.depends:
                for alt in group:
                    found = resolve(alt)
                    if found:
                        queue.extend(n for n in found if n not in seen)
                        break
    return seen


def unrequested_packages(status: Sequence[StatusPackage], roots: Iterable[str]) -> list[str]:
    """Installed package names outside the dependency closure of the roots, sorted."""
    closure = dependency_closure(status, roots)
    return sorted({p.name for p in status if p.installed and p.name not in closure})


# --- deb822 ----------------------------------------------------------------------------------


def _paragraphs(text: str) -> list[dict[str, str]]:
    paras: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    key: str | None = None
    for line in text.splitlines():
        if not line.strip():
            if cur:
                paras.append(cur)
            cur, key = {}, None
        elif line[0] in " \t":
            if key is not None:
                cur[key] += "\n" + line.strip()
        elif ":" in line:
            k, _, v = line.partition(":")
            key = k.strip().lower()
            cur[key] = v.strip()
    if cur:
        paras.append(cur)
    return paras


_QUALIFIERS = re.compile(r"\([^)]*\)|\[[^\]]*\]|<[^>]*>")


def _parse_relations(value: str) -> list[tuple[str, ...]]:
    """``a (>= 1) | b:any, c [amd64]`` -> [("a", "b"), ("c",)]."""
    groups: list[tuple[str, ...]] = []
    for group in value.replace("\n", " ").split(","):
        alts = []
        for alt in group.split("|"):
            name = _QUALIFIERS.sub("", alt).strip().split(":", 1)[0].strip()
            if name:
                alts.append(name)
        if alts:
            groups.append(tuple(alts))
    return groups
