"""The controls and apply commands: listing, showing, and errors before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from controls_fixtures import tree_hash, write

from goldsmith.cli import EXIT_OK, EXIT_USAGE, main


def test_controls_list_json_filters_by_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["controls", "list", "--json"]) == EXIT_OK
    every = json.loads(capsys.readouterr().out)
    assert main(["controls", "list", "--benchmark", "cis-debian12", "--json"]) == EXIT_OK
    d12 = json.loads(capsys.readouterr().out)
    assert {r["id"] for r in d12["controls"]} <= {r["id"] for r in every}
    assert all(r["cis-debian12"] for r in d12["controls"])
    assert d12["coverage"]["recommendations"] >= d12["coverage"]["automated"] > 0
    firsts = [tuple(int(p) for p in r["cis-debian12"][0].split(".")) for r in d12["controls"]]
    assert firsts == sorted(firsts)


def test_controls_list_unknown_benchmark_is_usage_error() -> None:
    assert main(["controls", "list", "--benchmark", "cis-rhel9"]) == EXIT_USAGE


def test_controls_show(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["controls", "show", "sshd.ciphers", "--json"]) == EXIT_OK
    d = json.loads(capsys.readouterr().out)
    assert d["rule"] == "config-option" and d["params"]["key"] == "Ciphers"
    assert d["references"]["cis-debian13"] and len(d["rationale"]) > 20


def test_controls_show_unknown_id_suggests(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["controls", "show", "sshd.cipher"]) == EXIT_USAGE
    assert "sshd.ciphers" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("controls", "line", "words"),
    [
        ("  sshd.ciphrs: {}\n", 4, ["controls.sshd.ciphrs", "sshd.ciphers"]),
        ("  sshd.ciphers:\n    params:\n      value: [a, b]\n", 6, ["params.value"]),
        ("  sshd.ciphers: {params: {colour: red}}\n", 4, ["params.colour", "unknown param"]),
    ],
)
def test_apply_with_a_bad_profile_names_it_and_writes_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    controls: str,
    line: int,
    words: list[str],
) -> None:
    root = tmp_path / "root"
    write(root, "/etc/ssh/sshd_config", "Port 22\n")
    before = tree_hash(root)
    p = tmp_path / "bad.yaml"
    p.write_text(f"extends: nanoclaw-debian13\nname: bad\ncontrols:\n{controls}")
    assert main(["apply", "--profile", str(p), "--rootfs", str(root)]) == EXIT_USAGE
    err = " ".join(capsys.readouterr().err.split())
    assert f"{p}:{line}:" in err
    for w in words:
        assert w in err
    assert tree_hash(root) == before
