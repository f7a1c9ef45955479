"""Settings: dataclass defaults <- TOML file named by GIFTREC_CONFIG <- GIFTREC_* variables <- overrides."""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from typing import Any

from config.settings import (
    ApiSettings,
    DatabaseSettings,
    DemoSettings,
    ImportSettings,
    InteractionSettings,
    MailSettings,
    ModelSettings,
    ReminderSettings,
    RfmSettings,
    SchedulerSettings,
    ServerSettings,
    Settings,
    TriggerSettings,
    parse_cuts,
    parse_lifetimes,
    parse_names,
    parse_segments,
)

__all__ = [
    "ApiSettings",
    "ConfigError",
    "DatabaseSettings",
    "DemoSettings",
    "ImportSettings",
    "InteractionSettings",
    "MailSettings",
    "ModelSettings",
    "ReminderSettings",
    "RfmSettings",
    "SchedulerSettings",
    "ServerSettings",
    "Settings",
    "TriggerSettings",
    "env_var",
    "load_settings",
]

ENV_PREFIX = "GIFTREC_"

#: Values a key may take, where the set is closed.
CHOICES: dict[str, tuple[str, ...]] = {
    "interactions.quantity_damping": ("lines", "none", "log1p", "sqrt"),
    "mail.smtp_security": ("none", "starttls", "ssl"),
    "reminders.vip_cutoff_policy": ("send", "skip"),
    "model.algorithm": ("hybrid", "als", "bpr", "item_bm25", "item_cosine", "popularity"),
    "rfm.recency_scoring": ("fixed", "quantile"),
    "rfm.frequency_scoring": ("fixed", "quantile"),
    "rfm.monetary_scoring": ("fixed", "quantile"),
}

#: Keys that must be >= 0 (all other numbers must be > 0 unless listed here).
NON_NEGATIVE = {
    "model.num_threads",
    "model.random_state",
    "model.repeat_weight",
    "model.cf_weight",
    "model.popularity_weight",
    "model.discovery_cf_weight",
    "model.discovery_popularity_weight",
    "interactions.half_life_days",
    "interactions.weight_rejected",
    "mail.frequency_cap_days",
    "reminders.catch_up_min_days",
    "reminders.vip_cutoff_days",
    "api.cache_seconds",
    "api.picks_cache_customers",
    "api.precomputed_customers",
    "api.warm_up_seconds",
    "server.port",
    "rfm.clv_discount_rate",
    "triggers.holdout_share",
    "triggers.control_share",
    "triggers.review_request_delay_days",
    "triggers.replacement_min_intervals",
}


class ConfigError(ValueError):
    """A setting has a bad value; the message names the key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


def env_var(section: str, key: str) -> str:
    """Name of the environment variable for ``section.key``: ``GIFTREC_<SECTION>_<KEY>``."""
    return f"{ENV_PREFIX}{section}_{key}".upper()


def _coerce(key: str, kind: Any, value: Any) -> Any:
    if kind is bool or kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(key, f"expected true/false, got {value!r}")
    if kind is int or kind == "int":
        if isinstance(value, bool):
            raise ConfigError(key, f"expected an integer, got {value!r}")
        try:
            return int(str(value).strip())
        except ValueError:
            raise ConfigError(key, f"expected an integer, got {value!r}") from None
    if kind is float or kind == "float":
        if isinstance(value, bool):
            raise ConfigError(key, f"expected a number, got {value!r}")
        try:
            return float(str(value).strip())
        except ValueError:
            raise ConfigError(key, f"expected a number, got {value!r}") from None
    if not isinstance(value, str):
        raise ConfigError(key, f"expected a string, got {value!r}")
    return value


#: One limit in the syntax of the `limits` library: "1200/minute", "20 per second", "100/5 minutes".
_RATE_LIMIT = re.compile(r"\s*\d+\s*(/|per)\s*(\d+\s*)?(second|minute|hour|day|month|year)s?\s*", re.I)


def _validate(key: str, value: Any) -> None:
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(key, f"must be one of {', '.join(CHOICES[key])}, got {value!r}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if key in NON_NEGATIVE:
            if value < 0:
                raise ConfigError(key, f"must be >= 0, got {value!r}")
        elif value <= 0:
            raise ConfigError(key, f"must be > 0, got {value!r}")
    if key == "database.url" and "://" not in value:
        raise ConfigError(key, f"not a database URL: {value!r}")
    if key in ("rfm.recency_cuts", "rfm.frequency_cuts", "rfm.monetary_cuts", "rfm.segments"):
        try:
            parse_segments(value) if key == "rfm.segments" else parse_cuts(value)
        except ValueError as exc:
            raise ConfigError(key, str(exc)) from None
    if key == "triggers.replacement_lifetimes" or key.endswith("_audience"):
        try:
            parse_lifetimes(value) if key == "triggers.replacement_lifetimes" else parse_names(value)
        except ValueError as exc:
            raise ConfigError(key, str(exc)) from None
    if key in ("triggers.holdout_share", "triggers.control_share") and value >= 1:
        raise ConfigError(key, f"must be below 1, got {value!r}")
    if key == "api.rate_limit" and not _RATE_LIMIT.fullmatch(value):
        raise ConfigError(key, f"expected a limit like '1200/minute' or '20 per second', got {value!r}")


def _section_values(name: str, cls: type, layers: list[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for origin, layer in layers:
        for key, raw in layer.items():
            if key not in fields:
                raise ConfigError(f"{name}.{key}", f"unknown setting (from {origin})")
            values[key] = _coerce(f"{name}.{key}", fields[key].type, raw)
    for key, value in values.items():
        _validate(f"{name}.{key}", value)
    return values


def load_settings(
    environ: Mapping[str, str] | None = None,
    config_file: str | None = None,
    **overrides: Mapping[str, Any],
) -> Settings:
    """Build the settings, validating every key once.

    ``overrides`` are per section: ``load_settings(database={"url": "sqlite://"})``.
    Raises :class:`ConfigError` naming the bad key.
    """
    env = os.environ if environ is None else environ
    path = config_file or env.get(f"{ENV_PREFIX}CONFIG")
    file_data: dict[str, Any] = {}
    if path:
        try:
            with open(path, "rb") as fh:
                file_data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError("GIFTREC_CONFIG", f"cannot read {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("GIFTREC_CONFIG", f"{path} is not valid TOML: {exc}") from None
    sections = {f.name: f for f in dataclasses.fields(Settings)}
    for name in list(file_data) + list(overrides):
        if name not in sections:
            raise ConfigError(name, "unknown section")
    built: dict[str, Any] = {}
    for name, section_field in sections.items():
        cls = section_field.default_factory
        assert isinstance(cls, type)
        env_layer = {
            f.name: env[env_var(name, f.name)]
            for f in dataclasses.fields(cls)
            if env_var(name, f.name) in env
        }
        file_layer = file_data.get(name, {})
        if not isinstance(file_layer, dict):
            raise ConfigError(name, "must be a table in the config file")
        layers = [
            ("config file", file_layer),
            ("environment", env_layer),
            ("overrides", overrides.get(name, {})),
        ]
        built[name] = cls(**_section_values(name, cls, layers))
    return Settings(**built)
