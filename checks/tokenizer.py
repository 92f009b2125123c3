"""TOK: the tokenizer and generation config — present, readable, and consistent with the model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from npu_preflight.context import Context
from npu_preflight.errors import Unavailable
from npu_preflight.formats.tokenizer import TokenizerFormatError, special_token_texts
from npu_preflight.model import Hit, Location, Phase, Severity
from npu_preflight.registry import check

MAX_TEMPLATE_BYTES = 1024 * 1024
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "qwen.tiktoken",
    "tokenizer.tiktoken",
    "ice_text.model",
    "spiece.model",
)


@check(
    "TOK001",
    "tokenizer files are present",
    Severity.ERROR,
    backend="any",
    source="transformers AutoTokenizer; MindIE router tokenizer loading (atb_llm/models/base/router.py)",
)
def tokenizer_present(ctx: Context) -> Iterator[Hit]:
    """The generator loads the tokenizer with the weights (``model_wrapper.tokenizer``); without
    tokenizer files the init fails after the weights are loaded.

    Bad: a folder with weights and config.json only.
    Good: ``tokenizer.json`` (or ``tokenizer.model``, or ``vocab.json`` + ``merges.txt``) and ``tokenizer_config.json``.
    Fix: copy the tokenizer files from the model's release.
    """
    present = [f for f in TOKENIZER_FILES if ctx.path(f).is_file()]
    if not present:
        yield Hit(
            "no tokenizer files (tokenizer.json, tokenizer.model, vocab.json, …): the generator cannot load a tokenizer",
            "Copy the tokenizer files from the model's release.",
            Location(file="tokenizer.json"),
        )
    elif "vocab.json" in present and "tokenizer.json" not in present and not ctx.path("merges.txt").is_file():
        yield Hit(
            "vocab.json without merges.txt: a BPE tokenizer needs both",
            "Copy merges.txt from the release.",
            Location(file="merges.txt"),
        )
    if not ctx.path("tokenizer_config.json").is_file():
        yield Hit(
            "tokenizer_config.json is missing: special tokens and the tokenizer class fall back to defaults",
            "Copy tokenizer_config.json from the model's release.",
            Location(file="tokenizer_config.json"),
            severity=Severity.WARNING,
        )


@check(
    "TOK002",
    "tokenizer.json and tokenizer_config.json parse",
    Severity.ERROR,
    backend="any",
    source="tokenizers Tokenizer.from_file; transformers tokenizer_config.json",
)
def tokenizer_readable(ctx: Context) -> Iterator[Hit]:
    """A tokenizer.json that is not valid JSON, or has no ``model.vocab``, fails the tokenizer load;
    so does a malformed tokenizer_config.json.

    Bad: a tokenizer.json truncated by an interrupted download.
    Good: ``{"model": {"type": "BPE", "vocab": {...}, "merges": [...]}, "added_tokens": [...]}``.
    Fix: download the file again.
    """
    loaded = ctx.tokenizer_load
    if isinstance(loaded, TokenizerFormatError):
        yield Hit(
            f"tokenizer.json cannot be used: {loaded}",
            "Download tokenizer.json again.",
            Location(file="tokenizer.json"),
        )
    for rel in ("tokenizer_config.json", "special_tokens_map.json"):
        value = ctx.json_load(rel)
        if isinstance(value, TokenizerFormatError):
            yield Hit(f"{rel} cannot be used: {value}", f"Download {rel} again.", Location(file=rel))


def _added_max(ctx: Context) -> int:
    """The largest id tokenizer_config.json's added_tokens_decoder adds (-1 when none)."""
    tc = ctx.json_load("tokenizer_config.json")
    dec = tc.get("added_tokens_decoder") if isinstance(tc, dict) else None
    best = -1
    if isinstance(dec, dict):
        for k in dec:
            if isinstance(k, str) and k.isdigit() and len(k) <= 12:
                best = max(best, int(k))
    return best


@check(
    "TOK003",
    "tokenizer ids fit the embedding",
    Severity.ERROR,
    requires=("architecture",),
    backend="any",
    source="the embedding lookup of every runtime (an id ≥ rows is an out-of-range gather); sentencepiece "
    "ModelProto / tiktoken formats",
)
def vocab_fits_embedding(ctx: Context) -> Iterator[Hit]:
    """Every id the tokenizer emits indexes an embedding row; an id beyond the table is an
    out-of-range gather on the device — a crash mid-request, not at start-up. The ids come from
    tokenizer.json, else from a sentencepiece ``tokenizer.model`` (ChatGLM3, Baichuan2, InternLM2)
    or a tiktoken file (GLM-4), read without their libraries, plus tokenizer_config.json's
    ``added_tokens_decoder``.

    Bad: a tokenizer with 151,665 ids over a 151,643-row embedding (added tokens without a resize).
    Good: tokenizer ids < embedding rows (extra padded rows are fine).
    Fix: resize the embeddings after adding tokens (``model.resize_token_embeddings``) and re-save.
    """
    fam, _ = ctx.architecture
    emb = ctx.tensors.get(fam.embed)
    if emb is None or not emb.info.shape:
        return
    rows = emb.info.shape[0]
    if ctx.tokenizer_load is not None:
        tok = ctx.tokenizer
        if tok.size > rows:
            over = sorted((i, t) for t, i in tok.token_to_id.items() if i >= rows)[:5]
            yield Hit(
                f"the tokenizer emits ids up to {tok.max_id:,} but {fam.embed} has {rows:,} rows "
                f"(e.g. {', '.join(f'{t!r}={i}' for i, t in over)})",
                "Resize the embeddings to cover the tokenizer (resize_token_embeddings) and re-save, or use the "
                "matching tokenizer.",
                Location(file="tokenizer.json", tensor=fam.embed),
                {"tokenizer_ids": tok.size, "embedding_rows": rows},
            )
        return
    rel, vf = ctx.vocab_file
    top = max(vf.size - 1, _added_max(ctx))
    if top >= rows:
        yield Hit(
            f"{rel} ({vf.kind}) defines {vf.size:,} ids"
            + (f" and tokenizer_config.json adds ids up to {top:,}" if top >= vf.size else "")
            + f", but {fam.embed} has {rows:,} rows",
            "Resize the embeddings to cover the tokenizer and re-save, or use the matching tokenizer.",
            Location(file=rel, tensor=fam.embed),
            {"tokenizer_ids": top + 1, "embedding_rows": rows, "kind": vf.kind},
        )


def _show(ids: set[int] | list[int]) -> str:
    """At most ten ids, for messages."""
    items = sorted(ids)
    return "[" + ", ".join(map(str, items[:10])) + (f", … {len(items) - 10} more]" if len(items) > 10 else "]")


def _ids(value: Any) -> list[int]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
    return []


@check(
    "TOK004",
    "bos/eos/pad ids are in the vocabulary and consistent",
    Severity.ERROR,
    requires=("config",),
    backend="any",
    source="transformers GenerationConfig (eos_token_id, pad_token_id) and tokenizer special tokens",
)
def special_tokens(ctx: Context) -> Iterator[Hit]:
    """The generator stops on ``eos_token_id`` and pads with ``pad_token_id``. An id outside the
    vocabulary crashes the sampler or never matches (endless generation); config.json,
    generation_config.json and tokenizer_config.json disagreeing means generation stops on one token
    in one server and another elsewhere.

    Bad: config.json ``eos_token_id`` 2 while tokenizer_config.json's eos_token ``<|im_end|>`` is id 151645.
    Good: the same ids everywhere, all below vocab_size.
    Fix: make the three files agree (generation_config.json wins at generation time).
    """
    cfg = ctx.text_config
    vocab = cfg.get("vocab_size") if isinstance(cfg.get("vocab_size"), int) else None
    sources: dict[str, dict[str, Any]] = {"config.json": cfg}
    try:
        sources["generation_config.json"] = ctx.json_object("generation_config.json")
    except Unavailable:
        pass
    for file, doc in sources.items():
        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
            for i in _ids(doc.get(key)):
                if i < 0 or (vocab is not None and i >= vocab):
                    yield Hit(
                        f"{file} {key} {i} is outside the vocabulary (vocab_size {vocab})",
                        f"Set {key} to the id the tokenizer gives the token.",
                        Location(file=file, key=f"{file}:{key}"),
                    )
    gen = sources.get("generation_config.json")
    if gen is not None:
        for key in ("bos_token_id", "eos_token_id"):
            a, b = set(_ids(cfg.get(key))), set(_ids(gen.get(key)))
            if a and b and not (a <= b or b <= a):
                yield Hit(
                    f"config.json {key} {_show(a)} and generation_config.json {key} {_show(b)} disagree",
                    "Make them agree (generation_config.json is what generation uses).",
                    Location(file="generation_config.json", key=f"generation_config.json:{key}"),
                    severity=Severity.WARNING,
                )
    if ctx.availability("tokenizer") is not None:
        return
    try:
        tc = ctx.json_object("tokenizer_config.json")
    except Unavailable:
        return
    tok = ctx.tokenizer
    expected = set(_ids(cfg.get("eos_token_id")))
    if gen is not None:
        expected |= set(_ids(gen.get("eos_token_id")))
    for key, text in special_token_texts(tc).items():  # the texts the tokenizer read-ahead answers
        if text is None:
            continue
        tid = tok.token_to_id.get(text)
        if tid is None:
            yield Hit(
                f"tokenizer_config.json {key} {text!r} is not in the tokenizer's vocabulary",
                f"Set {key} to a token the tokenizer defines.",
                Location(file="tokenizer_config.json", key=f"tokenizer_config.json:{key}"),
            )
        elif key == "eos_token" and expected and tid not in expected:
            yield Hit(
                f"tokenizer_config.json eos_token {text!r} is id {tid}, but config/generation_config eos_token_id is "
                f"{_show(expected)}: generation would not stop on the tokenizer's end token",
                f"Add {tid} to eos_token_id in generation_config.json (it may be a list).",
                Location(file="generation_config.json", key="generation_config.json:eos_token_id"),
                {"token": text, "id": tid, "eos_token_id": sorted(expected)[:50]},
                severity=Severity.WARNING,
            )


@check(
    "TOK005",
    "generation_config.json parses and fits the model",
    Severity.WARNING,
    requires=("config",),
    backend="any",
    source="transformers GenerationConfig.from_pretrained",
)
def generation_config(ctx: Context) -> Iterator[Hit]:
    """generation_config.json sets defaults for every request; a malformed file is ignored by some
    servers and fatal to others, and a ``max_length`` beyond ``max_position_embeddings`` lets requests
    run past the positions the model was trained on.

    Bad: ``{"max_length": 32768}`` for a model with 4096 positions.
    Good: ``max_length`` ≤ max_position_embeddings.
    Fix: lower max_length, or fix the file's JSON.
    """
    gen = ctx.json_load("generation_config.json")
    if gen is None:
        return
    if isinstance(gen, TokenizerFormatError):
        yield Hit(
            f"generation_config.json cannot be used: {gen}",
            "Restore it from the release.",
            Location(file="generation_config.json"),
            severity=Severity.ERROR,
        )
        return
    mpe = ctx.text_config.get("max_position_embeddings")
    ml = gen.get("max_length")
    if isinstance(mpe, int) and isinstance(ml, int) and not isinstance(ml, bool) and ml > mpe:
        yield Hit(
            f"generation_config.json max_length {ml:,} exceeds max_position_embeddings {mpe:,}",
            f"Lower max_length to {mpe:,} or less.",
            Location(file="generation_config.json", key="generation_config.json:max_length"),
        )


@check(
    "TOK006",
    "the chat template is present and renders",
    Severity.WARNING,
    backend="any",
    requires=("chat_renders",),
    source="transformers apply_chat_template (Jinja2 ImmutableSandboxedEnvironment)",
)
def chat_template(ctx: Context) -> Iterator[Hit]:
    """Chat endpoints format messages with the tokenizer's chat template (Jinja2). Without one they
    refuse chat requests or fall back to a generic format the model was not trained on; a template
    that fails to render fails every chat request.

    Templates render in Jinja2's immutable sandbox inside a child process with a time and memory
    limit (a template is code from the folder), with three conversation shapes — system first,
    user first, a single user turn; a template passes when any shape renders (some refuse a system
    turn on purpose).

    Bad: a template using ``{{ messages[0]['content'] | unknown_filter }}``, or one that loops for minutes.
    Good: a template that renders user/assistant turns and the generation prompt.
    Fix: copy chat_template from the model's release (tokenizer_config.json or chat_template.jinja).
    """
    renders = ctx.chat_renders  # one per template found; none when the folder has no template
    if not renders:
        yield Hit(
            "no chat template (tokenizer_config.json chat_template or chat_template.jinja): chat requests cannot "
            "be formatted as the model expects",
            "Copy the chat template from the model's release if it is a chat model.",
            Location(file="tokenizer_config.json", key="tokenizer_config.json:chat_template"),
            severity=Severity.INFO,
        )
        return
    for name, res in renders.items():
        if res.ok:
            continue
        why = "; ".join(f"{shape}: {err}" for shape, err in res.errors.items())
        yield Hit(
            f"chat template {name!r} renders none of the sample conversations ({why})",
            "Fix the template or copy it again from the model's release."
            if res.limit is None
            else "The template runs away (time or memory): do not serve it; copy it again from the model's release.",
            Location(file="tokenizer_config.json", key="chat_template"),
            {"template": name, "limit": res.limit, "errors": dict(res.errors)},
        )


@check(
    "TOK007",
    "the installed tokenizers library reads tokenizer.json",
    Severity.ERROR,
    phase=Phase.ENVIRONMENT,
    requires=("probe",),
    backend="host",
    source="tokenizers release compatibility (tokenizer.json format versions)",
)
def tokenizer_loads(ctx: Context) -> Iterator[Hit]:
    """A tokenizer.json written by a newer ``tokenizers`` can be unreadable by the installed one
    (``data did not match any variant of untagged enum ModelWrapper``); the init fails after the
    weights load.

    Bad: tokenizer.json from tokenizers 0.20 with tokenizers 0.13 installed.
    Good: ``tokenizers.Tokenizer.from_file("tokenizer.json")`` succeeds in the service's environment.
    Fix: upgrade tokenizers (and transformers) in the deployment environment.
    """
    probe = ctx.probe
    if probe.failure:
        raise Unavailable(f"the environment probe failed ({probe.failure}; see ENV010)")
    err = probe.error("tokenizers")
    if err is not None:
        yield Hit(
            f"the installed tokenizers {probe.packages.get('tokenizers', '?')} cannot read tokenizer.json: "
            f"{err.get('type')}: {str(err.get('message'))[:300]}",
            "Upgrade tokenizers (and transformers) in the deployment environment.",
            Location(file="tokenizer.json"),
        )
