"""Fixtures shared by the unit tests (helpers that are not fixtures: controls_fixtures)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from goldsmith import cache
from goldsmith.controls import catalogue, templating


@pytest.fixture
def goldsmith_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """goldsmith's cache in a directory of the test's own (empty at the start), with the
    memoised cache objects and the loaded default catalogue forgotten before and after."""
    d = tmp_path / "cache"
    monkeypatch.setenv("GOLDSMITH_CACHE_DIR", str(d))

    def forget() -> None:
        catalogue._parse_cache.cache_clear()
        catalogue._default_catalogue.cache_clear()
        templating._render_cache.cache_clear()
        cache.set_writable(True)

    forget()
    yield d
    forget()
