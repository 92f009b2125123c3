"""The read-only context checks run against, and the one place where facts are wired together.

Each fact is computed once, lazily, on first use, and its outcome is cached whatever it is:

* a value;
* :class:`~npu_preflight.errors.Unavailable` — the fact cannot be had (no model_config, a file that
  did not parse); its reason names the blocking finding and checks that need it are ``skipped``;
* any other exception — cached as a failure and re-raised as
  :class:`~npu_preflight.errors.FactError` (with the original traceback) to every check that needs
  it, which the runner records as ``errored``.

Subsystems (memory plan, device resolution, deep scan, probe, sandbox) are functions of plain typed
inputs; this module builds those inputs from the facts.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

from npu_preflight.errors import FactError, Interrupted, Unavailable
from npu_preflight.formats.index import INDEX_NAME, Index, IndexFormatError, read_index
from npu_preflight.formats.jsonload import JsonLoadError, load_file
from npu_preflight.formats.lfs import LfsPointer, read_pointer
from npu_preflight.formats.safetensors import Header, SafetensorsError, TensorInfo, read_header
from npu_preflight.mconfig import ModelConfig
from npu_preflight.model import CheckSpec, DeviceChoice, FactName
from npu_preflight.records import frozen

if TYPE_CHECKING:
    from npu_preflight.arch import Dims, Family
    from npu_preflight.catalog import DeviceSpec
    from npu_preflight.chat import RenderBatch, RenderResult
    from npu_preflight.deep import DeepScan
    from npu_preflight.formats.pickle_scan import ScanResult
    from npu_preflight.formats.spm import VocabFile
    from npu_preflight.formats.tokenizer import TokenizerFormatError, TokenizerInfo
    from npu_preflight.memory import Plan
    from npu_preflight.probe import ProbeResult
    from npu_preflight.proc import Containment
    from npu_preflight.quant import Quantization
    from npu_preflight.sandbox import InitOutcome, InitRequest, WarmInit

CONFIG_NAME = "config.json"
MAX_CONFIG_BYTES = 10 * 1024 * 1024
MAX_CONFIG_DEPTH = 32
#: Entries listed at most. Real folders (an HF cache snapshot with thousands of small files; .git is
#: never descended) stay far below; reaching it is a finding (WT019), never a silent cut.
MAX_LISTING = 100_000
#: Largest chat_template.jinja read.
MAX_TEMPLATE_BYTES = 1024 * 1024
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")  # legacy checkpoint names (WT001, WT018)
MAX_RANK_TABLE_BYTES = 10 * 1024 * 1024

T = TypeVar("T")
Backend = Literal["mindie-atb", "mindie-other", "generic", "unknown"]


@frozen
class EffectiveConfig:
    """config.json's language-model part completed with its family's defaults."""

    values: dict[str, Any]
    defaulted: frozenset[str]


@frozen
class RunOptions:
    """Everything the user chose on the command line that checks may look at."""

    static: bool = False
    no_init: bool = False
    deep: bool = False
    device: DeviceChoice = "auto"
    target_device: str | None = None
    generator: str = "transformers"
    python: str | None = None
    timeout: float = 600.0
    memory_limit: int | None = None
    trust_remote_code: bool = False
    planning: bool = False  # the ``plan`` command: a partial model_config is a question, not a fault
    ranks: str = "all"  # "all": world_size ranks under torch.distributed.run; "0": one process
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None
    policy_file: str | None = None  # the .npu-preflight.toml / pyproject.toml the settings came from
    model_config_path: str | None = None  # the model_config file (findings on its keys point into it)
    full_config: bool = False  # check-config: no probe, yet missing deployment keys are errors
    probe_timeout: float = 120.0
    workers: int | None = None
    containment: Containment = "auto"

    def to_dict(self) -> dict[str, Any]:
        """JSON form for ``target.options``."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@frozen
class Progress:
    """Callbacks the app hands down for progress display (all optional; none of them may raise)."""

    on_check: Callable[[CheckSpec], None] | None = None
    on_init_event: Callable[[Mapping[str, Any]], None] | None = None
    #: ``on_deep(total_bytes, files)`` returns the per-chunk update ``(bytes, files_done)``.
    on_deep: Callable[[int, int], Callable[[int, int], None]] | None = None


@frozen
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


@frozen
class EmptyFile:
    """A weight file of zero bytes."""


@frozen
class NotRegular:
    """A weight-file name that is not a regular file (a FIFO, a device, a socket)."""

    kind: str


HeaderOutcome = Header | SafetensorsError | LfsPointer | EmptyFile | NotRegular


@frozen
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
    _by_rel: dict[str, Entry] = field(default_factory=dict, repr=False)

    def get(self, rel: str) -> Entry | None:
        """The entry at ``rel``, if listed."""
        if len(self._by_rel) != len(self.entries):
            self._by_rel = {e.rel: e for e in self.entries}
        return self._by_rel.get(rel)


@frozen
class _Unavailable:
    reason: str


@frozen
class _Failed:
    fact: str
    trace: str


class fact(Generic[T]):
    """A lazily computed, cached fact whose failure is cached too (see the module docstring)."""

    def __init__(self, func: Callable[[Any], T]) -> None:
        self.func = func
        self.name = func.__name__
        self.__doc__ = func.__doc__

    @overload
    def __get__(self, obj: None, owner: type) -> fact[T]: ...

    @overload
    def __get__(self, obj: object, owner: type) -> T: ...

    def __get__(self, obj: Any, owner: type) -> Any:
        if obj is None:
            return self
        cache: dict[str, Any] = obj._facts
        if self.name in cache:
            state = cache[self.name]
        else:
            try:
                state = self.func(obj)
            except Interrupted as exc:  # stopped mid-way: keep what it came to, then stop the run
                cache[self.name] = exc.value
                raise
            except Unavailable as exc:
                state = _Unavailable(str(exc))
            except FactError as exc:  # a fact this one needs failed: carry the original
                state = _Failed(exc.fact, exc.trace)
            except Exception:  # noqa: BLE001 - cached as a value: the checks that need it are errored
                import traceback

                state = _Failed(self.name, traceback.format_exc(limit=12))
            cache[self.name] = state
        if isinstance(state, _Unavailable):
            raise Unavailable(state.reason)
        if isinstance(state, _Failed):
            raise FactError(state.fact, state.trace)
        return state


class Context:
    """Facts about one run: the weights folder, the model_config, the environment, the options."""

    def __init__(
        self,
        weights_dir: Path,
        model_config: ModelConfig | Mapping[str, Any] | None = None,
        *,
        model_config_source: str | None = None,
        options: RunOptions | None = None,
        env: Mapping[str, str] | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.weights_dir = weights_dir
        if model_config is not None and not isinstance(model_config, ModelConfig):
            model_config = ModelConfig.from_mapping(model_config, model_config_source)
        self.model_config: ModelConfig | None = model_config
        self.options = options or RunOptions()
        self.env: Mapping[str, str] = dict(os.environ if env is None else env)
        self.progress = progress or Progress()
        self._facts: dict[str, Any] = {}
        self._json_cache: dict[str, dict[str, Any] | TokenizerFormatError | None] = {}
        self._pending_renders: RenderBatch | None = None
        self._warm: WarmInit | None = None

    # -- generic ---------------------------------------------------------------------------

    def availability(self, name: FactName) -> str | None:
        """None when the fact can be had, else the reason it cannot. A fact that *failed* raises
        :class:`FactError`: the caller cannot vouch for anything built on it."""
        try:
            getattr(self, name)
        except Unavailable as exc:
            return str(exc)
        return None

    def state(self, name: FactName) -> tuple[str, Any]:
        """``("absent", None)`` if never computed, ``("value", v)``, ``("unavailable", reason)`` or
        ``("failed", traceback)`` — without computing anything (the runner fills the report from it)."""
        if name not in self._facts:
            return "absent", None
        s = self._facts[name]
        if isinstance(s, _Unavailable):
            return "unavailable", s.reason
        if isinstance(s, _Failed):
            return "failed", f"fact {s.fact!r} failed:\n{s.trace}"
        return "value", s

    def path(self, rel: str) -> Path:
        """Absolute path of a file in the weights folder."""
        return self.weights_dir / rel

    @property
    def mc(self) -> ModelConfig:
        """The model_config; unavailable when none was given."""
        if self.model_config is None:
            raise Unavailable("no model_config given (use --model-config or --set)")
        return self.model_config

    # -- the folder ------------------------------------------------------------------------

    @fact
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
                    out.entries.sort(key=lambda e: e.rel)
                    return out
                rel = f"{rel_dir}/{item.name}" if rel_dir else item.name
                try:
                    st = item.stat(follow_symlinks=False)
                except OSError:
                    out.unreadable.append(rel)
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
        """Top-level non-directory entries (links to files included) whose names end with ``suffixes``."""
        out = []
        for e in self.listing.entries:
            if e.top_level and e.rel.endswith(suffixes) and not e.is_dir:
                if e.is_link and not self.path(e.rel).is_file():
                    continue
                out.append(e.rel)
        return out

    @fact
    def safetensors_files(self) -> list[str]:
        """Top-level ``*.safetensors`` entries."""
        return self._top_files((".safetensors",))

    @fact
    def pickle_files(self) -> list[str]:
        """Top-level legacy checkpoint files by name (``.bin``, ``.pt``, …)."""
        return self._top_files(PICKLE_SUFFIXES)

    # -- config.json -----------------------------------------------------------------------

    @fact
    def config_load(self) -> dict[str, Any] | JsonLoadError:
        """config.json parsed, or the error that stopped it."""
        path = self.path(CONFIG_NAME)
        if not os.path.lexists(path):
            return JsonLoadError("missing", "config.json is missing")
        try:
            loaded = load_file(path, max_bytes=MAX_CONFIG_BYTES, max_depth=MAX_CONFIG_DEPTH)
        except JsonLoadError as exc:
            return exc
        if not isinstance(loaded.value, dict):
            return JsonLoadError("not-object", f"top level is a JSON {type(loaded.value).__name__}")
        return loaded.value

    @fact
    def config(self) -> dict[str, Any]:
        """config.json as a dict."""
        value = self.config_load
        if isinstance(value, JsonLoadError):
            raise Unavailable(f"config.json could not be used ({value.message}; see CFG001)")
        return value

    @fact
    def text_config(self) -> dict[str, Any]:
        """The language-model part of config.json (``text_config`` for multimodal wrappers)."""
        cfg = self.config
        inner = cfg.get("text_config")
        if isinstance(inner, dict) and ("num_hidden_layers" in inner or isinstance(inner.get("model_type"), str)):
            merged = dict(cfg)
            merged.update(inner)
            return merged
        return cfg

    @fact
    def effective_config(self) -> EffectiveConfig:
        """The language-model config as its family reads it: config.json completed with the family's
        constant defaults from the installed transformers' table (gemma2 ties its embeddings unless
        told otherwise)."""
        from npu_preflight.knowledge import with_defaults

        values, defaulted = with_defaults(self.text_config)
        return EffectiveConfig(values, defaulted)

    @property
    def planning(self) -> bool:
        """Planning mode (``--static`` or ``plan``): missing deployment keys are a note, not a fault."""
        if self.options.full_config:
            return False
        return self.options.static or self.options.planning

    @property
    def backend(self) -> Backend:
        """Which runtime's rules apply: MindIE's ATB models when the model_config says
        ``backend_type`` atb (or the mindie generator runs without one); ``generic`` (transformers
        or a vLLM-style tensor-parallel server) when a model_config names no backend_type; and
        ``unknown`` with no model_config at all, where MindIE's own file rules still apply — the
        deployment this tool prepares for."""
        if self.model_config is None:
            return "mindie-atb" if self.options.generator == "mindie" else "unknown"
        bt = self.model_config.backend_type
        if bt == "atb" or (bt is None and self.options.generator == "mindie"):
            return "mindie-atb"
        if bt in ("ms", "torch"):
            return "mindie-other"
        return "generic"

    @property
    def mindie_rules(self) -> bool:
        """MindIE's rules (torch_dtype, required keys …) apply: a MindIE backend, or none named."""
        return self.backend != "generic"

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

    @fact
    def headers(self) -> dict[str, HeaderOutcome]:
        """Every top-level safetensors file read as a header (or why it could not be)."""
        out: dict[str, HeaderOutcome] = {}
        for rel in self.safetensors_files:
            path = self.path(rel)
            try:
                st = os.stat(path)
            except OSError as exc:
                out[rel] = SafetensorsError("Unreadable", exc.strerror or str(exc))
                continue
            if not stat.S_ISREG(st.st_mode):
                from npu_preflight.formats.files import file_kind

                out[rel] = NotRegular(file_kind(st.st_mode))
                continue
            if st.st_size == 0:
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

    @fact
    def index_load(self) -> Index | IndexFormatError | None:
        """The shard index, its parse error, or None when there is no index."""
        path = self.path(INDEX_NAME)
        if not os.path.lexists(path):
            return None
        try:
            return read_index(path)
        except IndexFormatError as exc:
            return exc

    @fact
    def index(self) -> Index | None:
        """The index, None when absent; unavailable when it does not parse."""
        value = self.index_load
        if isinstance(value, IndexFormatError):
            raise Unavailable(f"{INDEX_NAME} could not be parsed (see WT010)")
        return value

    @fact
    def loaded_files(self) -> list[str]:
        """The safetensors files a loader will read: the indexed shards, or every top-level file."""
        idx = self.index_load
        if isinstance(idx, Index):
            return [s for s in idx.shards if s in self.headers]
        return list(self.safetensors_files)

    @fact
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

    @fact
    def architecture(self) -> tuple[Family, Dims]:
        """The model family (tensor naming) and its normalised dimensions."""
        from npu_preflight.arch import dims, family_for

        eff = self.effective_config
        cfg = eff.values
        fam = family_for(cfg, frozenset(self.tensors))
        if fam is None:
            raise Unavailable(f"architecture {cfg.get('model_type')!r} is not known (see ARCH007)")
        d = dims(cfg, fam, eff.defaulted)
        if d is None:
            raise Unavailable("config.json lacks hidden_size, num_hidden_layers or num_attention_heads (see ARCH007)")
        return fam, d

    @fact
    def quantization(self) -> Quantization:
        """The weights' quantisation scheme (FP8, W8A8, GPTQ …), from the tensors and config.json."""
        from npu_preflight.quant import detect

        cfg = self.text_config if self.availability("config") is None else {}
        return detect({name: loc.info for name, loc in self.tensors.items()}, cfg)

    @fact
    def tokenizer_load(self) -> TokenizerInfo | TokenizerFormatError | None:
        """tokenizer.json parsed once (None when absent)."""
        from npu_preflight import readahead
        from npu_preflight.formats.tokenizer import TokenizerFormatError, read_tokenizer_json

        path = self.path("tokenizer.json")
        if not os.path.lexists(path):
            readahead.discard()
            return None
        try:
            claimed = readahead.claim(path)  # read by a child while the program started, if it was
            return claimed if claimed is not None else read_tokenizer_json(path)
        except TokenizerFormatError as exc:
            return exc

    @fact
    def tokenizer(self) -> TokenizerInfo:
        """tokenizer.json's vocabulary."""
        from npu_preflight.formats.tokenizer import TokenizerFormatError

        value = self.tokenizer_load
        if value is None:
            raise Unavailable("there is no tokenizer.json (see TOK001)")
        if isinstance(value, TokenizerFormatError):
            raise Unavailable(f"tokenizer.json could not be read ({value}; see TOK002)")
        return value

    @property
    def chat_templates(self) -> dict[str, str]:
        """Chat templates by name, from tokenizer_config.json, chat_template.jinja or chat_template.json."""
        out: dict[str, str] = {}
        try:
            tc = self.json_object("tokenizer_config.json")
        except Unavailable:
            tc = {}
        t = tc.get("chat_template")
        if isinstance(t, str):
            out["default"] = t
        elif isinstance(t, list):
            for item in t:
                if isinstance(item, dict) and isinstance(item.get("template"), str):
                    out[str(item.get("name", "default"))] = item["template"]
        from npu_preflight.formats.files import FileReadError, read_regular

        try:
            raw = read_regular(self.path("chat_template.jinja"), MAX_TEMPLATE_BYTES)
            out.setdefault("default", raw.decode("utf-8", errors="replace"))
        except FileReadError:
            pass
        try:
            cj = self.json_object("chat_template.json")
            if isinstance(cj.get("chat_template"), str):
                out.setdefault("default", cj["chat_template"])
        except Unavailable:
            pass
        return out

    @fact
    def chat_renders(self) -> dict[str, RenderResult]:
        """Each chat template rendered in its limited child (empty when there is none). The children
        are started by :meth:`prefetch` when the run begins, so they render while the rest of the
        folder is read; this waits for them."""
        if self._pending_renders is None:
            self._start_renders()
        batch, self._pending_renders = self._pending_renders, None
        return batch.collect() if batch is not None else {}

    def _start_renders(self) -> None:
        from npu_preflight.chat import start_renders
        from npu_preflight.formats.tokenizer import special_token_texts

        templates = self.chat_templates
        tokens: dict[str, str | None] = {}
        try:
            tokens = special_token_texts(self.json_object("tokenizer_config.json"))
        except Unavailable:
            pass
        self._pending_renders = start_renders(templates, tokens)

    def prefetch(self, needed: set[str]) -> None:
        """Start, in the background, the facts among ``needed`` that run in child processes and
        need nothing the checks compute: the chat template renders, and the one-process init's
        process (which probes first). Never raises: a failure here is met again, and reported,
        when the fact is asked for."""
        if "chat_renders" in needed and self._pending_renders is None and "chat_renders" not in self._facts:
            try:
                self._start_renders()
            except Exception:  # noqa: BLE001 - the fact itself reports it
                self._pending_renders = None
        if "init_outcome" in needed and self._warm is None and "probe" not in self._facts:
            try:
                self._start_warm_init()
            except Exception:  # noqa: BLE001 - the probe and the init then run on their own
                self._warm = None

    def _start_warm_init(self) -> None:
        """Start the init's process now, probing first (see :class:`~npu_preflight.sandbox.WarmInit`),
        when the run will ask for a one-process init."""
        opts = self.options
        if opts.static or opts.no_init:
            return
        ws = self.model_config.world_size if self.model_config is not None else None
        if ws is not None and ws > 1 and opts.ranks != "0":
            return  # ranks are started by torch.distributed.run, each importing torch anyway
        from npu_preflight.sandbox import WarmInit

        tok = self.path("tokenizer.json")
        self._warm = WarmInit(
            python=opts.python,
            env=self.env,
            memory_limit=opts.memory_limit,
            containment=opts.containment,
            weights_dir=self.weights_dir,
            tokenizer_json=tok if os.path.isfile(tok) else None,
            probe_timeout=opts.probe_timeout,
        )

    def close(self) -> None:
        """Kill and reap whatever :meth:`prefetch` started and nothing collected."""
        batch, self._pending_renders = self._pending_renders, None
        if batch is not None:
            batch.cancel()
        warm, self._warm = self._warm, None
        if warm is not None:
            warm.close()

    @fact
    def vocab_file(self) -> tuple[str, VocabFile]:
        """A vocabulary file other than tokenizer.json (sentencepiece ``tokenizer.model``, a tiktoken
        file): its name and id count; unavailable when there is none or it does not parse."""
        names = ["tokenizer.model", *sorted(e.rel for e in self.listing.entries if e.rel.endswith(".tiktoken"))]
        for rel in names:
            path = self.path(rel)
            if not os.path.isfile(path):
                continue
            from npu_preflight.formats.spm import VocabFormatError, read_vocab

            try:
                return rel, read_vocab(path)
            except VocabFormatError as exc:
                raise Unavailable(f"{rel} is neither a sentencepiece model nor a tiktoken file ({exc})") from None
        raise Unavailable("no tokenizer.json, tokenizer.model or *.tiktoken vocabulary (see TOK001)")

    def json_load(self, rel: str) -> dict[str, Any] | TokenizerFormatError | None:
        """A small JSON object file of the folder, parsed once per run: the object, why it is not
        one, or None when the file is absent."""
        if rel not in self._json_cache:
            from npu_preflight.formats.tokenizer import TokenizerFormatError, read_json_object

            path = self.path(rel)
            value: dict[str, Any] | TokenizerFormatError | None = None
            if os.path.lexists(path):
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

    @fact
    def pickle_scans(self) -> dict[str, ScanResult]:
        """Every file a loader could unpickle, scanned at opcode level (never unpickled)."""
        from npu_preflight.formats.pickle_sniff import is_candidate, select

        named = set(self.pickle_index_files)
        files = select(
            (self.path(e.rel), e.rel, is_candidate(e.rel) or e.rel in named) for e in self.listing.entries if e.is_file
        )
        if not files:
            return {}
        from npu_preflight.formats.pickle_scan import scan_candidates

        return scan_candidates(files)

    @property
    def pickle_index_files(self) -> list[str]:
        """Files ``pytorch_model.bin.index.json`` sends ``torch.load`` to, whatever their names."""
        doc = self.json_load("pytorch_model.bin.index.json")
        wm = doc.get("weight_map") if isinstance(doc, dict) else None
        if not isinstance(wm, dict):
            return []
        return sorted({v for v in wm.values() if isinstance(v, str) and "/" not in v and v not in ("", ".", "..")})

    @property
    def trust_remote_code(self) -> bool:
        """Whether code from the folder may run: ``--trust-remote-code`` or model_config's flag."""
        return self.options.trust_remote_code or (self.model_config is not None and self.model_config.trust_remote_code)

    # -- the model_config and the environment ----------------------------------------------

    @fact
    def world_size(self) -> int:
        """Tensor-parallel degree from the model_config."""
        ws = self.mc.world_size
        if ws is None:
            raise Unavailable("model_config.world_size is not a valid positive integer (see MC001)")
        return ws

    @fact
    def rank_table(self) -> dict[str, Any] | None:
        """The parsed ``RANK_TABLE_FILE``, None when unset; unavailable (with why) when unusable."""
        raw = self.env.get("RANK_TABLE_FILE")
        if not raw:
            return None
        try:
            doc = load_file(Path(raw), max_bytes=MAX_RANK_TABLE_BYTES, max_depth=16).value
        except JsonLoadError as exc:
            raise Unavailable(f"RANK_TABLE_FILE {raw!r} cannot be used: {exc.message}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("server_list"), list):
            raise Unavailable(f"RANK_TABLE_FILE {raw!r} has no server_list")
        return doc

    @fact
    def probe(self) -> ProbeResult:
        """The environment probe, run once in a subprocess."""
        if self.options.static:
            raise Unavailable("--static: the environment probe does not run")
        from npu_preflight.probe import run_probe

        if self._warm is not None:
            found = self._warm.probe()
            if found is not None:
                return found
            warm, self._warm = self._warm, None
            warm.close()
        tok = self.path("tokenizer.json")
        return run_probe(
            self.options.python,
            self.env,
            self.options.probe_timeout,
            tok if os.path.isfile(tok) else None,
        )

    @fact
    def target(self) -> DeviceSpec:
        """The device to plan for: ``--target-device``, else the probed device."""
        from npu_preflight.catalog import resolve_target

        opts = self.options
        probe: ProbeResult | None = None
        why = None
        if not opts.target_device:
            why = self.availability("probe")
            probe = self.probe if why is None else None
        dev_id = self.model_config.integer("npu_device_id") if self.model_config is not None else None
        return resolve_target(
            target_device=opts.target_device,
            probe=probe,
            probe_unavailable=why,
            device=opts.device,
            npu_device_id=dev_id,
            memory_limit=opts.memory_limit,
        )

    @fact
    def plan(self) -> Plan:
        """The per-rank memory plan."""
        return self._make_plan(self.model_config)

    def _make_plan(self, mc: ModelConfig | None) -> Plan:
        from npu_preflight.memory import PlanInputs, make_plan

        device: DeviceSpec | None = None
        device_note = self.availability("target")
        if device_note is None:
            device = self.target
        arch = self.architecture if self.availability("architecture") is None else None
        probe = self.probe if device is not None and self.availability("probe") is None else None
        host = probe.host if probe is not None else {}
        cfg = self.text_config
        mpe = next(
            (v for k in ("max_position_embeddings", "seq_length", "model_max_length") if _pos_int(v := cfg.get(k))),
            None,
        )
        shards = [h.file_size for rel in self.loaded_files if isinstance(h := self.headers.get(rel), Header)]
        return make_plan(
            PlanInputs(
                tensors={name: loc.info for name, loc in self.tensors.items()},
                load_dtype=self.declared_dtype,
                shard_sizes=tuple(shards),
                arch=arch,
                max_positions=mpe,
                model_config=mc,
                device=device,
                device_note=device_note,
                npu_memory_fraction=self.env.get("NPU_MEMORY_FRACTION"),
                runtime_rss=_pos_int_or_none(host.get("runtime_rss_bytes")),
                host_available=_pos_int_or_none(host.get("memavailable_bytes")),
                quant=self.quantization,
            )
        )

    @fact
    def init_outcome(self) -> InitOutcome:
        """The sandboxed generator init (runs on first use)."""
        from npu_preflight.sandbox import run_init

        req = self.init_request()
        warm, self._warm = self._warm, None
        if warm is not None:
            try:
                outcome = warm.run(req)
            finally:
                warm.close()
            if outcome is not None:
                return outcome
        return run_init(req)

    def init_request(self) -> InitRequest:
        """What the sandboxed init is asked to do, from the options, the model_config and the plan:
        ``world_size`` ranks under torch.distributed.run, or one process (``--ranks 0``, or a family
        transformers has no tensor-parallel plan for) planned for the whole model."""
        from npu_preflight.generators import BUILTIN
        from npu_preflight.knowledge import has_tp_plan
        from npu_preflight.sandbox import InitRequest, choose_device

        opts = self.options
        gen = opts.generator
        if gen not in BUILTIN and ":" not in gen:
            raise Unavailable(f"--generator {gen!r} is neither {', '.join(BUILTIN)} nor package.module:factory")
        if not self.declared_dtype:
            raise Unavailable("config.json declares no dtype (see CFG002)")
        probe = self.probe if self.availability("probe") is None else None
        device = choose_device(opts.device, probe)
        ws = (self.model_config.world_size if self.model_config is not None else None) or 1
        ranks, note = ws, None
        if ws > 1 and opts.ranks == "0":
            ranks, note = 1, f"--ranks 0: one process loaded the whole model instead of {ws} ranks"
        elif ws > 1 and gen == "transformers":
            mt = self.effective_config.values.get("model_type") if self.availability("config") is None else None
            if not (isinstance(mt, str) and has_tp_plan(mt)):
                ranks = 1
                note = (
                    f"transformers has no tensor-parallel plan for model_type {mt!r}: the init ran the whole model "
                    f"in one process, not {ws} ranks (planned for that)"
                )
        if ranks > 1 and ranks % opts.nnodes:
            raise Unavailable(f"world_size {ranks} does not split evenly over --nnodes {opts.nnodes}")
        if ranks == ws:
            plan = self.plan
        else:
            assert self.model_config is not None
            plan = self._make_plan(ModelConfig.from_mapping({**self.model_config.raw, "world_size": 1}, None))
        mc = self.model_config.for_generator() if self.model_config is not None else {}
        return InitRequest(
            weights_dir=self.weights_dir,
            model_config=mc,
            device=device,
            dtype=self.declared_dtype,
            generator=gen,
            python=opts.python,
            timeout=opts.timeout,
            memory_limit=opts.memory_limit,
            trust_remote_code=self.trust_remote_code,
            kv=plan.kv_request(),
            weights_bytes=plan.weights_bytes,
            env=self.env,
            extra_sys_path=(str(Path.cwd()),),
            on_event=self.progress.on_init_event,
            containment=self.options.containment,
            world_size=ranks,
            nnodes=opts.nnodes if ranks > 1 else 1,
            node_rank=opts.node_rank if ranks > 1 else 0,
            rdzv_endpoint=opts.rdzv_endpoint if ranks > 1 else None,
            visible_devices=_visible(self.env, device),
            predicted_peak_bytes=plan.predicted_peak_bytes,
            note=note,
        )

    @fact
    def deep_scan(self) -> DeepScan:
        """Every tensor byte hashed and scanned."""
        if not self.options.deep:
            raise Unavailable("the deep scan runs only with --deep")
        from npu_preflight.deep import scan_paths

        items: list[tuple[Path, str, Header | None]] = []
        total = 0
        for e in self.listing.entries:
            if not e.is_file or e.rel.startswith((".cache/", ".git/")):
                continue
            h = self.headers.get(e.rel)
            items.append((self.path(e.rel), e.rel, h if isinstance(h, Header) and not h.layout_problems() else None))
            total += e.size
        on_deep = self.progress.on_deep
        return scan_paths(items, self.options.workers, on_deep(total, len(items)) if on_deep else None)


def _visible(env: Mapping[str, str], device: str) -> tuple[int, ...]:
    """The visible device ids (ASCEND_RT_VISIBLE_DEVICES / CUDA_VISIBLE_DEVICES), () when unset or unusable."""
    raw = env.get("ASCEND_RT_VISIBLE_DEVICES" if device == "npu" else "CUDA_VISIBLE_DEVICES", "")
    try:
        ids = tuple(int(x) for x in raw.split(",") if x.strip())
    except ValueError:
        return ()
    return ids if all(0 <= i < 1 << 20 for i in ids) else ()


def _pos_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _pos_int_or_none(v: Any) -> int | None:
    return int(v) if _pos_int(v) else None
