"""goldsmith's content-addressed cache (goldsmith.cache) and its two users: parsed catalogue
YAML (controls.catalogue) and template renderings (controls.templating).

What must hold: a warm load or render gives exactly what a cold one gives; any change of the
input is a different entry; a corrupt, foreign or unreadable entry is a miss; an unwritable
directory or ``set_writable(False)`` writes nothing and fails nothing; errors and their
positions are the same warm or cold.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from controls_fixtures import GOOD_CATALOGUE, GOOD_NOT_AUTOMATED

from goldsmith import cache as cache_mod
from goldsmith.cache import ContentCache, default_dir
from goldsmith.controls import catalogue as catalogue_mod
from goldsmith.controls import catalogue_yaml, templating
from goldsmith.controls.catalogue import Catalogue, load_catalogue
from goldsmith.errors import ProfileError

GOOD = GOOD_CATALOGUE + GOOD_NOT_AUTOMATED


@pytest.fixture
def cache_dir(goldsmith_cache: Path) -> Path:
    return goldsmith_cache


def _entries(d: Path) -> list[Path]:
    return sorted(d.rglob("*.json")) if d.exists() else []


# the cache itself ---------------------------------------------------------------------------------


def test_an_entry_is_found_by_its_text_and_salt_only(tmp_path: Path) -> None:
    c = ContentCache(tmp_path, salt=("v1",))
    assert c.get("text") is None
    assert c.put("text", {"a": [1, "x", None, True]})
    assert c.get("text") == {"a": [1, "x", None, True]}
    assert c.get("text ") is None  # another text
    assert ContentCache(tmp_path, salt=("v2",)).get("text") is None  # other code or versions
    (entry,) = _entries(tmp_path)
    assert entry.stat().st_mode & 0o777 == 0o600
    fresh = tmp_path / "made" / "here"
    ContentCache(fresh, salt=()).put("t", {})
    assert fresh.stat().st_mode & 0o777 == 0o700


def test_corrupt_and_foreign_entries_are_misses(tmp_path: Path) -> None:
    c = ContentCache(tmp_path, salt=())
    c.put("text", {"a": 1})
    (entry,) = _entries(tmp_path)
    for junk in ("{not json", "[]", json.dumps({"key": "other", "value": {"a": 2}})):
        entry.write_text(junk)
        assert c.get("text") is None, junk
    # another entry's content renamed to this key: its recorded key gives it away
    c.put("other text", {"a": 2})
    other = next(p for p in _entries(tmp_path) if p != entry)
    entry.write_bytes(other.read_bytes())
    assert c.get("text") is None
    c.put("text", {"a": 1})  # rewritten whole
    assert c.get("text") == {"a": 1}


def test_values_json_would_change_are_not_stored(tmp_path: Path) -> None:
    c = ContentCache(tmp_path, salt=())
    assert not c.put("t", {"a": (1, 2)})  # a tuple would come back a list
    assert not c.put("t", {"a": {1: "x"}})  # an int key would come back a str
    assert _entries(tmp_path) == []


def test_an_unwritable_or_forbidden_directory_writes_nothing_and_fails_nothing(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert not ContentCache(blocker / "sub", salt=()).put("t", {"a": 1})
    assert ContentCache(blocker / "sub", salt=()).get("t") is None
    assert not ContentCache(tmp_path / "d", salt=(), write=False).put("t", {"a": 1})
    cache_mod.set_writable(False)
    try:
        assert not ContentCache(tmp_path / "d", salt=()).put("t", {"a": 1})
    finally:
        cache_mod.set_writable(True)
    assert not (tmp_path / "d").exists()


def test_the_directory_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOLDSMITH_CACHE_DIR", "/x")
    assert default_dir("n") == Path("/x/n")
    monkeypatch.setenv("GOLDSMITH_CACHE_DIR", "")
    assert default_dir("n") is None
    monkeypatch.delenv("GOLDSMITH_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert default_dir("n") == Path("/xdg/goldsmith/n")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_dir("n") == Path.home() / ".cache" / "goldsmith" / "n"


# parsed catalogue YAML ----------------------------------------------------------------------------


def _same(a: Catalogue, b: Catalogue) -> None:
    assert a.controls == b.controls
    assert a.not_automated == b.not_automated
    assert dict(a.origins) == dict(b.origins)
    assert [c.default_rule for c in a.controls.values()] == [
        c.default_rule for c in b.controls.values()
    ]


def test_a_warm_load_of_the_shipped_catalogue_is_the_cold_load_without_parsing(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cold = catalogue_mod._default_catalogue.__wrapped__()
    files = [e for e in catalogue_mod.catalogue_dir().iterdir() if e.name.endswith(".yaml")]
    assert len(_entries(cache_dir / "catalogue-parse")) == len(files)

    def no_parse(text: str, file: str) -> Any:
        raise AssertionError(f"{file} was parsed although its parse is cached")

    monkeypatch.setattr(catalogue_yaml, "compose", no_parse)
    warm = catalogue_mod._default_catalogue.__wrapped__()
    _same(cold, warm)
    assert cold.origins["sysctl.ip-forward"] == warm.origins["sysctl.ip-forward"]


def test_a_changed_file_is_parsed_again(cache_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "cat"
    src.mkdir()
    (src / "01-a.yaml").write_text(GOOD)
    first = load_catalogue(src)
    assert first.controls["sysctl.test-key"].params["value"] == "1"
    assert first.not_automated[0].line == 14
    (src / "01-a.yaml").write_text("\n\n" + GOOD.replace('value: "1"', 'value: "2"'))
    second = load_catalogue(src)
    assert second.controls["sysctl.test-key"].params["value"] == "2"
    assert second.origins["sysctl.test-key"].endswith("01-a.yaml:4")  # lines from the new text
    assert second.not_automated[0].line == 16
    assert len(_entries(cache_dir / "catalogue-parse")) == 2


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('value: "1"}', 'value: "1", colour: red}'),  # a rule that does not build
        ('["1.5.5"]', '["9.9.9"]'),  # not a server recommendation
        ("    level: 1\n", "    level: 1\n    severity: high\n"),  # schema
        ('"1.4.1"', '"9.9.9"'),  # a not-automated id that is not a recommendation
    ],
)
def test_errors_are_the_same_warm_and_cold(
    cache_dir: Path, tmp_path: Path, old: str, new: str
) -> None:
    src = tmp_path / "cat"
    src.mkdir()
    (src / "01-a.yaml").write_text(GOOD.replace(old, new, 1))
    errors = []
    for _ in range(2):  # the first run parses and caches the parse, the second uses it
        with pytest.raises(ProfileError) as err:
            load_catalogue(src)
        e = err.value
        errors.append((str(e), e.file, e.line, e.column, e.key, e.hint))
    assert len(_entries(cache_dir / "catalogue-parse")) == 1
    assert errors[0] == errors[1]
    assert errors[0][2] is not None


def test_a_corrupt_catalogue_entry_is_parsed_again(cache_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "cat"
    src.mkdir()
    (src / "01-a.yaml").write_text(GOOD)
    cold = load_catalogue(src)
    (entry,) = _entries(cache_dir / "catalogue-parse")
    doc = json.loads(entry.read_text())
    doc["value"]["lines"] = {"controls": ["two"]}  # well-formed JSON, wrong shape
    entry.write_text(json.dumps(doc))
    _same(cold, load_catalogue(src))


# template renderings ------------------------------------------------------------------------------


def test_a_cached_rendering_is_the_rendering(cache_dir: Path) -> None:
    src = "{% for k, v in items.items() %}{{ k }}={{ v }}\n{% endfor %}{{ control }}\n"
    ctx = {"control": "c.x", "items": {"b": 2, "a": [1, "x"]}}
    first = templating.render_string(src, ctx)
    assert first == "b=2\na=[1, 'x']\nc.x\n"
    assert len(_entries(cache_dir / "template-render")) == 1
    assert templating.render_string(src, ctx) == first
    (entry,) = _entries(cache_dir / "template-render")
    # what is served is what is stored: a doctored entry (same key) is what comes back
    doc = json.loads(entry.read_text())
    doc["value"]["text"] = "doctored"
    entry.write_text(json.dumps(doc))
    assert templating.render_string(src, ctx) == "doctored"
    named = templating.render("banner.j2", {"text": "Authorized use only."})
    assert named == templating._render_named("banner.j2", {"text": "Authorized use only."})
    assert templating.render("banner.j2", {"text": "Authorized use only."}) == named


def test_contexts_that_render_differently_key_differently(cache_dir: Path) -> None:
    src = "{{ v }}\n"
    outs = [
        templating.render_string(src, {"v": v})
        for v in ([1, 2], (1, 2), {"a": 1}, MappingProxyType({"a": 1}), 1, "1", True, 1.0)
    ]
    assert outs == [
        "[1, 2]\n",
        "(1, 2)\n",
        "{'a': 1}\n",
        f"{MappingProxyType({'a': 1})}\n",
        "1\n",
        "1\n",
        "True\n",
        "1.0\n",
    ]
    assert len(_entries(cache_dir / "template-render")) == 8


def test_a_context_that_is_not_plain_data_is_rendered_every_time(cache_dir: Path) -> None:
    class Thing:
        def __str__(self) -> str:
            return "thing"

    assert templating.canonical({"t": Thing()}) is None
    assert templating.render_string("{{ t }}", {"t": Thing()}) == "thing"
    assert _entries(cache_dir / "template-render") == []


def test_template_errors_are_raised_every_time(cache_dir: Path) -> None:
    for _ in range(2):
        with pytest.raises(ProfileError, match="undefined"):
            templating.render_string("{{ nope }}", {})
        with pytest.raises(ProfileError, match=r"no template 'missing\.j2'"):
            templating.render("missing.j2", {})
    assert _entries(cache_dir / "template-render") == []


def test_a_warm_scan_process_neither_parses_the_catalogue_nor_imports_jinja2(
    cache_dir: Path, tmp_path: Path
) -> None:
    """In a fresh process, the whole catalogue resolved for the default profile and every
    template-rendering check run on a fake root: cold, then warm."""
    code = """
import sys
from pathlib import Path
from goldsmith.controls import catalogue, catalogue_yaml
from goldsmith.controls.engine import check_all, resolve
from goldsmith.model.profile_loader import load_profile
from goldsmith.targets.rootfs import RootfsTarget
parsed = []
real = catalogue_yaml.compose
catalogue_yaml.compose = lambda text, file: parsed.append(file) or real(text, file)
loaded = load_profile("nanoclaw-debian13")
res = resolve(loaded.profile, catalogue.load_catalogue(), loaded=loaded)
kinds = ("ManagedFileRule", "BannerRule", "PamRule")
todo = [rc for rc in res if type(rc.rule).__name__ in kinds]
check_all(RootfsTarget(Path(sys.argv[1])), todo)
print(len(parsed), len(todo), "jinja2" in sys.modules)
"""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    env = {**os.environ, "GOLDSMITH_CACHE_DIR": str(cache_dir)}
    runs = []
    for _ in range(2):
        res = subprocess.run(
            [sys.executable, "-c", code, str(root)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        runs.append(res.stdout.split())
    cold, warm = runs
    assert int(cold[0]) > 0 and cold[2] == "True"
    assert int(warm[1]) > 20  # managed files, the banner and PAM configs were checked
    assert warm[0] == "0" and warm[2] == "False"
