"""The base of every validated config: pydantic, unknown keys rejected, YAML in and out."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from hydralm.errors import ConfigError

__all__ = ["StrictModel", "dump_yaml", "load_yaml"]

M = TypeVar("M", bound="StrictModel")


class StrictModel(BaseModel):
    """A config section: unknown fields are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    @classmethod
    def from_dict(cls: type[M], data: dict[str, Any] | None, *, source: str = "config") -> M:
        """Validate `data`, raising ConfigError that names the source and each bad field."""
        try:
            return cls.model_validate(data or {})
        except ValidationError as exc:
            raise ConfigError(_describe(exc, source)) from exc

    @classmethod
    def from_yaml(cls: type[M], path: str | Path) -> M:
        return cls.from_dict(load_yaml(path), source=str(path))


def _describe(exc: ValidationError, source: str) -> str:
    lines = [f"invalid {source}:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        got = err.get("input")
        got_text = f" (got {got!r})" if not isinstance(got, dict) and got is not None else ""
        lines.append(f"  {loc}: {err['msg']}{got_text}")
    return "\n".join(lines)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file or a non-mapping document is a ConfigError."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping, got {type(data).__name__}")
    return data


def dump_yaml(model: BaseModel) -> str:
    return yaml.safe_dump(model.model_dump(mode="json"), sort_keys=False)
