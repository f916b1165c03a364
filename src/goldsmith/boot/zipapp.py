"""A self-contained goldsmith zipapp for the booted image's Python (``goldsmith scan --host``).

Why not a plain ``python -m zipapp`` of the installed tree: goldsmith's dependencies carry
compiled extensions (pydantic_core, PyYAML's ``_yaml``, MarkupSafe's speedups, cryptography,
cffi), Python cannot import an extension module from inside a zip, and the host's are built
for the host's Python (3.11 here) while Debian 13 ships 3.13. So:

- the dependencies are installed by pip for the *guest's* interpreter: ``pip install --target
  --only-binary=:all: --python-version 3.13 --implementation cp --abi cp313 --platform
  manylinux...x86_64`` from PyPI, pinned to the versions installed beside this goldsmith (a
  constraints file made from this environment), so the guest runs the library versions the
  host was tested with, only built for its Python;
- goldsmith's own package is copied from where it is installed (sources and data files);
- the archive's ``__main__`` extracts ``site/`` once into a directory beside the archive
  (``<archive>.d/<digest>/``; ``~/.cache`` if that is not writable), puts it first on
  ``sys.path`` and calls ``goldsmith.cli.main``. It must sit on a filesystem mounted without
  ``noexec`` (the image's /tmp and /var/tmp are noexec: shared objects would not load).

The pip install is cached in ``cache_dir/zipapp/<key>`` keyed by the pins, Python version and
platform; only the first build needs PyPI.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import zipapp
from dataclasses import dataclass
from pathlib import Path

import goldsmith
from goldsmith.errors import BuildError

log = logging.getLogger(__name__)

GUEST_PYTHON = "3.13"
#: manylinux tags a Debian 13 (glibc 2.41) x86_64 guest accepts; pip tries them in order
PLATFORMS = (
    "manylinux_2_34_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
)
STAMP = "goldsmith-zipapp.json"
INTERPRETER = "/usr/bin/python3"

BOOTSTRAP = '''\
"""goldsmith zipapp: extract the vendored tree once (extensions cannot load from a zip)."""
import json, os, shutil, sys, tempfile, zipfile

STAMP = "goldsmith-zipapp.json"


def _target(archive, digest):
    home_cache = os.path.join(os.path.expanduser("~"), ".cache", "goldsmith-zipapp")
    for base in (archive + ".d", home_cache):
        try:
            os.makedirs(base, mode=0o700, exist_ok=True)
        except OSError:
            continue
        if os.access(base, os.W_OK | os.X_OK):
            return os.path.join(base, digest)
    raise SystemExit("goldsmith zipapp: no writable directory to extract into")


def main():
    archive = os.path.abspath(sys.argv[0])
    with zipfile.ZipFile(archive) as z:
        stamp = json.loads(z.read(STAMP))
        dest = _target(archive, stamp["digest"])
        if not os.path.isfile(os.path.join(dest, ".complete")):
            tmp = tempfile.mkdtemp(prefix=".extract-", dir=os.path.dirname(dest))
            try:
                for info in z.infolist():
                    if info.filename.startswith("site/"):
                        z.extract(info, tmp)
                open(os.path.join(tmp, ".complete"), "w").close()
                shutil.rmtree(dest, ignore_errors=True)
                os.rename(tmp, dest)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    sys.path[:] = [os.path.join(dest, "site")] + [p for p in sys.path if p != archive]
    from goldsmith.cli import main as cli_main

    sys.exit(cli_main(sys.argv[1:]))


main()
'''


@dataclass(frozen=True)
class Zipapp:
    path: Path
    sha256: str
    python: str  # the guest Python it was built for, "3.13"
    pins: tuple[str, ...]  # "name==version" vendored beside goldsmith
    goldsmith_version: str


def dependency_pins() -> tuple[list[str], list[str]]:
    """goldsmith's requirements (no extras) and a ``name==version`` pin for every installed
    distribution (the constraints that keep the guest on the tested versions)."""
    reqs = []
    for text in importlib.metadata.distribution("goldsmith").requires or []:
        _, _, marker = text.partition(";")
        if "extra" not in marker:
            reqs.append(text)
    pins = sorted(
        {
            f"{d.metadata['Name']}=={d.version}"
            for d in importlib.metadata.distributions()
            if d.metadata["Name"] and d.metadata["Name"].lower() != "goldsmith"
        },
        key=str.lower,
    )
    return reqs, pins


def pip_argv(site: Path, requirements: list[str], constraints: Path, python: str) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--quiet",
        "--target",
        str(site),
        "--only-binary=:all:",
        "--no-compile",
        "--implementation",
        "cp",
        "--python-version",
        python,
        "--abi",
        "cp" + python.replace(".", ""),
        "--abi",
        "abi3",
        "--abi",
        "none",
    ]
    for plat in PLATFORMS:
        argv += ["--platform", plat]
    return [*argv, "-c", str(constraints), *requirements]


def vendored_site(cache_dir: Path, *, python: str = GUEST_PYTHON, timeout: float = 900) -> Path:
    """goldsmith's dependencies installed for ``python`` (cached), as a directory."""
    reqs, pins = dependency_pins()
    key_text = json.dumps([reqs, pins, python, PLATFORMS])
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    dest = cache_dir / "zipapp" / f"site-cp{python.replace('.', '')}-{key}"
    if (dest / ".complete").is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".site-", dir=dest.parent))
    try:
        constraints = tmp / "constraints.txt"
        constraints.write_text("\n".join(pins) + "\n")
        site = tmp / "site"
        argv = pip_argv(site, reqs, constraints, python)
        log.info("vendoring goldsmith's dependencies for Python %s: %s", python, " ".join(argv))
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise BuildError(f"pip timed out after {timeout:.0f} s", argv=argv) from e
        if proc.returncode != 0:
            raise BuildError(
                f"could not install goldsmith's dependencies for Python {python}",
                argv=argv,
                stderr=proc.stderr or proc.stdout,
                hint="PyPI must be reachable for the first zipapp build (then it is cached)",
            )
        # console scripts of the dependencies are not needed and point at the host's Python
        shutil.rmtree(site / "bin", ignore_errors=True)
        vendored = sorted(
            f"{d.metadata['Name']}=={d.version}"
            for d in importlib.metadata.distributions(path=[str(site)])
        )
        (site / "pins.txt").write_text("\n".join(vendored) + "\n")
        (site / ".complete").write_text(key_text + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        site.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _copy_package(dest: Path) -> None:
    src = Path(goldsmith.__file__).parent
    shutil.copytree(src, dest / "goldsmith", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def build_zipapp(dest: Path, *, cache_dir: Path, python: str = GUEST_PYTHON) -> Zipapp:
    """Write ``dest`` (``goldsmith.pyz``): goldsmith plus its dependencies for ``python``."""
    site_cache = vendored_site(cache_dir, python=python)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="goldsmith-zipapp-") as tmp:
        root = Path(tmp) / "app"
        site = root / "site"
        shutil.copytree(site_cache, site, ignore=shutil.ignore_patterns(".complete"))
        _copy_package(site)
        digest = _tree_digest(site)[:20]
        (root / "__main__.py").write_text(BOOTSTRAP)
        (root / STAMP).write_text(json.dumps({"digest": digest, "python": python}) + "\n")
        partial = dest.with_name(dest.name + ".partial")
        zipapp.create_archive(root, partial, interpreter=INTERPRETER, compressed=True)
        partial.replace(dest)
    pins = tuple((site_cache / "pins.txt").read_text().split())
    sha = hashlib.sha256(dest.read_bytes()).hexdigest()
    log.info("zipapp %s: %d bytes, sha256 %s", dest, dest.stat().st_size, sha)
    return Zipapp(
        path=dest, sha256=sha, python=python, pins=pins, goldsmith_version=goldsmith.__version__
    )
