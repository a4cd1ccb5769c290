"""The command line and the settings as a new user meets them: `--help` describes every command and option (with
its default), `--version` answers, a `.env` file is read (the real environment wins over it), and the README says
all of it."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from voice_service import __version__
from voice_service.cli import build_parser
from voice_service.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ["serve", "worker", "migrate", "create-tenant", "create-api-key", "topup", "simulate"]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_help_describes_every_command() -> None:
    text = build_parser().format_help()
    commands = _subparsers(build_parser())
    assert sorted(commands) == sorted(COMMANDS)
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            described = {choice.dest: choice.help for choice in action._choices_actions}
            assert set(described) == set(COMMANDS)
            assert all(described.values()), described
    assert "--version" in text and ".env" in text


def _options(parser: argparse.ArgumentParser, prefix: str) -> list[tuple[str, argparse.Action]]:
    out = [(prefix, a) for a in parser._actions if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)]
    for name, child in _subparsers(parser).items():
        out += _options(child, f"{prefix} {name}")
    return out


def test_every_option_has_help_and_shows_its_default() -> None:
    parser = build_parser()
    undocumented = [f"{where}: {a.dest}" for where, a in _options(parser, "voice-service")
                    if not a.help and not isinstance(a, argparse._VersionAction)]
    assert not undocumented, undocumented
    serve_help = _subparsers(parser)["create-api-key"].format_help()
    assert "(default: member)" in serve_help
    sim = _subparsers(_subparsers(parser)["simulate"])["serve"].format_help()
    assert "(default: 8765)" in sim


def test_version() -> None:
    out = subprocess.run([str(Path(sys.executable).parent / "voice-service"), "--version"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"voice-service {__version__}"


def test_a_dot_env_file_is_read_and_the_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text(
        "# copied from .env.example\n"
        "PORT=9100                      # an inline comment\n"
        "LOG_LEVEL=DEBUG\n"
        "export PUBLIC_BASE_URL=https://voice.example.com\n"
        'OPENAI_MODEL="gpt-4o"\n'
        "JWT_SECRET=\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ENV_FILE", raising=False)
    for name in ("PORT", "PUBLIC_BASE_URL", "OPENAI_MODEL", "JWT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    settings = load_settings()
    assert settings.port == 9100 and settings.public_base_url == "https://voice.example.com"
    assert settings.openai_model == "gpt-4o" and settings.jwt_secret is None
    assert settings.log_level == "WARNING"  # the real environment wins over the file
    assert settings.env_file == str(tmp_path / ".env")
    monkeypatch.setenv("ENV_FILE", "")
    assert load_settings().port == 8000 and load_settings().env_file is None
    other = tmp_path / "prod.env"
    other.write_text("PORT=9200\n")
    monkeypatch.setenv("ENV_FILE", str(other))
    assert load_settings().port == 9200


def test_dot_env_is_ignored_by_git_and_the_example_is_readable() -> None:
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
    from voice_service.settings import read_env_file

    example = read_env_file(ROOT / ".env.example")
    assert example["PUBLIC_BASE_URL"] == "http://127.0.0.1:8000"  # inline comments are not part of values
    assert "METRICS_TOKEN" in example


def test_the_readme_tells_it() -> None:
    readme = (ROOT / "README.md").read_text()
    for command in COMMANDS:
        assert f"voice-service {command}" in readme, command
    assert "voice-service --help" in readme and "--version" in readme
    assert ".env" in readme and "METRICS_TOKEN" in readme
    for doc in ("docs/api.md", "docs/events.md"):
        assert f"]({doc})" in readme and (ROOT / doc).is_file()
    from voice_service.openapi.docs_page import DOCS_PATH

    assert f"{DOCS_PATH}/openapi.json" in readme and f"{DOCS_PATH}/swagger" in readme
