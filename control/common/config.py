"""One configuration loader for every Cirrus process.

Each service reads an INI file, ``/etc/cirrus/<service>.conf`` by default. The directory can be
moved with ``CIRRUS_CONFIG_DIR`` and one file chosen with ``CIRRUS_<SERVICE>_CONFIG``; tests pass
a dictionary of overrides instead. Values are always strings in the file; the typed getters
convert them and fail with a message that names the file, section and option.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

DEFAULT_CONFIG_DIR = "/etc/cirrus"


T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _to_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(value)


class ConfigError(Exception):
    """A missing or malformed setting: the message names the file, section and option."""


class Config:
    """Read-only view over an INI file plus in-memory overrides."""

    def __init__(self, service: str, parser: configparser.ConfigParser, source: str) -> None:
        self.service = service
        self._parser = parser
        self.source = source

    def _raw(self, section: str, option: str) -> str | None:
        if self._parser.has_option(section, option):
            return self._parser.get(section, option, raw=True)
        return None

    def has(self, section: str, option: str) -> bool:
        return self._raw(section, option) is not None

    def get(self, section: str, option: str, default: str | None = None) -> str:
        value = self._raw(section, option)
        if value is None:
            if default is None:
                raise ConfigError(f"{self.source}: [{section}] {option} is required but not set")
            return default
        return value

    def get_optional(self, section: str, option: str) -> str | None:
        return self._raw(section, option)

    def _typed(
        self,
        section: str,
        option: str,
        default: T | None,
        convert: Callable[[str], T],
        expected: str,
    ) -> T:
        value = self._raw(section, option)
        if value is None:
            if default is None:
                raise ConfigError(f"{self.source}: [{section}] {option} is required but not set")
            return default
        try:
            return convert(value)
        except ValueError:
            raise ConfigError(
                f"{self.source}: [{section}] {option} must be {expected}, got {value!r}"
            ) from None

    def get_int(self, section: str, option: str, default: int | None = None) -> int:
        return self._typed(section, option, default, int, "a whole number")

    def get_float(self, section: str, option: str, default: float | None = None) -> float:
        return self._typed(section, option, default, float, "a number")

    def get_bool(self, section: str, option: str, default: bool | None = None) -> bool:
        return self._typed(section, option, default, _to_bool, "true or false")

    def get_list(self, section: str, option: str, default: list[str] | None = None) -> list[str]:
        value = self._raw(section, option)
        if value is None:
            return list(default or [])
        return [item.strip() for item in value.split(",") if item.strip()]


def config_path(service: str) -> Path:
    env_file = os.environ.get(f"CIRRUS_{service.upper().replace('-', '_')}_CONFIG")
    if env_file:
        return Path(env_file)
    return Path(os.environ.get("CIRRUS_CONFIG_DIR", DEFAULT_CONFIG_DIR)) / f"{service}.conf"


def load(
    service: str,
    path: str | os.PathLike[str] | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    required: bool = False,
) -> Config:
    """Load the configuration of ``service``.

    ``overrides`` maps section -> option -> value and wins over the file. With ``required`` a
    missing file is an error; otherwise the defaults coded at each ``get`` apply.
    """
    parser = configparser.ConfigParser(interpolation=None)
    file_path = Path(path) if path is not None else config_path(service)
    source = str(file_path)
    if file_path.exists():
        with file_path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    elif required:
        raise ConfigError(f"{source}: configuration file for {service} not found")
    for section, options in (overrides or {}).items():
        if section != parser.default_section and not parser.has_section(section):
            parser.add_section(section)
        for option, value in options.items():
            parser.set(section, option, str(value))
    if overrides:
        source = f"{source} (with overrides)"
    return Config(service, parser, source)
