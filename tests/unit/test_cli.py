"""The CLI's contract: exit codes, error format, nothing written on a bad profile."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import typer

from goldsmith.cli import EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, main


def test_profile_validate_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "validate", "nanoclaw-debian13", "--json"]) == EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    assert doc["valid"] is True and doc["name"] == "nanoclaw-debian13"
    assert len(doc["digest"]) == 64


def test_bad_profile_names_file_line_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nagent:\n  user: Bad!\n")
    assert main(["profile", "validate", str(bad)]) == EXIT_USAGE
    errtext = capsys.readouterr().err
    assert f"{bad}:3:3: agent.user:" in errtext
    assert "Traceback" not in errtext


def test_build_with_bad_profile_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: nanoclaw-debian13\nimage:\n  formats: [vmdk]\n")
    out, cache = tmp_path / "out", tmp_path / "cache"
    rc = main(["build", "--profile", str(bad), "--out", str(out), "--cache-dir", str(cache)])
    assert rc == EXIT_USAGE
    assert "image.formats[0]" in capsys.readouterr().err
    assert not out.exists() and not cache.exists()


def test_unknown_command_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["no-such-command"]) == EXIT_USAGE


def test_missing_disk_image_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["boottest", str(tmp_path)])
    assert rc == EXIT_USAGE
    assert "no disk image (*.qcow2 or *.raw)" in capsys.readouterr().err


def test_profile_schema_is_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "schema"]) == EXIT_OK
    schema = json.loads(capsys.readouterr().out)
    assert {"base", "packages", "agent", "image", "gates"} <= set(schema["properties"])


def test_internal_error_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import goldsmith.model.profile_loader as loader

    def boom(ref: str) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(loader, "list_shipped", boom)
    assert main(["profile", "list"]) == EXIT_INTERNAL
    assert "internal error" in capsys.readouterr().err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_runs_cleanup_and_exits_128_plus_signal(
    sig: signal.Signals, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cancelled CI job sends SIGTERM: the command's finally blocks (unmounts, VM kill)
    must run, and the exit status says which signal ended it."""
    import goldsmith.cli as cli

    app = typer.Typer()
    ran: list[str] = []

    @app.command()
    def work() -> None:
        try:
            os.kill(os.getpid(), sig)
            time.sleep(5)  # the handler raises before this returns
            ran.append("slept")
        finally:
            ran.append("cleanup")

    @app.command()
    def other() -> None:  # two commands, so typer expects the command name
        pass

    monkeypatch.setattr(cli, "app", app)
    before = signal.getsignal(sig)
    assert main(["work"]) == 128 + sig
    assert ran == ["cleanup"]
    assert f"terminated ({sig.name})" in capsys.readouterr().err
    assert signal.getsignal(sig) == before  # the previous handler is back
