"""The whole CLI under random input: random model_configs, environment variables and small folders
broken in random ways. The exit status is always 0, 1 or 2 — never 3 (a check that raised) and
never a traceback — and every report written validates against the schema."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from npu_preflight.catalog import catalog
from npu_preflight.cli import main
from npu_preflight.mconfig import known_keys
from tests.conftest import validate_report
from tests.factory import Spec
from tests.props import prop

FILES = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "chat_template.jinja",
    "special_tokens_map.json",
]
ENV = [
    "ASCEND_RT_VISIBLE_DEVICES",
    "NPU_MEMORY_FRACTION",
    "RESERVED_MEMORY_GB",
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "MASTER_PORT",
    "MASTER_ADDR",
    "TORCH_DEVICE_BACKEND_AUTOLOAD",
    "MINDIE_LLM_LOG_LEVEL",
    "MINDIE_CHECK_INPUTFILES_PERMISSION",
]
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats(), st.text(max_size=8))
json_value = st.recursive(
    json_leaf, lambda i: st.lists(i, max_size=3) | st.dictionaries(st.text(max_size=6), i, max_size=3), max_leaves=8
)
contents = st.one_of(
    st.binary(max_size=300),
    json_value.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(
        st.sampled_from(
            [
                "model_type",
                "torch_dtype",
                "hidden_size",
                "num_hidden_layers",
                "vocab_size",
                "weight_map",
                "added_tokens",
                "eos_token_id",
                "chat_template",
                "model",
            ]
        ),
        json_value,
        max_size=4,
    ).map(lambda d: json.dumps(d).encode()),
)
mutations = st.lists(
    st.tuples(st.sampled_from(FILES), st.one_of(st.just(None), contents)),  # None deletes the file
    max_size=4,
)
extra_names = st.lists(
    st.text(alphabet="abc.-_ é\x1b\u202e", min_size=1, max_size=10).filter(lambda n: n not in (".", "..")), max_size=2
)
sets = st.dictionaries(st.sampled_from([*known_keys(), "wrld_size"]), json_value.map(json.dumps), max_size=6)
envs = st.dictionaries(st.sampled_from(ENV), st.text(alphabet="0123456789,.- ax", max_size=12), max_size=4)
targets = st.one_of(st.none(), st.sampled_from([d["name"] for d in catalog()]))


def test_whole_cli_property(model_cache: Callable[[Spec], Path]) -> None:
    clean = model_cache(Spec())

    @prop(60)
    @given(mutations, extra_names, sets, envs, targets, st.sampled_from(["error", "warning"]))
    def run(
        muts: list[tuple[str, bytes | None]],
        extra: list[str],
        mc: dict[str, str],
        env: dict[str, str],
        target: str | None,
        fail_on: str,
    ) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "m"
            shutil.copytree(clean, folder)
            for name, data in muts:
                p = folder / name
                if data is None:
                    p.unlink(missing_ok=True)
                else:
                    p.write_bytes(data)
            for name in extra:
                (folder / name).write_bytes(b"x")
            out = Path(tmp) / "rep"
            args: list[Any] = [
                "check",
                str(folder),
                "--static",
                "--out",
                str(out),
                "--fail-on",
                fail_on,
                "--format",
                "json",
            ]
            for k, v in mc.items():
                args += ["--set", f"{k}={v}"]
            if target:
                args += ["--target-device", target]
            res = CliRunner().invoke(main, args, env=env)
            assert res.exit_code in (0, 1, 2), (res.exit_code, res.output[-3000:])
            if res.exit_code in (0, 1):
                doc = json.loads((out / "report.json").read_text())
                validate_report(doc)
                errored = [c for c in doc["checks"] if c["status"] == "errored"]
                assert not errored, errored[0]["reason"]
                assert doc["verdict"] == ("ready" if res.exit_code == 0 else "not_ready")

    run()
