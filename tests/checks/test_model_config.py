"""MC checks: schema, cross-field rules, MindIE-Service mapping, YAML and --set input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from npu_preflight.cli import main
from npu_preflight.context import RunOptions
from npu_preflight.mconfig import ModelConfig, known_keys, validate
from npu_preflight.model import Severity
from tests.conftest import check_folder, ids, only
from tests.props import prop

GOOD = {
    "backend_type": "atb",
    "world_size": 2,
    "rank": 1,
    "local_rank": 1,
    "npu_device_id": 1,
    "trust_remote_code": False,
    "max_seq_len": 512,
    "max_input_len": 256,
    "max_batch_size": 4,
}


def mc_ids(folder: Path, mc: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    return [
        i
        for i in ids(check_folder(folder, mc, env=env or {"ASCEND_RT_VISIBLE_DEVICES": "0,1"}))
        if i.startswith(("MC", "ENV"))
    ]


def test_good_config_passes(llama: Path) -> None:
    assert mc_ids(llama, GOOD) == []


@pytest.mark.parametrize(
    ("patch", "path"),
    [
        ({"backend_type": "pytorch"}, "model_config.backend_type"),
        ({"world_size": 0}, "model_config.world_size"),
        ({"world_size": 2_000_000}, "model_config.world_size"),
        ({"rank": -1}, "model_config.rank"),
        ({"num_threads": "many"}, "model_config.num_threads"),
        ({"block_size": 4096}, "model_config.block_size"),
        ({"npu_mem": 0}, "model_config.npu_mem"),
        ({"trust_remote_code": "perhaps"}, "model_config.trust_remote_code"),
    ],
)
def test_schema_violation_names_the_key(llama: Path, patch: dict[str, Any], path: str) -> None:
    r = check_folder(llama, {**GOOD, **patch}, env={})
    fs = only(r, "MC001")
    assert [f.location.key for f in fs] == [path]
    assert fs[0].details["allowed"]


def test_missing_required_quotes_mindie(llama: Path) -> None:
    mc = dict(GOOD)
    del mc["npu_device_id"]
    assert "MC001" not in ids(check_folder(llama, mc, env={}))
    r = check_folder(llama, mc, env={}, select="MC008", options=RunOptions(no_init=True))
    [f] = only(r, "MC008")
    assert f.severity is Severity.ERROR
    assert "model_config: `npu_device_id` is required, but not set" in f.message
    assert f.location.key == "model_config.npu_device_id"
    assert f.details["snippet"] == {"npu_device_id": 0}


def test_numeric_strings_accepted_like_mindie(llama: Path) -> None:
    assert "MC001" not in ids(
        check_folder(llama, {**GOOD, "world_size": "2", "rank": "1", "trust_remote_code": "false"})
    )


def test_unknown_key_did_you_mean(llama: Path) -> None:
    [f] = only(check_folder(llama, {**GOOD, "wrld_size": 2}), "MC002")
    assert "did you mean 'world_size'" in f.message and f.location.key == "model_config.wrld_size"


def test_rank_out_of_range(llama: Path) -> None:
    fs = only(check_folder(llama, {**GOOD, "rank": 2, "local_rank": 3}), "MC003")
    assert [f.location.key for f in fs] == ["model_config.rank", "model_config.local_rank"]
    assert "Rank should be in the range of 0 to world_size - 1." in fs[0].message


def test_device_id_beyond_visible(llama: Path) -> None:
    [f] = only(check_folder(llama, {**GOOD, "npu_device_id": 6}, env={"ASCEND_RT_VISIBLE_DEVICES": "6"}), "MC004")
    assert "only 1 device(s) are visible" in f.message and f.location.env == "ASCEND_RT_VISIBLE_DEVICES"


def test_device_id_unknown_without_env_in_static(llama: Path) -> None:
    r = check_folder(llama, GOOD, env={})
    assert {c.id: c.status.value for c in r.checks}["MC004"] == "skipped"


def test_more_ranks_than_devices(llama: Path, tmp_path: Path) -> None:
    env = {"ASCEND_RT_VISIBLE_DEVICES": "0"}
    mc = {**GOOD, "rank": 0, "local_rank": 0, "npu_device_id": 0}
    [f] = only(check_folder(llama, mc, env=env), "MC005")
    assert f.severity is Severity.WARNING
    table = tmp_path / "ranktable.json"
    table.write_text(
        json.dumps(
            {
                "server_list": [
                    {
                        "server_id": "a",
                        "device": [
                            {"device_id": "0", "device_ip": "10.0.0.1", "rank_id": "0"},
                            {"device_id": "1", "device_ip": "10.0.0.2", "rank_id": "1"},
                        ],
                    }
                ]
            }
        )
    )
    [f] = only(check_folder(llama, mc, env={**env, "RANK_TABLE_FILE": str(table)}), "MC005")
    assert f.severity is Severity.ERROR and "single server" in f.message


def test_input_longer_than_sequence(llama: Path) -> None:
    [f] = only(check_folder(llama, {**GOOD, "max_input_len": 1024}), "MC006")
    assert f.location.key == "model_config.max_input_len"


def test_seq_beyond_positions(llama: Path) -> None:
    [f] = only(check_folder(llama, {**GOOD, "max_seq_len": 4096, "max_input_len": 100}), "MC007")
    assert f.severity is Severity.WARNING


def test_mindie_required_keys_are_one_finding_with_a_snippet(llama: Path) -> None:
    mc = {k: v for k, v in GOOD.items() if k not in ("local_rank", "trust_remote_code")}
    [f] = only(check_folder(llama, mc), "MC008")
    assert f.details["missing"] == ["local_rank", "trust_remote_code"]
    assert f.details["snippet"] == {"local_rank": 1, "trust_remote_code": False}
    assert '"trust_remote_code": false' in f.remediation and "--set local_rank=1" in f.remediation
    assert f.severity is Severity.INFO and f.details["planning"] is True  # check_folder runs --static


def service(weights: Path, **over: Any) -> dict[str, Any]:
    model = {
        "modelInstanceType": "Standard",
        "modelName": "llama",
        "modelWeightPath": str(weights),
        "worldSize": 2,
        "cpuMemSize": 5,
        "npuMemSize": -1,
        "backendType": "atb",
        "trustRemoteCode": False,
    }
    model.update(over.pop("model", {}))
    doc = {
        "Version": "1.0.0",
        "ServerConfig": {"ipAddress": "127.0.0.1"},
        "BackendConfig": {
            "backendName": "mindieservice_llm_engine",
            "modelInstanceNumber": 1,
            "npuDeviceIds": [[0, 1]],
            "ModelDeployConfig": {"maxSeqLen": 512, "maxInputTokenLen": 256, "ModelConfig": [model]},
            "ScheduleConfig": {
                "cacheBlockSize": 128,
                "maxPrefillBatchSize": 8,
                "maxPrefillTokens": 2048,
                "maxBatchSize": 4,
                "maxIterTimes": 256,
            },
        },
    }
    doc["BackendConfig"].update(over)
    return doc


def _run_cli(*args: str) -> tuple[int, dict[str, Any]]:
    res = CliRunner().invoke(main, [*args, "--static", "--format", "json", "--no-out"])
    return res.exit_code, json.loads(res.stdout) if res.stdout.startswith("{") else {"raw": res.output}


def test_mindie_service_config_maps_and_passes(llama: Path, tmp_path: Path) -> None:
    p = tmp_path / "config.json"
    p.write_text(json.dumps(service(llama)))
    code, doc = _run_cli("check", str(llama), "-c", str(p))
    assert code == 0, doc
    mc = doc["target"]["model_config"]
    assert mc["world_size"] == 2 and mc["max_seq_len"] == 512 and mc["block_size"] == 128
    assert mc["max_batch_size"] == 4 and mc["npu_device_id"] == 0 and mc["model_id"] == str(llama)
    assert not [f for f in doc["findings"] if f["check_id"].startswith("MC") and f["severity"] != "info"]


def test_mindie_service_rules(llama: Path, tmp_path: Path) -> None:
    doc = service(llama, model={"worldSize": 4, "modelWeightPath": str(tmp_path / "nope")}, npuDeviceIds=[[0, 1]])
    doc["BackendConfig"]["ModelDeployConfig"]["maxInputTokenLen"] = 1024
    p = tmp_path / "config.json"
    p.write_text(json.dumps(doc))
    _, out = _run_cli("check", str(llama), "-c", str(p))
    msgs = [f["message"] for f in out["findings"] if f["check_id"] == "MC009"]
    assert any("npuDeviceIds[0] lists 2 device(s) but worldSize is 4" in m for m in msgs)
    assert any("maxInputTokenLen 1,024 exceeds maxSeqLen 512" in m for m in msgs)
    assert any("does not exist" in m for m in msgs)


def test_yaml_model_config(llama: Path, tmp_path: Path) -> None:
    p = tmp_path / "mc.yaml"
    p.write_text("backend_type: atb\nworld_size: 3\nrank: 0\nnpu_device_id: 0\n")
    _, doc = _run_cli("check", str(llama), "-c", str(p))
    assert "DIST001" in [f["check_id"] for f in doc["findings"]]


def test_bad_yaml_is_usage_error(llama: Path, tmp_path: Path) -> None:
    p = tmp_path / "mc.yaml"
    p.write_text("backend_type: [unclosed\n")
    res = CliRunner().invoke(main, ["check", str(llama), "-c", str(p), "--static", "--no-out"])
    assert res.exit_code == 2 and "mc.yaml" in res.stderr


def test_service_config_without_model_list_is_usage_error(llama: Path, tmp_path: Path) -> None:
    p = tmp_path / "config.json"
    p.write_text(json.dumps({"BackendConfig": {"ModelDeployConfig": {"ModelConfig": []}}}))
    res = CliRunner().invoke(main, ["check", str(llama), "-c", str(p), "--static", "--no-out"])
    assert res.exit_code == 2 and "ModelConfig" in res.stderr


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 3_000_000),
    st.text(max_size=6),
    st.floats(allow_nan=False),
    st.lists(st.integers(), max_size=2),
)
configs = st.dictionaries(st.sampled_from([*known_keys(), "wrld_size", "x"]), values, max_size=12)


@prop(400)
@given(configs)
def test_random_model_configs_never_crash_and_name_paths(llama: Path, mc: dict[str, Any]) -> None:
    r = check_folder(llama, mc, env={"ASCEND_RT_VISIBLE_DEVICES": "0,1"}, select="MC,DIST,ENV")
    assert r.status_counts()["errored"] == 0, [c.reason for c in r.checks if c.status.value == "errored"]
    violations = validate(ModelConfig.from_mapping(mc), required=False)
    reported = {f.location.key for f in only(r, "MC001")}
    assert reported == {v.path for v in violations}
    for v in violations:
        assert v.path.startswith("model_config.")
