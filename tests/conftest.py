"""Shared by every test: goldsmith's per-user cache points at a directory of this run's own.

Loading the catalogue caches parsed YAML (``goldsmith.controls.parse_cache``); tests must not
read entries a previous run (or the developer's own goldsmith) left in ``~/.cache``, nor leave
any there. Tests of the cache itself set their own directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

_CACHE_DIR = tempfile.mkdtemp(prefix="goldsmith-test-cache-")
os.environ["GOLDSMITH_CACHE_DIR"] = _CACHE_DIR


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_CACHE_DIR, ignore_errors=True)
