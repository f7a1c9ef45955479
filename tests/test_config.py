"""Config: defaults.toml mirrors the dataclasses; file, environment and overrides apply in order."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from config import ConfigError, Settings, env_var, load_settings

DEFAULTS = Path(__file__).resolve().parent.parent / "config" / "defaults.toml"


def _as_dict(settings: Settings) -> dict:
    return dataclasses.asdict(settings)


def test_defaults_toml_equals_the_dataclass_defaults():
    with open(DEFAULTS, "rb") as fh:
        assert tomllib.load(fh) == _as_dict(Settings())


def test_default_database_is_a_sqlite_file_under_instance():
    assert load_settings(environ={}).database.url == "sqlite:///instance/giftrec.db"


def _other_value(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 0.5
    return None


@pytest.mark.parametrize(
    ("section", "key"),
    [(s.name, f.name) for s in dataclasses.fields(Settings) for f in dataclasses.fields(s.default_factory())],
)
def test_every_environment_variable_overrides_its_key(section, key):
    default = getattr(getattr(Settings(), section), key)
    new = _other_value(default)
    if new is None:  # strings: pick a value valid for the key
        new = {
            "database.url": "postgresql+psycopg://u@127.0.0.1/x",
            "interactions.quantity_damping": "sqrt",
            "mail.smtp_security": "starttls",
            "reminders.vip_cutoff_policy": "skip",
            "model.algorithm": "als",
            "api.rate_limit": "50 per second",
            "rfm.recency_scoring": "fixed",
            "rfm.frequency_scoring": "quantile",
            "rfm.monetary_scoring": "fixed",
            "rfm.recency_cuts": "7, 30, 60, 120",
            "rfm.frequency_cuts": "1, 2, 4, 8",
            "rfm.monetary_cuts": "1000, 2000, 5000, 10000",
            "rfm.segments": "vip: r 4-5, f 3-5, m 5; everyone_else: r 1-5",
            "triggers.replacement_lifetimes": "shoes: 200-400; bags: 500-700",
            "triggers.replacement_audience": "loyal",
            "triggers.running_out_audience": "champions, loyal",
            "triggers.winback_audience": "at_risk",
            "triggers.new_arrivals_audience": "champions",
            "triggers.abandoned_cart_audience": "new",
        }.get(f"{section}.{key}", "changed")
    raw = str(new).lower() if isinstance(new, bool) else str(new)
    settings = load_settings(environ={env_var(section, key): raw})
    assert getattr(getattr(settings, section), key) == new


def test_file_then_environment_then_overrides(tmp_path):
    path = tmp_path / "giftrec.toml"
    path.write_text('[model]\nfactors = 16\niterations = 3\n[api]\nrate_limit = "10/second"\n')
    env = {"GIFTREC_CONFIG": str(path), "GIFTREC_MODEL_ITERATIONS": "7"}
    settings = load_settings(environ=env, model={"random_state": 1})
    assert settings.model.factors == 16  # file
    assert settings.model.iterations == 7  # environment beats file
    assert settings.model.random_state == 1  # override
    assert settings.api.rate_limit == "10/second"


@pytest.mark.parametrize(
    ("environ", "key"),
    [
        ({"GIFTREC_MODEL_FACTORS": "many"}, "model.factors"),
        ({"GIFTREC_MODEL_FACTORS": "0"}, "model.factors"),
        ({"GIFTREC_MODEL_SWAP_CPU_SHARE": "0"}, "model.swap_cpu_share"),  # the swap's pacer divides by it
        ({"GIFTREC_MODEL_USE_GPU": "maybe"}, "model.use_gpu"),
        ({"GIFTREC_MAIL_SMTP_SECURITY": "tls1"}, "mail.smtp_security"),
        ({"GIFTREC_DATABASE_URL": "giftrec.db"}, "database.url"),
        ({"GIFTREC_REMINDERS_LEAD_DAYS": "-1"}, "reminders.lead_days"),
        ({"GIFTREC_API_RATE_LIMIT": "1200 a minute"}, "api.rate_limit"),
        ({"GIFTREC_RFM_FREQUENCY_CUTS": "1, 2, 3"}, "rfm.frequency_cuts"),
        ({"GIFTREC_RFM_RECENCY_CUTS": "90, 30, 180, 365"}, "rfm.recency_cuts"),
        ({"GIFTREC_RFM_SEGMENTS": "champions: r 6"}, "rfm.segments"),
        ({"GIFTREC_RFM_SEGMENTS": "Champions!: r 5"}, "rfm.segments"),
        ({"GIFTREC_RFM_MONETARY_SCORING": "deciles"}, "rfm.monetary_scoring"),
        ({"GIFTREC_TRIGGERS_REPLACEMENT_LIFETIMES": "bags 540"}, "triggers.replacement_lifetimes"),
        ({"GIFTREC_TRIGGERS_REPLACEMENT_LIFETIMES": "bags: 720-540"}, "triggers.replacement_lifetimes"),
        ({"GIFTREC_TRIGGERS_WINBACK_AUDIENCE": "At Risk"}, "triggers.winback_audience"),
        ({"GIFTREC_TRIGGERS_CONTROL_SHARE": "1.5"}, "triggers.control_share"),
    ],
)
def test_a_bad_value_names_the_key(environ, key):
    with pytest.raises(ConfigError) as info:
        load_settings(environ=environ)
    assert info.value.key == key
    assert str(info.value).startswith(key)


def test_unknown_keys_in_the_file_are_refused(tmp_path):
    path = tmp_path / "giftrec.toml"
    path.write_text("[model]\nfactorz = 16\n")
    with pytest.raises(ConfigError, match="model.factorz"):
        load_settings(environ={"GIFTREC_CONFIG": str(path)})


def test_unreadable_config_file_names_the_variable(tmp_path):
    with pytest.raises(ConfigError, match="GIFTREC_CONFIG"):
        load_settings(environ={"GIFTREC_CONFIG": str(tmp_path / "missing.toml")})


def test_cli_stops_on_a_bad_value_naming_the_key(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "GIFTREC_MODEL_FACTORS": "many"}
    proc = subprocess.run(
        [sys.executable, "-c", "from api.cli import main; main()", "db", "current"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert "model.factors" in proc.stderr
