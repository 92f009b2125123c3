"""The family tables the checks read: fresh against the installed transformers, sourced for MindIE."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from npu_preflight.knowledge import (
    builtin_entry,
    mindie_bf16,
    mindie_support,
    mindie_table,
    transformers_version,
    with_defaults,
)

ROOT = Path(__file__).resolve().parents[1]


def test_transformers_table_is_fresh(tmp_path: Path) -> None:
    """scripts/gen_transformers_table.py rerun against the installed transformers writes exactly
    the checked-in table; when transformers is upgraded this fails until the table is regenerated."""
    import transformers

    out = tmp_path / "t.json"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_transformers_table.py"), str(out)], check=True)
    shipped = (ROOT / "schemas" / "transformers_models.json").read_text()
    assert transformers_version() == transformers.__version__, "rerun scripts/gen_transformers_table.py"
    assert out.read_text() == shipped, (
        "schemas/transformers_models.json is stale: rerun scripts/gen_transformers_table.py"
    )


def test_table_knows_the_families_people_deploy() -> None:
    for mt in ("llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2", "phi3"):
        assert builtin_entry(mt) is not None, mt
    for mt in ("deepseek_v2", "deepseek_v3", "glm4", "gemma3_text"):
        assert builtin_entry(mt) is not None, mt
    for mt in ("baichuan", "internlm2", "chatglm"):  # their code ships with the weights
        assert builtin_entry(mt) is None, mt
    assert builtin_entry("gemma2")["defaults"]["tie_word_embeddings"] is True  # type: ignore[index]


def test_defaults_never_override_what_config_json_says() -> None:
    values, added = with_defaults({"model_type": "gemma2", "tie_word_embeddings": False})
    assert values["tie_word_embeddings"] is False and "tie_word_embeddings" not in added
    values, added = with_defaults({"model_type": "deepseek_v2", "q_lora_rank": None})
    assert values["q_lora_rank"] is None and "q_lora_rank" not in added
    values, added = with_defaults({"model_type": "gemma2"})
    assert values["tie_word_embeddings"] is True and "tie_word_embeddings" in added
    values, added = with_defaults({"model_type": "no-such-type", "hidden_size": 8})
    assert values == {"model_type": "no-such-type", "hidden_size": 8} and not added


def test_mindie_table_is_sourced() -> None:
    doc = mindie_table()
    for rel in doc["releases"]:
        assert rel["source"].startswith("Ascend/MindIE-LLM@") and rel["models"] and rel["aliases_source"]
    for folder, entry in doc["bf16_on_800I_A2"].items():
        assert isinstance(entry["value"], bool) and "README" in entry["source"], folder
    assert doc["fp8"]["supported"] is False and doc["fp8"]["source"]
    assert mindie_bf16("mixtral")["value"] is False  # type: ignore[index]


def test_mindie_lookup_applies_get_models_aliases() -> None:
    assert mindie_support("deepseek_v3", {}).folder == "deepseekv2"
    assert mindie_support("DeepSeek_V3", {}).implemented
    assert mindie_support("chatglm", {"vision_config": {}}).folder == "glm4v"
    assert not mindie_support("gemma2", {}).implemented
    host = mindie_support("qwen3", {}, ["llama", "qwen2"], "/x/atb_llm/models")
    assert host.where == "host" and not host.implemented


def test_every_model_type_in_the_mindie_table_is_a_folder_name() -> None:
    for rel in mindie_table()["releases"]:
        for m in rel["models"]:
            assert m == m.lower() and "/" not in m
        assert set(rel["aliases"].values()) <= set(rel["models"]) | {"codeshell", "bunny", "glm41v"}
    json.dumps(mindie_table())
