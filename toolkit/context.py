"""The read-only context checks run against. Each fact is computed once, lazily, on first use.

A fact that cannot be had raises :class:`~toolkit.errors.Unavailable` with a reason that names the
finding which blocks it; the runner turns that into a ``skipped`` result.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.errors import Unavailable
from toolkit.formats.index import INDEX_NAME, Index, IndexFormatError, read_index
from toolkit.formats.jsonload import JsonLoadError, load_file
from toolkit.formats.lfs import LfsPointer, read_pointer
from toolkit.formats.safetensors import Header, SafetensorsError, TensorInfo, read_header

if TYPE_CHECKING:
    from toolkit.arch import Dims, Family
    from toolkit.catalog import DeviceSpec
    from toolkit.deep import DeepScan
    from toolkit.formats.tokenizer import TokenizerFormatError, TokenizerInfo
    from toolkit.memory import Plan
    from toolkit.probe import ProbeResult
    from toolkit.sandbox import InitOutcome

CONFIG_NAME = "config.json"
MAX_CONFIG_BYTES = 10 * 1024 * 1024
MAX_CONFIG_DEPTH = 32
MAX_LISTING = 20_000
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


@dataclass(frozen=True)
class RunOptions:
    """Everything the user chose on the command line that checks may look at."""

    static: bool = False
    no_init: bool = False
    deep: bool = False
    device: str = "auto"
    target_device: str | None = None
    generator: str = "transformers"
    python: str | None = None
    timeout: float = 600.0
    memory_limit: int | None = None
    trust_remote_code: bool = False
    probe_timeout: float = 120.0
    workers: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form for ``target.options``."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Entry:
    """One directory entry of the weights folder, from lstat (symlinks are not followed)."""

    rel: str
    mode: int
    size: int
    uid: int
    gid: int
    link_target: str | None = None

    @property
    def is_link(self) -> bool:
        """A symbolic link."""
        return stat.S_ISLNK(self.mode)

    @property
    def is_dir(self) -> bool:
        """A directory (not a link to one)."""
        return stat.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        """A regular file (not a link to one)."""
        return stat.S_ISREG(self.mode)

    @property
    def top_level(self) -> bool:
        """Directly inside the weights folder."""
        return "/" not in self.rel


@dataclass(frozen=True)
class EmptyFile:
    """A weight file of zero bytes."""


HeaderOutcome = Header | SafetensorsError | LfsPointer | EmptyFile


@dataclass(frozen=True)
class Located:
    """A tensor and the file that holds it."""

    file: str
    info: TensorInfo


@dataclass
class Listing:
    """The folder's entries, and whether the walk stopped at the size limit."""

    entries: list[Entry] = field(default_factory=list)
    truncated: bool = False
    unreadable: list[str] = field(default_factory=list)

    def get(self, rel: str) -> Entry | None:
        """The entry at ``rel``, if listed."""
        for e in self.entries:
            if e.rel == rel:
                return e
        return None


class Context:
    """Facts about one run: the weights folder, the model_config, the environment, the options."""

    def __init__(
        self,
        weights_dir: Path,
        model_config: Mapping[str, Any] | None = None,
        *,
        model_config_source: str | None = None,
        options: RunOptions | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.weights_dir = weights_dir
        self.model_config = dict(model_config) if model_config is not None else None
        self.model_config_source = model_config_source
        self.options = options or RunOptions()
        self.env: Mapping[str, str] = dict(os.environ if env is None else env)
        self._json_cache: dict[str, dict[str, Any] | TokenizerFormatError | None] = {}

    # -- generic ---------------------------------------------------------------------------

    def availability(self, fact: str) -> str | None:
        """None when ``fact`` can be had, else the reason it cannot."""
        try:
            getattr(self, fact)
        except Unavailable as exc:
            return str(exc)
        return None

    def computed(self, fact: str) -> bool:
        """Whether a cached fact has already been computed (used to fill the report)."""
        return fact in self.__dict__

    def path(self, rel: str) -> Path:
        """Absolute path of a file in the weights folder."""
        return self.weights_dir / rel

    # -- the folder ------------------------------------------------------------------------

    @cached_property
    def listing(self) -> Listing:
        """Every entry below the weights folder (lstat; ``.git`` not descended; bounded)."""
        out = Listing()
        stack = [""]
        while stack:
            rel_dir = stack.pop()
            try:
                with os.scandir(self.weights_dir / rel_dir) as it:
                    items = sorted(it, key=lambda e: e.name)
            except OSError:
                out.unreadable.append(rel_dir or ".")
                continue
            for item in items:
                if len(out.entries) >= MAX_LISTING:
                    out.truncated = True
                    return out
                rel = f"{rel_dir}/{item.name}" if rel_dir else item.name
                try:
                    st = item.stat(follow_symlinks=False)
                except OSError:
                    continue
                target = None
                if stat.S_ISLNK(st.st_mode):
                    try:
                        target = os.readlink(item.path)
                    except OSError:
                        target = None
                out.entries.append(Entry(rel, st.st_mode, st.st_size, st.st_uid, st.st_gid, target))
                if stat.S_ISDIR(st.st_mode) and item.name != ".git":
                    stack.append(rel)
        out.entries.sort(key=lambda e: e.rel)
        return out

    def _top_files(self, suffixes: tuple[str, ...]) -> list[str]:
        """Top-level files (or links to files) whose names end with one of ``suffixes``."""
        out = []
        for e in self.listing.entries:
            if e.top_level and e.rel.endswith(suffixes) and not e.is_dir:
                if e.is_link and not self.path(e.rel).is_file():
                    continue
                out.append(e.rel)
        return out

    @cached_property
    def safetensors_files(self) -> list[str]:
        """Top-level ``*.safetensors`` files."""
        return self._top_files((".safetensors",))

    @cached_property
    def pickle_files(self) -> list[str]:
        """Top-level legacy checkpoint files by name (``.bin``, ``.pt``, …)."""
        return self._top_files(PICKLE_SUFFIXES)

    # -- config.json -----------------------------------------------------------------------

    @cached_property
    def config_load(self) -> dict[str, Any] | JsonLoadError:
        """config.json parsed, or the error that stopped it."""
        path = self.path(CONFIG_NAME)
        if not path.exists():
            return JsonLoadError("missing", "config.json is missing")
        if not path.is_file():
            return JsonLoadError("unreadable", "config.json is not a regular file")
        try:
            loaded = load_file(path, max_bytes=MAX_CONFIG_BYTES, max_depth=MAX_CONFIG_DEPTH)
        except JsonLoadError as exc:
            return exc
        if not isinstance(loaded.value, dict):
            return JsonLoadError("not-object", f"top level is a JSON {type(loaded.value).__name__}")
        return loaded.value

    @property
    def config(self) -> dict[str, Any]:
        """config.json as a dict."""
        value = self.config_load
        if isinstance(value, JsonLoadError):
            raise Unavailable(f"config.json could not be used ({value.message}; see CFG001)")
        return value

    @property
    def text_config(self) -> dict[str, Any]:
        """The language-model part of config.json (``text_config`` for multimodal wrappers)."""
        cfg = self.config
        inner = cfg.get("text_config")
        if isinstance(inner, dict) and "num_hidden_layers" in inner:
            merged = dict(cfg)
            merged.update(inner)
            return merged
        return cfg

    @property
    def declared_dtype(self) -> str | None:
        """``torch_dtype`` from config.json, else transformers 5's ``dtype``; None when neither."""
        try:
            cfg = self.text_config
        except Unavailable:
            return None
        for key in ("torch_dtype", "dtype"):
            v = cfg.get(key)
            if isinstance(v, str):
                return v.removeprefix("torch.")
        return None

    # -- safetensors -----------------------------------------------------------------------

    @cached_property
    def headers(self) -> dict[str, HeaderOutcome]:
        """Every top-level safetensors file read as a header (or why it could not be)."""
        out: dict[str, HeaderOutcome] = {}
        for rel in self.safetensors_files:
            path = self.path(rel)
            try:
                size = path.stat().st_size
            except OSError as exc:
                out[rel] = SafetensorsError("Unreadable", exc.strerror or str(exc))
                continue
            if size == 0:
                out[rel] = EmptyFile()
                continue
            pointer = read_pointer(path)
            if pointer is not None:
                out[rel] = pointer
                continue
            try:
                out[rel] = read_header(path)
            except SafetensorsError as exc:
                out[rel] = exc
        return out

    @cached_property
    def index_load(self) -> Index | IndexFormatError | None:
        """The shard index, its parse error, or None when there is no index."""
        path = self.path(INDEX_NAME)
        if not path.exists():
            return None
        try:
            return read_index(path)
        except IndexFormatError as exc:
            return exc

    @property
    def index(self) -> Index | None:
        """The index, None when absent; unavailable when it does not parse."""
        value = self.index_load
        if isinstance(value, IndexFormatError):
            raise Unavailable(f"{INDEX_NAME} could not be parsed (see WT010)")
        return value

    @cached_property
    def loaded_files(self) -> list[str]:
        """The safetensors files a loader will read: the indexed shards, or every top-level file."""
        idx = self.index_load
        if isinstance(idx, Index):
            return [s for s in idx.shards if s in self.headers]
        return list(self.safetensors_files)

    @cached_property
    def tensors(self) -> dict[str, Located]:
        """Every tensor of the loaded set, by name. Unavailable unless every header parsed."""
        if not self.safetensors_files:
            raise Unavailable("no safetensors weights in the folder (see WT001)")
        idx = self.index
        if idx is not None:
            missing = [s for s in idx.shards if s not in self.headers]
            if missing:
                raise Unavailable(f"shard {missing[0]} listed in the index is missing (see WT011)")
        out: dict[str, Located] = {}
        for rel in self.loaded_files:
            h = self.headers[rel]
            if not isinstance(h, Header):
                raise Unavailable(f"{rel} could not be read as safetensors (see WT002/WT006/WT007)")
            for name, info in h.tensors.items():
                out.setdefault(name, Located(rel, info))
        return out

    @cached_property
    def architecture(self) -> tuple[Family, Dims]:
        """The model family (tensor naming) and its normalised dimensions."""
        from toolkit.arch import dims, family_for

        cfg = self.text_config
        fam = family_for(cfg, set(self.tensors))
        if fam is None:
            raise Unavailable(f"architecture {cfg.get('model_type')!r} is not known (see ARCH007)")
        d = dims(cfg, fam)
        if d is None:
            raise Unavailable("config.json lacks hidden_size, num_hidden_layers or num_attention_heads (see ARCH007)")
        return fam, d

    @cached_property
    def tokenizer_load(self) -> TokenizerInfo | TokenizerFormatError | None:
        """tokenizer.json parsed once (None when absent)."""
        from toolkit.formats.tokenizer import TokenizerFormatError, read_tokenizer_json

        path = self.path("tokenizer.json")
        if not path.is_file():
            return None
        try:
            return read_tokenizer_json(path)
        except TokenizerFormatError as exc:
            return exc

    @property
    def tokenizer(self) -> TokenizerInfo:
        """tokenizer.json's vocabulary."""
        from toolkit.formats.tokenizer import TokenizerFormatError

        value = self.tokenizer_load
        if value is None:
            raise Unavailable("there is no tokenizer.json (see TOK001)")
        if isinstance(value, TokenizerFormatError):
            raise Unavailable(f"tokenizer.json could not be read ({value}; see TOK002)")
        return value

    def json_load(self, rel: str) -> dict[str, Any] | TokenizerFormatError | None:
        """A small JSON object file of the folder, parsed once per run: the object, why it is not
        one, or None when the file is absent."""
        if rel not in self._json_cache:
            from toolkit.formats.tokenizer import TokenizerFormatError, read_json_object

            path = self.path(rel)
            value: dict[str, Any] | TokenizerFormatError | None = None
            if path.is_file():
                try:
                    value = read_json_object(path)
                except TokenizerFormatError as exc:
                    value = exc
            self._json_cache[rel] = value
        return self._json_cache[rel]

    def json_object(self, rel: str) -> dict[str, Any]:
        """A small JSON object file of the folder; unavailable when absent or malformed."""
        value = self.json_load(rel)
        if value is None:
            raise Unavailable(f"there is no {rel}")
        if not isinstance(value, dict):
            raise Unavailable(f"{rel} could not be read ({value})")
        return value

    @property
    def trust_remote_code(self) -> bool:
        """Whether code from the folder may run: ``--trust-remote-code`` or model_config's flag."""
        return self.options.trust_remote_code or self.model_config_coerced.get("trust_remote_code") is True

    # -- later phases (imported lazily so the static phase stays light) --------------------

    @cached_property
    def model_config_coerced(self) -> dict[str, Any]:
        """The model_config as MindIE reads it (numeric and boolean strings converted); ``{}`` when
        none was given."""
        from toolkit.mconfig import coerce

        return coerce(self.model_config or {})

    @cached_property
    def model_config_effective(self) -> dict[str, Any]:
        """The model_config with schema defaults filled in; unavailable when none was given."""
        if self.model_config is None:
            raise Unavailable("no model_config given (use --model-config or --set)")
        from toolkit.mconfig import with_defaults

        return with_defaults(self.model_config_coerced)

    @cached_property
    def world_size(self) -> int:
        """Tensor-parallel degree from the model_config."""
        ws = self.model_config_effective.get("world_size")
        if isinstance(ws, bool) or not isinstance(ws, int) or ws < 1:
            raise Unavailable("model_config.world_size is not a positive integer (see MC001)")
        return ws

    @cached_property
    def probe(self) -> ProbeResult:
        """The environment probe, run once in a subprocess."""
        if self.options.static:
            raise Unavailable("--static: the environment probe does not run")
        from toolkit.probe import run_probe

        tok = self.path("tokenizer.json")
        return run_probe(self.options, self.env, tok if tok.is_file() else None)

    @cached_property
    def target(self) -> DeviceSpec:
        """The device to plan for: ``--target-device``, else the probed device."""
        from toolkit.catalog import resolve_target

        return resolve_target(self)

    @cached_property
    def plan(self) -> Plan:
        """The per-rank memory plan."""
        from toolkit.memory import make_plan

        return make_plan(self)

    @cached_property
    def init_outcome(self) -> InitOutcome:
        """The sandboxed generator init (runs on first use)."""
        from toolkit.sandbox import run_init

        return run_init(self)

    @cached_property
    def deep_scan(self) -> DeepScan:
        """Every tensor byte hashed and scanned."""
        if not self.options.deep:
            raise Unavailable("the deep scan runs only with --deep")
        from toolkit.deep import scan_folder

        return scan_folder(self)
