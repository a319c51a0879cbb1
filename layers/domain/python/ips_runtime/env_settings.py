"""The base of every surface's settings model (the functions', the local cloud's): variables read from one
environment mapping, typed and validated together, and refused with the variable's name.

pydantic-settings reads `os.environ`; `EnvSettings.from_env(env)` reads the mapping given instead (tests pass a
dict, the local cloud its functions' environment) through the library's own environment source, so values are
decoded exactly as from the process environment. An empty variable counts as unset (its default applies)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any, Self

from pydantic import ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars


class SettingsError(ValueError):
    """A setting is malformed or missing: the message names each variable and what is wrong with it; `problems`
    holds one line per problem (how the local cloud prints them)."""

    def __init__(self, *problems: str) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class _MappingSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of `os.environ` (the extension point
    its own dotenv source uses)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


class EnvSettings(BaseSettings):
    """Field `csv_max_bytes` is variable `CSV_MAX_BYTES` (with the model's `env_prefix`); unknown variables are
    ignored (a function's environment holds the runtime's too). Only `from_env` reads an environment: a model
    constructed directly holds its arguments and defaults."""

    model_config = SettingsConfigDict(case_sensitive=False, env_ignore_empty=True, extra="ignore", frozen=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # from_env has read the environment it was given

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Self:
        """The settings in `env` (the process environment when None), `overrides` (by field name) winning over
        it; SettingsError names every bad variable."""
        values = {**_MappingSource(cls, os.environ if env is None else env)(), **overrides}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise SettingsError(*problems(exc, cls.variable)) from None

    @classmethod
    def variable(cls, field: str) -> str:
        """The variable a field (or a validation error's location: the field's alias) is read from."""
        info = cls.model_fields.get(field)
        if info is not None and info.alias:
            return info.alias.upper()
        return f"{cls.model_config.get('env_prefix', '')}{field}".upper()


def problems(exc: ValidationError, name_of: Any) -> Iterable[str]:
    """One line per problem: `NAME='value': what is wrong`, NAME from the error's field by `name_of`."""
    for error in exc.errors(include_url=False):
        message = error["msg"].removeprefix("Value error, ")
        if not error["loc"]:  # a check across fields: its message names them
            yield message
            continue
        field, *inside = error["loc"]
        name = name_of(str(field)) + "".join(f"[{part!r}]" for part in inside)
        if error["type"] == "missing":
            yield f"{name} must be set"
        elif isinstance(error.get("input"), str | int | float):
            yield f"{name}={error['input']!r}: {message}"
        else:
            yield f"{name}: {message}"
