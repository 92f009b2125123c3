"""Write schemas/transformers_models.json from the installed transformers.

The checks must know, without importing torch or transformers at run time, which model types the
installed transformers builds in and what each family's config defaults are (gemma2 ties its
embeddings unless config.json says otherwise; qwen3_moe has 4 KV heads unless told). This script
reads both from transformers itself; ``tests/test_knowledge.py`` reruns it and fails when the
checked-in table is stale.

A default is recorded only when it is a constant: a value that moves when hidden_size,
num_attention_heads or num_hidden_layers move (``head_dim = hidden_size // num_attention_heads``) is
derived, and the checks derive it from config.json themselves.

Run it in the dev venv (requirements-dev.txt): the tokenizer classes transformers lists depend on
optional packages such as sentencepiece.

Usage: python scripts/gen_transformers_table.py [OUT]   (default: schemas/transformers_models.json)
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

#: The config keys the structural, tensor-parallel and memory checks read.
KEYS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "intermediate_size",
    "vocab_size",
    "tie_word_embeddings",
    "max_position_embeddings",
    "num_local_experts",
    "num_experts",
    "n_routed_experts",
    "n_shared_experts",
    "moe_intermediate_size",
    "shared_expert_intermediate_size",
    "first_k_dense_replace",
    "moe_layer_freq",
    "decoder_sparse_step",
    "mlp_only_layers",
    "num_nextn_predict_layers",
    "kv_lora_rank",
    "q_lora_rank",
    "qk_rope_head_dim",
    "qk_nope_head_dim",
    "v_head_dim",
    "attention_bias",
    "sliding_window",
)
#: Perturbations that reveal derived values; each keeps hidden_size divisible by the heads.
PERTURB = (
    {"hidden_size": 2},
    {"num_attention_heads": 2, "hidden_size": 2},
    {"num_attention_heads": 2},
    {"num_hidden_layers": 2},
)


def _jsonable(v: Any) -> bool:
    if v is None or isinstance(v, (bool, int, float, str)):
        return True
    if isinstance(v, list):
        return all(_jsonable(x) for x in v)
    return False


def _defaults(cls: Any) -> dict[str, Any]:
    try:
        base = cls().to_dict()
    except Exception:  # noqa: BLE001 - a config class that needs arguments has no usable defaults
        return {}
    derived: set[str] = set()
    for p in PERTURB:
        kwargs = {}
        for k, factor in p.items():
            v = base.get(k)
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                kwargs[k] = v * factor
        if not kwargs:
            continue
        try:
            other = cls(**kwargs).to_dict()
        except Exception:  # noqa: BLE001 - an invalid combination tells nothing
            continue
        derived |= {k for k in KEYS if k not in kwargs and other.get(k) != base.get(k)}
    return {k: base[k] for k in KEYS if k in base and base[k] is not None and k not in derived and _jsonable(base[k])}


def build() -> dict[str, Any]:
    """The table, from the installed transformers."""
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING, CONFIG_MAPPING_NAMES
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
    )

    types: dict[str, Any] = {}
    for mt in sorted(CONFIG_MAPPING_NAMES):
        causal = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(mt) or MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES.get(mt)
        entry: dict[str, Any] = {"config_class": CONFIG_MAPPING_NAMES[mt]}
        if isinstance(causal, str):
            entry["generation_class"] = causal
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cls = CONFIG_MAPPING[mt]
                entry["defaults"] = _defaults(cls)
                amap = {k: v for k, v in getattr(cls, "attribute_map", {}).items() if v in KEYS or k in KEYS}
                if amap:
                    entry["attribute_map"] = dict(sorted(amap.items()))
                entry["tp_plan"] = bool(getattr(cls, "base_model_tp_plan", None))
                text = getattr(cls, "sub_configs", {}).get("text_config")
                text_type = getattr(text, "model_type", None)
                if isinstance(text_type, str) and text_type and text_type != mt:
                    entry["text_model_type"] = text_type
        types[mt] = entry
    from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING_NAMES

    tokenizers: set[str] = set()
    for names in TOKENIZER_MAPPING_NAMES.values():
        for n in names if isinstance(names, (tuple, list)) else (names,):
            if isinstance(n, str) and n:
                tokenizers.add(n)
    tokenizers |= {"PreTrainedTokenizerFast", "PreTrainedTokenizer", "TokenizersBackend"}
    return {
        "_comment": "Generated by scripts/gen_transformers_table.py from the installed transformers; do not edit.",
        "transformers_version": transformers.__version__,
        "tokenizer_classes": sorted(tokenizers),
        "model_types": types,
    }


def render(table: dict[str, Any]) -> str:
    """The file's text (stable: sorted keys, one model type per line)."""
    lines = ["{"]
    lines.append(f'  "_comment": {json.dumps(table["_comment"])},')
    lines.append(f'  "transformers_version": {json.dumps(table["transformers_version"])},')
    lines.append(f'  "tokenizer_classes": {json.dumps(table["tokenizer_classes"])},')
    lines.append('  "model_types": {')
    items = sorted(table["model_types"].items())
    for i, (mt, entry) in enumerate(items):
        sep = "," if i < len(items) - 1 else ""
        lines.append(f"    {json.dumps(mt)}: {json.dumps(entry, sort_keys=True)}{sep}")
    lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    out = (
        Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1] / "schemas" / "transformers_models.json"
    )
    import logging

    logging.disable(logging.WARNING)
    out.write_text(render(build()), encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
