"""Reading the generator's ``model_config``: JSON, YAML, a MindIE-Service config.json, ``--set``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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
    """``mc`` (already coerced) with the schema's defaults for keys it does not set."""
    out = _schema_defaults()
    out.update(mc)
    if "local_rank" not in out and isinstance(out.get("rank"), int):
        out["local_rank"] = out["rank"]
    return out


INTEGER_KEYS = (
    "world_size",
    "rank",
    "local_rank",
    "npu_device_id",
    "num_threads",
    "block_size",
    "max_seq_len",
    "max_input_len",
    "max_iter_times",
    "max_batch_size",
    "max_prefill_batch_size",
    "max_prefill_tokens",
    "npu_mem",
    "cpu_mem",
    "dp",
    "tp",
    "moe_tp",
    "moe_ep",
    "max_position_embeddings",
)
BOOLEAN_KEYS = ("trust_remote_code", "distributed_enable", "load_tokenizer")


@dataclass(frozen=True)
class Violation:
    """One schema violation: the key's path, what is wrong, what is allowed."""

    path: str
    message: str
    allowed: str


def coerce(mc: Mapping[str, Any]) -> dict[str, Any]:
    """Convert numeric and boolean strings the way MindIE's ``parse_config`` does (``int(value)``,
    ``'true'``/``'1'``), so ``{"world_size": "4"}`` validates as MindIE would accept it."""
    out = dict(mc)
    for k in INTEGER_KEYS:
        v = out.get(k)
        if isinstance(v, str) and v.strip().lstrip("-").isdigit():
            out[k] = int(v)
    for k in BOOLEAN_KEYS:
        v = out.get(k)
        if isinstance(v, str) and v.lower() in ("true", "false", "1", "0"):
            out[k] = v.lower() in ("true", "1")
    return out


def _allowed(schema: Mapping[str, Any]) -> str:
    if "enum" in schema:
        return "one of " + ", ".join(repr(v) for v in schema["enum"])
    parts = []
    t = schema.get("type")
    if t:
        parts.append(t if isinstance(t, str) else "/".join(t))
    if "minimum" in schema:
        parts.append(f">= {schema['minimum']}")
    if "maximum" in schema:
        parts.append(f"<= {schema['maximum']}")
    if "not" in schema and "const" in schema["not"]:
        parts.append(f"not {schema['not']['const']}")
    return " ".join(parts) or "see schemas/model_config.schema.json"


def validate(mc: Mapping[str, Any]) -> list[Violation]:
    """Schema violations of a (coerced) model_config, each naming its key."""
    import jsonschema

    from schemas import load

    schema = load("model_config.schema.json")
    validator = jsonschema.Draft202012Validator(schema)
    out = []
    for err in sorted(validator.iter_errors(mc), key=lambda e: list(e.path)):
        if err.validator == "required":
            missing = str(err.message).split("'")[1] if "'" in err.message else "?"
            prop = schema["properties"].get(missing, {})
            out.append(
                Violation(
                    f"model_config.{missing}",
                    f"model_config: `{missing}` is required, but not set",
                    _allowed(prop),
                )
            )
            continue
        key = ".".join(str(p) for p in err.path) or "(root)"
        sub = schema["properties"].get(str(err.path[0]), {}) if err.path else {}
        out.append(Violation(f"model_config.{key}", f"{key} = {err.instance!r}: {err.message}", _allowed(sub)))
    return out


def known_keys() -> list[str]:
    """Keys the schema describes."""
    from schemas import load

    return list(load("model_config.schema.json")["properties"])


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
