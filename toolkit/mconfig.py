"""The generator's ``model_config``: one :class:`ModelConfig`, built once from JSON, YAML, a
MindIE-Service config.json or ``--set``, and read everywhere through typed accessors."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import field
from functools import cache
from pathlib import Path
from typing import Any

from npu_preflight.errors import UsageError
from npu_preflight.formats.jsonload import JsonLoadError, load_file
from npu_preflight.records import frozen

MAX_MODEL_CONFIG_BYTES = 10 * 1024 * 1024
#: Longest numeric string converted; ``int()`` of longer text is refused (and MindIE's ranges stop
#: far below it).
MAX_NUMBER_CHARS = 40
#: ``--set`` values nest at most this deep (a JSON value 50,000 levels deep is a usage error).
MAX_SET_DEPTH = 32

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
#: The keys the generator needs for a deployment (MindIE's ``parse_config`` and ``GeneratorBackend``).
DEPLOYMENT_KEYS = ("backend_type", "world_size", "rank", "local_rank", "npu_device_id", "trust_remote_code")
SERVICE_KEY = "_mindie_service"


@cache
def schema() -> dict[str, Any]:
    """schemas/model_config.schema.json."""
    from npu_preflight.schemas import load

    return dict(load("model_config.schema.json"))


def _to_int(value: str) -> int | None:
    """``int(value)`` as MindIE calls it (whitespace, ``_`` separators, any Unicode decimal digits),
    bounded in length; None where ``int()`` would raise."""
    if len(value) > MAX_NUMBER_CHARS:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def coerce(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Convert numeric and boolean strings the way MindIE's ``parse_config`` does (``int(value)``,
    ``'true'``/``'1'``), so ``{"world_size": "4"}`` validates as MindIE would accept it. Strings
    ``int()`` refuses (``"²"``, ``"--4"``) stay strings, for the schema to name."""
    out = dict(raw)
    for k in INTEGER_KEYS:
        v = out.get(k)
        if isinstance(v, str):
            n = _to_int(v)
            if n is not None:
                out[k] = n
    for k in BOOLEAN_KEYS:
        v = out.get(k)
        if isinstance(v, str) and v.strip().lower() in ("true", "false", "1", "0"):
            out[k] = v.strip().lower() in ("true", "1")
    return out


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@frozen
class ModelConfig:
    """The model_config as given (``raw``), as MindIE reads it (``values``), and where it came from."""

    raw: Mapping[str, Any]
    values: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = None

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], source: str | None = None) -> ModelConfig:
        """Build one from a dict (coercing once)."""
        return cls(dict(raw), coerce(raw), source)

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def get(self, key: str, default: Any = None) -> Any:
        """A coerced value as given (no defaults)."""
        return self.values.get(key, default)

    def keys(self) -> list[str]:
        """The keys given."""
        return list(self.values)

    def integer(self, key: str) -> int | None:
        """An integer key within its schema range (given or defaulted), else None: anything out of
        range is MC001's to report and is never used in arithmetic."""
        v = self.effective.get(key)
        if not isinstance(v, int) or isinstance(v, bool):
            return None
        prop = schema()["properties"].get(key, {})
        lo, hi = prop.get("minimum"), prop.get("maximum")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            return None
        if "not" in prop and v == prop["not"].get("const"):
            return None
        return int(v)

    def positive(self, key: str) -> int | None:
        """An integer key that is > 0 and in range."""
        v = self.integer(key)
        return v if v is not None and v > 0 else None

    @property
    def effective(self) -> dict[str, Any]:
        """The values with the schema's defaults for keys not given (``local_rank`` defaults to ``rank``)."""
        props = schema()["properties"]
        out = {k: v["default"] for k, v in props.items() if "default" in v}
        out.update(self.values)
        if "local_rank" not in out and _is_int(out.get("rank")):
            out["local_rank"] = out["rank"]
        return out

    @property
    def world_size(self) -> int | None:
        """Tensor-parallel degree, when valid."""
        return self.positive("world_size")

    @property
    def block_size(self) -> int:
        """KV block size (default 128)."""
        return self.positive("block_size") or 128

    @property
    def trust_remote_code(self) -> bool:
        """The model_config's trust_remote_code flag (coerced)."""
        return self.values.get("trust_remote_code") is True

    @property
    def backend_type(self) -> str | None:
        """``atb``, ``ms``, ``torch`` … as given."""
        v = self.values.get("backend_type")
        return v if isinstance(v, str) else None

    @property
    def service(self) -> Mapping[str, Any] | None:
        """The raw MindIE-Service fields, when the model_config came from its config.json."""
        v = self.values.get(SERVICE_KEY)
        return v if isinstance(v, Mapping) else None

    def missing_deployment_keys(self) -> list[str]:
        """MindIE's required keys that are not given."""
        return [k for k in DEPLOYMENT_KEYS if k not in self.values]

    def deployment_snippet(self) -> dict[str, Any]:
        """Values for the missing deployment keys, ready to paste (a single-rank default where the
        model_config says nothing: rank 0 on device 0, no remote code)."""
        guess: dict[str, Any] = {
            "backend_type": "atb",
            "world_size": self.world_size or 1,
            "rank": 0,
            "local_rank": self.positive("rank") or 0,
            "npu_device_id": 0,
            "trust_remote_code": False,
        }
        return {k: guess[k] for k in self.missing_deployment_keys()}

    def for_generator(self) -> dict[str, Any]:
        """What the generator is handed: the effective values, without the tool's private keys."""
        return {k: v for k, v in self.effective.items() if not k.startswith("_")}

    def to_dict(self) -> dict[str, Any]:
        """The report's ``target.model_config`` (as given)."""
        return dict(self.raw)


@frozen
class Violation:
    """One schema violation: the key's path, what is wrong, what is allowed."""

    path: str
    message: str
    allowed: str


def _allowed(prop: Mapping[str, Any]) -> str:
    if "enum" in prop:
        return "one of " + ", ".join(repr(v) for v in prop["enum"])
    parts = []
    t = prop.get("type")
    if t:
        parts.append(t if isinstance(t, str) else "/".join(t))
    if "minimum" in prop:
        parts.append(f">= {prop['minimum']}")
    if "maximum" in prop:
        parts.append(f"<= {prop['maximum']}")
    if "not" in prop and "const" in prop["not"]:
        parts.append(f"not {prop['not']['const']}")
    return " ".join(parts) or "see schemas/model_config.schema.json"


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def validate(mc: ModelConfig, *, required: bool = True) -> list[Violation]:
    """Schema violations of the coerced model_config, each naming its key (missing required keys
    only with ``required``)."""
    import jsonschema

    sch = schema()
    validator = jsonschema.Draft202012Validator(sch)
    out = []
    for err in sorted(validator.iter_errors(dict(mc.values)), key=lambda e: [str(p) for p in e.path]):
        if err.validator == "required":
            if not required:
                continue
            missing = str(err.message).split("'")[1] if "'" in err.message else "?"
            prop = sch["properties"].get(missing, {})
            out.append(
                Violation(
                    f"model_config.{missing}",
                    f"model_config: `{missing}` is required, but not set",
                    _allowed(prop),
                )
            )
            continue
        key = ".".join(str(p) for p in err.path) or "(root)"
        sub = sch["properties"].get(str(err.path[0]), {}) if err.path else {}
        what = _what(str(err.validator), err.validator_value)
        out.append(Violation(f"model_config.{key}", f"{key} = {_short(err.instance)} {what}", _allowed(sub)))
    return out


def _what(validator: str, expected: Any) -> str:
    """A violation in words (the value itself is shown shortened; jsonschema's own message repeats
    it whole, which for a 400-digit number or a huge list is unreadable)."""
    if validator == "type":
        return f"is not of type {expected!r}"
    if validator == "minimum":
        return f"is less than the minimum {expected}"
    if validator == "maximum":
        return f"is greater than the maximum {expected}"
    if validator == "enum":
        return "is not one of " + ", ".join(repr(v) for v in expected)
    if validator == "not":
        return "is not allowed"
    return f"violates {validator}"


def known_keys() -> list[str]:
    """Keys the schema describes."""
    return list(schema()["properties"])


def load_model_config(path: Path) -> tuple[dict[str, Any], str]:
    """Read a model_config file; returns the dict and what kind of file it was.

    A MindIE-Service ``config.json`` (it has ``BackendConfig``) is mapped to the generator's keys.
    Raises :class:`UsageError` naming the file for anything unreadable.
    """
    if not path.is_file():
        raise UsageError(f"model_config file {str(path)!r} does not exist or is not a regular file")
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        data = _load_yaml(path)
        kind = "yaml"
    else:
        try:
            loaded = load_file(path, max_bytes=MAX_MODEL_CONFIG_BYTES, max_depth=32)
        except JsonLoadError as exc:
            raise UsageError(f"model_config file {str(path)!r} is not valid JSON: {exc.message}") from None
        if loaded.duplicates:
            raise UsageError(
                f"model_config file {str(path)!r} gives key {loaded.duplicates[0]!r} twice: which one MindIE "
                "would use depends on the parser (the last one here); keep one"
            )
        data = loaded.value
        kind = "json"
    if not isinstance(data, dict):
        raise UsageError(f"model_config file {str(path)!r} must hold a JSON/YAML object, not {type(data).__name__}")
    model_keys = {"architectures", "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size"}
    if len(model_keys & set(data)) >= 3 and not set(data) & {"backend_type", "world_size", "BackendConfig"}:
        raise UsageError(
            f"{str(path)!r} is the model's own config.json (architectures, hidden_size, …), not a generator "
            "model_config: pass the folder as WEIGHTS_DIR and the model_config with -c (e.g. "
            '{"backend_type": "atb", "world_size": 1, "rank": 0, "local_rank": 0, "npu_device_id": 0, '
            '"trust_remote_code": false})'
        )
    bad_key = next((k for k in data if not isinstance(k, str)), None)
    if bad_key is not None or any(not isinstance(k, str) for k in data):
        raise UsageError(f"model_config file {str(path)!r}: key {bad_key!r} is not a string")
    if "BackendConfig" in data:
        from npu_preflight.mindie_service import map_service_config

        return map_service_config(data, path), "mindie-service"
    return data, kind


#: YAML aliases may expand a document at most this far (billion-laughs files expand to gigabytes).
MAX_YAML_NODES = 100_000


def _expanded_size(value: Any, limit: int) -> int:
    """Nodes the value holds once aliases are expanded (stops at ``limit``); raises ValueError on a
    self-referencing structure."""
    count = 0
    stack: list[tuple[Any, frozenset[int]]] = [(value, frozenset())]
    while stack:
        v, path = stack.pop()
        count += 1
        if count > limit:
            return count
        if isinstance(v, (dict, list)):
            if id(v) in path:
                raise ValueError("a YAML alias refers to a node that contains it")
            inner = path | {id(v)}
            children = list(v.keys()) + list(v.values()) if isinstance(v, dict) else v
            stack.extend((c, inner) for c in children)
    return count


def _no_duplicate_keys(node: Any, path: Path) -> None:
    """A YAML mapping that gives a key twice (PyYAML keeps the last silently) is refused by name."""
    import yaml

    stack = [node]
    seen_nodes = 0
    while stack:
        n = stack.pop()
        seen_nodes += 1
        if seen_nodes > MAX_YAML_NODES:
            return
        if isinstance(n, yaml.MappingNode):
            keys: set[str] = set()
            for k, v in n.value:
                if isinstance(k, yaml.ScalarNode):
                    if k.value in keys:
                        raise UsageError(
                            f"model_config file {str(path)!r} gives key {k.value!r} twice (line {k.start_mark.line + 1}); keep one"
                        )
                    keys.add(k.value)
                stack.append(v)
        elif isinstance(n, yaml.SequenceNode):
            stack.extend(n.value)


def _load_yaml(path: Path) -> Any:
    import yaml

    from npu_preflight.formats.jsonload import read_regular

    try:
        raw = read_regular(path, MAX_MODEL_CONFIG_BYTES)
    except JsonLoadError as exc:
        raise UsageError(f"model_config file {str(path)!r} cannot be read: {exc.message}") from None
    try:
        text = raw.decode("utf-8")
        _no_duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader), path)
        data = yaml.safe_load(text)
        if _expanded_size(data, MAX_YAML_NODES) > MAX_YAML_NODES:
            raise UsageError(
                f"model_config file {str(path)!r} expands to more than {MAX_YAML_NODES:,} values (YAML aliases); "
                "write the values out"
            )
        return data
    except UnicodeDecodeError as exc:
        raise UsageError(f"model_config file {str(path)!r} is not UTF-8 (byte {exc.start})") from None
    except ValueError as exc:
        raise UsageError(f"model_config file {str(path)!r}: {exc}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"model_config file {str(path)!r} is not valid YAML: {exc}") from None
    except RecursionError:
        raise UsageError(f"model_config file {str(path)!r} nests too deeply") from None


def parse_set(item: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as JSON, else kept as a string."""
    from npu_preflight.formats.jsonload import loads

    if "=" not in item:
        raise UsageError(f"--set {item!r}: expected KEY=VALUE")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise UsageError(f"--set {item!r}: the key is empty")
    try:
        value = loads(raw.encode("utf-8", "surrogatepass"), max_bytes=1024 * 1024, max_depth=MAX_SET_DEPTH).value
    except JsonLoadError as exc:
        if exc.kind in ("too-deep", "too-large"):
            raise UsageError(f"--set {key}: the value {exc.message}") from None
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


def dumps_compact(value: Any) -> str:
    """A JSON snippet for messages (paste-ready)."""
    return json.dumps(value, ensure_ascii=False)
