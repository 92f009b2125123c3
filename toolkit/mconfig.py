"""Reading the generator's ``model_config``: JSON, YAML, a MindIE-Service config.json, ``--set``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from toolkit.errors import UsageError
from toolkit.formats.jsonload import JsonLoadError, load_file

MAX_MODEL_CONFIG_BYTES = 10 * 1024 * 1024


def _schema_defaults() -> dict[str, Any]:
    from schemas import load

    props = load("model_config.schema.json")["properties"]
    return {k: v["default"] for k, v in props.items() if "default" in v}


def with_defaults(mc: Mapping[str, Any]) -> dict[str, Any]:
    """``mc`` with the schema's defaults for keys it does not set."""
    out = _schema_defaults()
    out.update(mc)
    return out


def load_model_config(path: Path) -> tuple[dict[str, Any], str]:
    """Read a model_config file; returns the dict and what kind of file it was.

    A MindIE-Service ``config.json`` (it has ``BackendConfig``) is mapped to the generator's keys.
    Raises :class:`UsageError` naming the file for anything unreadable.
    """
    if not path.is_file():
        raise UsageError(f"model_config file {str(path)!r} does not exist or is not a file")
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        data = _load_yaml(path)
        kind = "yaml"
    else:
        try:
            data = load_file(path, max_bytes=MAX_MODEL_CONFIG_BYTES, max_depth=32).value
        except JsonLoadError as exc:
            raise UsageError(f"model_config file {str(path)!r} is not valid JSON: {exc.message}") from None
        kind = "json"
    if not isinstance(data, dict):
        raise UsageError(f"model_config file {str(path)!r} must hold a JSON/YAML object, not {type(data).__name__}")
    if "BackendConfig" in data:
        from toolkit.mindie_service import map_service_config

        return map_service_config(data, path), "mindie-service"
    return data, kind


def _load_yaml(path: Path) -> Any:
    import yaml

    try:
        if path.stat().st_size > MAX_MODEL_CONFIG_BYTES:
            raise UsageError(f"model_config file {str(path)!r} is larger than 10 MiB")
        text = path.read_text(encoding="utf-8")
        return yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"model_config file {str(path)!r} cannot be read: {exc}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"model_config file {str(path)!r} is not valid YAML: {exc}") from None
    except RecursionError:
        raise UsageError(f"model_config file {str(path)!r} nests too deeply") from None


def parse_set(item: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as JSON, else kept as a string."""
    if "=" not in item:
        raise UsageError(f"--set {item!r}: expected KEY=VALUE")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise UsageError(f"--set {item!r}: the key is empty")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def apply_sets(base: Mapping[str, Any] | None, items: Iterable[str]) -> dict[str, Any] | None:
    """Apply ``--set`` items over ``base``; None when there is neither."""
    items = list(items)
    if base is None and not items:
        return None
    out = dict(base or {})
    for item in items:
        k, v = parse_set(item)
        out[k] = v
    return out
