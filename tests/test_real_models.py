"""One test per class of false alarm or miss found on real vendor folders (issue: right on real
models). The folders are the vendors' configs over sparse shards (tests/vendor.py) or small real
models the factory saves with transformers."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from npu_preflight.cli import main, registry
from npu_preflight.context import Context, RunOptions
from npu_preflight.model import Severity
from npu_preflight.policy import Policy
from npu_preflight.runner import run
from tests import vendor
from tests.conftest import MINDIE_MC, check_folder, ids, only
from tests.factory import fix_config

ENV = {"ASCEND_RT_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"}
#: Mistral-7B-Instruct-v0.2 / Mixtral-8x7B-Instruct-v0.1's chat template, as recorded (from the
#: release's tokenizer_config.json) in abetlen/llama-cpp-python llama_cpp/llama_chat_format.py
#: (MIXTRAL_INSTRUCT_CHAT_TEMPLATE).
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}"
    "{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Any:
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            cache[name] = vendor.build(name, tmp_path_factory.mktemp("real") / name)
        return cache[name]

    return get


def _run(folder: Path, mc: dict[str, Any] | None, **opts: Any) -> Any:
    options = RunOptions(**{"static": True, "target_device": "910B3", **opts})
    return run(Context(folder, mc, options=options, env=ENV), registry().specs, Policy())


# -- remote code that is not needed -------------------------------------------------------------


def test_builtin_architecture_with_auto_map_loads_without_remote_code(built: Any) -> None:
    """DeepSeek-V3 carries auto_map; transformers builds deepseek_v3 in, so trust_remote_code=False
    loads the folder — proven with the installed transformers — and SEC002 says it is not needed."""
    from transformers import AutoConfig

    folder = built("DeepSeek-V3")
    conf = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    assert type(conf).__name__ == "DeepseekV3Config"
    generic = _run(folder, {"world_size": 8})  # no backend_type: transformers' rules
    [f] = [f for f in only(generic, "SEC002") if f.location.key == "config.json:auto_map.AutoModelForCausalLM"]
    assert f.severity is Severity.INFO and f.details["needed"] is False and "built into transformers" in f.message
    allowed = _run(folder, {"world_size": 8, "trust_remote_code": True})
    assert {f.severity for f in only(allowed, "SEC002")} == {Severity.WARNING}  # folder code replaces the built-in
    atb = _run(folder, {**MINDIE_MC, "world_size": 8})
    assert {f.severity for f in only(atb, "SEC002")} == {Severity.INFO}
    assert all("not used by MindIE" in f.message for f in only(atb, "SEC002"))


def test_unknown_architecture_with_auto_map_still_needs_remote_code(built: Any, tmp_path: Path) -> None:
    folder = built("DeepSeek-V3")
    copy = tmp_path / "x"
    copy.mkdir()
    for p in folder.iterdir():
        (copy / p.name).symlink_to(p)
    (copy / "config.json").unlink()
    cfg = vendor.config("DeepSeek-V3")
    cfg["model_type"] = "deepseek_v3_custom"
    (copy / "config.json").write_text(json.dumps(cfg))
    r = _run(copy, {"world_size": 8})
    assert Severity.ERROR in {f.severity for f in only(r, "SEC002")}
    assert all(f.details["needed"] for f in only(r, "SEC002"))


# -- config defaults ------------------------------------------------------------------------------


def test_gemma2_ties_by_default(built: Any, tmp_path: Path) -> None:
    """gemma-2's config.json omits tie_word_embeddings; transformers' Gemma2Config ties by default
    and the release has no lm_head: no ARCH005. Said false explicitly, the same folder is a fault."""
    folder = built("gemma-2-9b")
    assert "tie_word_embeddings" not in json.loads((folder / "config.json").read_text())
    assert "ARCH005" not in ids(_run(folder, {**MINDIE_MC, "backend_type": "torch"}))
    fix_config(folder, tie_word_embeddings=False)
    try:
        [f] = only(_run(folder, {**MINDIE_MC, "backend_type": "torch"}), "ARCH005")
        assert f.severity is Severity.ERROR and f.details["from_default"] is False
    finally:
        fix_config(folder, tie_word_embeddings=None)


def test_defaults_follow_attribute_maps(built: Any) -> None:
    """qwen3_moe names its expert count num_experts in config.json and num_local_experts in
    transformers: the config's value wins over the class default, under either name."""
    ctx = Context(built("Qwen3-30B-A3B"), options=RunOptions(static=True))
    eff = ctx.effective_config
    assert eff.values["num_local_experts"] == 128 == eff.values["num_experts"]
    assert "num_local_experts" not in eff.defaulted


# -- backend rules on the right backend ----------------------------------------------------------


def test_qwen2_uneven_heads_follow_the_backend(built: Any) -> None:
    folder = built("Qwen2.5-7B-Instruct")  # 28 heads
    atb = _run(folder, {**MINDIE_MC, "world_size": 8})
    [f] = only(atb, "DIST001")
    assert f.severity is Severity.INFO and "pads" in f.message
    assert "CFG007" not in ids(atb)  # MindIE runs Qwen2.5 in bf16
    [g] = only(_run(folder, {"world_size": 8}), "DIST001")  # a vLLM-style runtime refuses it
    assert g.severity is Severity.WARNING


def test_explain_cites_a_source_for_every_rule() -> None:
    for spec in registry().specs:
        assert spec.source, spec.id
    out = CliRunner().invoke(main, ["explain", "DIST001"]).output
    assert "rule of: tensor-parallel runtimes" in out and "weights.py" in out


# -- chat templates -------------------------------------------------------------------------------


def test_mistral_template_that_refuses_a_system_turn_is_fine(llama: Path) -> None:
    tc = json.loads((llama / "tokenizer_config.json").read_text())
    tc.update(chat_template=MISTRAL_TEMPLATE, bos_token="<s>", eos_token="</s>")
    (llama / "tokenizer_config.json").write_text(json.dumps(tc))
    assert "TOK006" not in ids(check_folder(llama, MINDIE_MC), Severity.WARNING)
    broken = MISTRAL_TEMPLATE.replace("{% endfor %}", "{{ message | nosuchfilter }}{% endfor %}")
    tc["chat_template"] = broken
    (llama / "tokenizer_config.json").write_text(json.dumps(tc))
    assert "TOK006" in ids(check_folder(llama, MINDIE_MC), Severity.WARNING)


# -- families ---------------------------------------------------------------------------------------


def _corrupt(folder: Path, tensor: str, shape: list[int]) -> None:
    """Rewrite one tensor's declared shape in its shard header (same byte size, so the file stays valid)."""
    import struct

    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shard = folder / index["weight_map"][tensor]
    raw = shard.read_bytes()[:8]
    (n,) = struct.unpack("<Q", raw)
    with open(shard, "r+b") as fh:
        fh.seek(8)
        header = json.loads(fh.read(n))
        header[tensor]["shape"] = shape
        text = json.dumps(header, separators=(",", ":")).encode()
        assert len(text) <= n
        fh.seek(8)
        fh.write(text + b" " * (n - len(text)))


def test_moe_expert_shapes_are_checked(tmp_path: Path) -> None:
    """Qwen3-MoE experts are read with their own rule (not the generic Llama fallback): an expert
    of the wrong width is an ARCH004 error. (A fresh sparse folder: copying one would write its
    61 GB.)"""
    folder = vendor.build("Qwen3-30B-A3B", tmp_path / "q")
    _corrupt(folder, "model.layers.5.mlp.experts.17.up_proj.weight", [2048, 768])
    [f] = only(_run(folder, {**MINDIE_MC, "world_size": 4}), "ARCH004")
    assert f.location.tensor == "model.layers.5.mlp.experts.17.up_proj.weight"


def test_sentencepiece_only_tokenizer_is_checked_against_the_embedding(tmp_path: Path) -> None:
    """ChatGLM3, Baichuan2 and InternLM2 ship only tokenizer.model: TOK003 reads it (no library)."""
    import sentencepiece as spm

    folder = vendor.build("chatglm3-6b", tmp_path / "glm")
    (folder / "tokenizer.json").unlink()
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(f"the quick brown fox {i} jumps over {i * 7} lazy dogs" for i in range(300)))
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(tmp_path / "m"), vocab_size=200, model_type="bpe", minloglevel=2
    )
    (folder / "tokenizer.model").write_bytes((tmp_path / "m.model").read_bytes())
    r = _run(folder, {**MINDIE_MC, "world_size": 1})
    assert "TOK003" in {c.id for c in r.checks if c.status.value == "passed"}
    cfg = json.loads((folder / "config.json").read_text())
    tc = {"tokenizer_class": "ChatGLMTokenizer", "added_tokens_decoder": {str(cfg["padded_vocab_size"] + 3): {}}}
    (folder / "tokenizer_config.json").write_text(json.dumps(tc))
    [f] = only(_run(folder, {**MINDIE_MC, "world_size": 1}), "TOK003")
    assert f.severity is Severity.ERROR and "tokenizer.model (sentencepiece) defines 200 ids" in f.message


# -- MindIE coverage --------------------------------------------------------------------------------


def test_mindie_coverage_uses_the_hosts_atb_llm(built: Any, tmp_path: Path) -> None:
    """With MindIE's atb_llm importable on the host, the probe lists its model folders and a model
    type without one is an error naming get_model's message."""
    site = tmp_path / "site"
    for name in ("llama", "qwen2", "base"):
        (site / "atb_llm" / "models" / name).mkdir(parents=True)
    (site / "atb_llm" / "__init__.py").write_text("")
    folder = built("gemma-2-2b")
    ctx = Context(
        folder,
        {**MINDIE_MC, "world_size": 1},
        options=RunOptions(target_device="910B3", no_init=True, python=sys.executable),
        env={**ENV, "PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
    )
    r = run(ctx, [s for s in registry().specs if s.id in ("CFG008", "ENV010")], Policy())
    [f] = only(r, "CFG008")
    assert (
        f.severity is Severity.ERROR and f.details["where"] == "host" and "unsupported model type: gemma2" in f.message
    )


# -- planning mode ----------------------------------------------------------------------------------


def test_readme_planning_example_answers_the_question(built: Any) -> None:
    """The README's example: --static --target-device 910B3 --set world_size=4 --set max_seq_len=8192."""
    folder = built("Qwen2.5-7B-Instruct")
    args = ["check", str(folder), "--static", "--target-device", "910B3", "--set", "world_size=4"]
    res = CliRunner().invoke(main, [*args, "--set", "max_seq_len=8192", "--format", "json", "--no-out"])
    doc = json.loads(res.stdout)
    assert res.exit_code == 0, [f for f in doc["findings"] if f["severity"] != "info"]
    [f] = [f for f in doc["findings"] if f["check_id"] == "MC008"]
    assert f["severity"] == "info" and f["details"]["missing"] == [
        "backend_type",
        "rank",
        "local_rank",
        "npu_device_id",
        "trust_remote_code",
    ]
    assert "MC001" not in {f["check_id"] for f in doc["findings"]}
    assert doc["memory"]["world_size"] == 4
