"""compose.yaml, the Dockerfile's lock and docs/deployment.md agree with the code they start.

CI does not run Docker, so nothing else would notice a command, an option or a setting that the real CLI
and config no longer have, or an image that lacks what `giftrec serve` runs under.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

import click
import pytest
import yaml

from api.cli import cli
from config import Settings, env_var

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
DEPLOYMENT = (ROOT / "docs" / "deployment.md").read_text()


def _pins(lock: str) -> dict[str, str]:
    return dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "requirements" / lock).read_text(), re.M))


def test_the_image_lock_has_gunicorn_which_giftrec_serve_runs_under():
    """Regression: gunicorn was only in the dev extra, so the image (requirements/main.txt) had none and
    `giftrec serve --workers 2` in compose.yaml silently ran Flask's development server, one process."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "requirements/main.txt" in dockerfile
    main, dev = _pins("main.txt"), _pins("dev.txt")
    assert "gunicorn" in main
    assert main["gunicorn"] == dev["gunicorn"]


def _settings_variables() -> set[str]:
    names = {"GIFTREC_CONFIG", "GIFTREC_TEST_DATABASE_URL"}  # the file of settings; the test suite's
    for section in dataclasses.fields(Settings):
        cls = section.default_factory
        assert isinstance(cls, type)
        names |= {env_var(section.name, f.name) for f in dataclasses.fields(cls)}
    return names


def _compose_services() -> dict[str, dict]:
    return COMPOSE["services"]


def test_every_setting_compose_and_the_deployment_doc_name_is_a_real_one():
    """An unknown GIFTREC_* variable is ignored by the config (not refused), so a typo would go unseen."""
    known = _settings_variables()
    named = set()
    for service in _compose_services().values():
        named |= {k for k in (service.get("environment") or {}) if k.startswith("GIFTREC_")}
    named |= set(re.findall(r"`(GIFTREC_[A-Z0-9_]+)`", DEPLOYMENT))
    assert named, "nothing found: the patterns no longer match the files"
    assert named - known == set()


def _giftrec_commands() -> list[list[str]]:
    commands = []
    for service in _compose_services().values():
        command = service.get("command")
        if command and command[0] == "giftrec":
            commands.append(list(command[1:]))
    for block in re.findall(r"```sh\n(.*?)```", DEPLOYMENT, re.S):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("giftrec "):
                commands.append(shlex.split(line)[1:])
    return commands


@pytest.mark.parametrize("args", _giftrec_commands(), ids=" ".join)
def test_every_giftrec_command_in_compose_and_the_deployment_doc_parses(
    args: list[str], monkeypatch: pytest.MonkeyPatch
):
    """Each command and option exists as written (parsed by the real CLI, not run)."""
    monkeypatch.setenv("GIFTREC_USER_PASSWORD", "not asked for")  # `users create` would prompt
    command: click.Command = cli
    ctx = click.Context(cli, info_name="giftrec")
    while isinstance(command, click.Group):
        name, sub, rest = command.resolve_command(ctx, args)
        assert sub is not None, args
        command, args = sub, rest
        ctx = click.Context(command, info_name=name, parent=ctx)
    command.make_context(command.name, list(args), parent=ctx)


def test_every_web_process_in_compose_has_the_health_check_the_doc_gives_the_load_balancer():
    webs = {
        name: service
        for name, service in _compose_services().items()
        if (service.get("command") or [])[:2] == ["giftrec", "serve"]
    }
    assert len(webs) >= 2
    assert "/health/live" in DEPLOYMENT
    for name, service in webs.items():
        assert "/health/live" in " ".join(service.get("healthcheck", {}).get("test", [])), name
