"""Multi-rank inits for real: ranks launched by torch.distributed.run on CPU with gloo, each loading
its shard with transformers' tensor-parallel plan; failures of one rank named; two "nodes" on
localhost joined by a c10d rendezvous and merged into one cluster report."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from npu_preflight.cli import main, registry
from npu_preflight.context import Context, RunOptions
from npu_preflight.policy import Policy
from npu_preflight.runner import run
from npu_preflight.sandbox import agent_failures
from tests.conftest import MINDIE_MC, cli_env
from tests.factory import Spec, build

GIB = 1024**3
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mid_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A float32 Llama of ~160 MB for the failure cases."""
    spec = Spec(hidden=512, layers=8, heads=8, kv_heads=4, intermediate=2048, vocab=8192, dtype="float32")
    return build(tmp_path_factory.mktemp("mid") / "m", spec)


@pytest.fixture(scope="module")
def big_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A float32 Llama of ~560 MB: big enough that a rank's shard shows in its peak."""
    spec = Spec(hidden=1024, layers=8, heads=8, kv_heads=4, intermediate=4096, vocab=8192, dtype="float32")
    return build(tmp_path_factory.mktemp("big") / "m", spec)


def _mc(ws: int, **extra: Any) -> dict[str, Any]:
    return {**MINDIE_MC, "world_size": ws, "max_seq_len": 256, "max_batch_size": 1, **extra}


def _ctx(folder: Path, ws: int, generator: str = "transformers", timeout: float = 180, **opts: Any) -> Context:
    options = RunOptions(device="cpu", generator=generator, timeout=timeout, memory_limit=3 * GIB, **opts)
    return Context(folder, _mc(ws), options=options, env=cli_env())


def _init(ctx: Context) -> Any:
    return ctx.init_outcome


def test_two_and_four_ranks_each_hold_their_shard(big_model: Path) -> None:
    """Measured peak RSS per rank (the weights' file pages a rank touches included) falls as the
    ranks split the model; one process holding everything peaks highest."""
    peaks = {}
    for ws in (1, 2, 4):
        o = _init(_ctx(big_model, ws))
        assert o.classified.outcome == "ok", (o.classified, o.stderr_tail[-2000:])
        if ws == 1:
            assert not o.ranks
            peaks[1] = o.peak_bytes
            continue
        assert [r.rank for r in o.ranks] == list(range(ws))
        for r in o.ranks:
            assert r.classified.outcome == "ok" and r.reached_collective and r.collective_s is not None
            assert r.collective_s < 5
            assert {s["stage"] for s in r.stages} >= {"process_group", "weights", "kv_cache", "forward", "collective"}
        peaks[ws] = max(r.peak_bytes or 0 for r in o.ranks)
    weights = sum(p.stat().st_size for p in big_model.glob("*.safetensors"))
    assert peaks[2] <= peaks[1] and peaks[4] < peaks[2], (peaks, weights)
    assert peaks[4] < peaks[1] - weights / 5, (peaks, weights)


def test_ranks_report_side_by_side_in_every_format(mid_model: Path, tmp_path: Path) -> None:
    args = ["check", str(mid_model), "--device", "cpu", "--memory-limit", "3GiB", "--timeout", "180"]
    for k, v in _mc(2).items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "rep"), "--select", "INIT,MEM"])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "rep" / "report.json").read_text())
    ranks = doc["init"]["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1] and doc["init"]["launcher"] == "torch.distributed.run"
    assert all(abs(r["prediction_error_pct"]) < 25 for r in ranks)
    assert "rank 1" in res.output and "all_reduce" in res.output
    html = (tmp_path / "rep" / "report.html").read_text()
    assert 'id="ranks"' in html and html.count('class="rank-row"') == 2
    junit = (tmp_path / "rep" / "junit.xml").read_text()
    assert "INIT004" in junit


def test_one_rank_oom_is_named(mid_model: Path) -> None:
    ctx = Context(
        mid_model,
        _mc(2),
        options=RunOptions(
            device="cpu", generator="tests.sandbox_factories:rank1_oom", timeout=120, memory_limit=700 * 1024**2
        ),
        env=cli_env(),
    )
    o = _init(ctx)
    assert o.classified.outcome == "oom-host", (o.classified, [r.classified for r in o.ranks])
    by = {r.rank: r for r in o.ranks}
    assert by[1].classified.outcome == "oom-host" and "rank 1" in o.classified.summary
    if o.proc is not None and o.proc.oom_kills:  # the culprit; the other rank was stopped with it
        assert by[0].classified.outcome in ("stopped", "ok")
    # the supervisor's samples reach the ranks: the hog was seen holding more than the other rank
    assert (by[1].sampled_rss_bytes or 0) > (by[0].sampled_rss_bytes or 0) > 0, o.ranks
    report = run(ctx, [s for s in registry().specs if s.id.startswith("INIT")], Policy())
    [f] = [f for f in report.findings if f.check_id == "INIT001"]
    assert "rank 1" in f.message and f.details["ranks"][1]["outcome"] == "oom-host"


def test_one_rank_crash_and_a_lying_rank(mid_model: Path) -> None:
    for factory in ("rank1_segfault", "rank_lies"):
        o = _init(_ctx(mid_model, 2, generator=f"tests.sandbox_factories:{factory}", timeout=120))
        by = {r.rank: r for r in o.ranks}
        assert o.classified.outcome == "crash", (factory, o.classified)
        assert by[1].classified.outcome == "crash" and by[1].exitcode == -11, by[1]
        assert "SIGSEGV" in by[1].classified.summary
        assert by[0].classified.outcome in ("stopped", "ok")


def test_one_rank_raises(mid_model: Path) -> None:
    o = _init(_ctx(mid_model, 2, generator="tests.sandbox_factories:rank1_raises", timeout=120))
    by = {r.rank: r for r in o.ranks}
    assert o.classified.outcome == "error" and "rank 1" in o.classified.summary
    assert "refuses its shard" in by[1].evidence


def test_a_rank_that_never_arrives_is_named(mid_model: Path) -> None:
    ctx = _ctx(mid_model, 2, generator="tests.sandbox_factories:rank1_hangs", timeout=30)
    o = _init(ctx)
    assert o.classified.outcome == "timeout"
    assert "rank 1" in o.classified.summary and "never arrived" in o.classified.summary
    assert [r.rank for r in o.missing_at_collective] == [1]
    report = run(ctx, [s for s in registry().specs if s.id.startswith("INIT")], Policy())
    [f] = [f for f in report.findings if f.check_id == "INIT004"]
    assert f.details["missing"] == [1] and f.details["waiting"] == [0]


def test_ranks_zero_keeps_one_process(mid_model: Path) -> None:
    o = _init(_ctx(mid_model, 2, ranks="0"))
    assert o.classified.outcome == "ok" and not o.ranks and o.note and "--ranks 0" in o.note


def test_family_without_a_tp_plan_falls_back_to_one_process(make_model: Any) -> None:
    """Baichuan's code ships with the weights (no transformers TP plan): one process, with a warning."""
    m = make_model(family="baichuan", dtype="float16")
    ctx = Context(m, _mc(2, trust_remote_code=True), options=RunOptions(device="cpu", static=True), env={})
    req = ctx.init_request()
    assert req.world_size == 1 and req.note and "no tensor-parallel plan" in req.note


def test_launcher_failure_summary_is_parsed() -> None:
    text = """
Root Cause (first observed failure):
[0]:
  time      : 2026-11-26_18:02:43
  host      : localhost
  rank      : 3 (local_rank: 1)
  exitcode  : -9 (pid: 123)
  error_file: <N/A>
Other Failures:
[1]:
  rank      : 2 (local_rank: 0)
  exitcode  : 1 (pid: 122)
"""
    fails, root = agent_failures(text)
    assert fails == {3: -9, 2: 1} and root == 3


def _killed_with_the_tree(rank: int, rss: int | None, exitcode: int | None = None) -> Any:
    from npu_preflight.sandbox import Classified, RankOutcome

    c = Classified("oom-host", "killed at stage generator with the tree over the memory cap")
    stages = ({"stage": "generator", "duration_s": None},)
    return RankOutcome(rank, rank, 0, c, "generator", stages, exitcode=exitcode, sampled_rss_bytes=rss)


def test_a_tree_over_its_cap_with_no_root_rank_blames_the_largest_rank() -> None:
    """The OOM killer took the launcher as well, so no rank was named and every rank reads "killed
    with the tree": the rank the supervisor saw holding the most memory is the culprit, the others
    were stopped with it. Without samples, or with the launcher's word, nothing is guessed."""
    from npu_preflight.proc import ProcOutcome
    from npu_preflight.sandbox import InitRequest, _blame_the_largest, overall

    proc = ProcOutcome(None, 9, False, 1.0, None, oom_kills=2)
    req = InitRequest(weights_dir=Path("."), model_config=_mc(2), device="cpu", dtype="bfloat16", world_size=2)
    ranks = _blame_the_largest([_killed_with_the_tree(0, 300 * 2**20), _killed_with_the_tree(1, 1200 * 2**20)])
    assert [r.classified.outcome for r in ranks] == ["stopped", "oom-host"]
    assert "after rank 1 took it over the memory cap" in ranks[0].classified.summary
    c = overall(tuple(ranks), proc, "", req)
    assert c.outcome == "oom-host" and c.summary.startswith("rank 1: ") and "1,200 MiB" in c.summary
    for unsure in (
        [_killed_with_the_tree(0, None), _killed_with_the_tree(1, None)],  # nothing sampled
        [_killed_with_the_tree(0, 300), _killed_with_the_tree(1, 1200, exitcode=-9)],  # the launcher said
        [_killed_with_the_tree(0, 300)],  # one rank: nothing to choose
    ):
        assert _blame_the_largest(list(unsure)) == unsure


def test_the_supervisor_samples_a_process_by_the_pid_it_knows_itself_by() -> None:
    from npu_preflight.proc import _pid_sizes
    from npu_preflight.sandbox.supervisor import rss_as_seen_inside

    me = rss_as_seen_inside(os.getpid())
    assert me is not None and me[0] == os.getpid() and me[1] > 10 * 2**20
    assert rss_as_seen_inside(2**22 + 12345) is None  # no such process
    assert _pid_sizes([[7, 100], [8, -1], [True, 5], ["9", 1], [10], [11, 2, 3], 12, [13, 4]]) == {7: 100, 13: 4}
    assert _pid_sizes({"7": 100}) == {} and _pid_sizes(None) == {}


def test_multi_node_options_are_validated(llama: Path) -> None:
    r = CliRunner().invoke(main, ["check", str(llama), "--nnodes", "2", "--no-out"])
    assert r.exit_code == 2 and "--rdzv-endpoint" in r.output
    r = CliRunner().invoke(main, ["check", str(llama), "--nnodes", "2", "--node-rank", "2", "--no-out"])
    assert r.exit_code == 2 and "--node-rank 2" in r.output
    r = CliRunner().invoke(main, ["check", str(llama), "--rdzv-endpoint", "host:99999", "--no-out"])
    assert r.exit_code == 2 and "HOST:PORT" in r.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_nodes_on_localhost_and_a_merged_report(mid_model: Path, tmp_path: Path) -> None:
    port = _free_port()
    procs = []
    for node in (0, 1):
        args = [sys.executable, "-m", "npu_preflight", "check", str(mid_model), "--device", "cpu"]
        # a transformers deployment (no backend_type): float32 and MindIE's keys are not its concern
        args += ["--set", "world_size=2", "--set", "max_seq_len=256"]
        args += ["--nnodes", "2", "--node-rank", str(node), "--rdzv-endpoint", f"127.0.0.1:{port}"]
        args += [
            "--timeout",
            "180",
            "--memory-limit",
            "3GiB",
            "--out",
            str(tmp_path / f"node{node}"),
            "--format",
            "json",
        ]
        procs.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env(), cwd=ROOT))
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err.decode()[-3000:]
    docs = [json.loads((tmp_path / f"node{n}" / "report.json").read_text()) for n in (0, 1)]
    # c10d orders the nodes as they join (--node-rank is the operator's label): one rank each
    assert sorted(r["rank"] for d in docs for r in d["init"]["ranks"]) == [0, 1]
    assert all(len(d["init"]["ranks"]) == 1 for d in docs)
    res = CliRunner().invoke(
        main,
        [
            "merge",
            str(tmp_path / "node0" / "report.json"),
            str(tmp_path / "node1" / "report.json"),
            "-o",
            str(tmp_path / "cluster.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    cluster = json.loads((tmp_path / "cluster.json").read_text())
    assert cluster["verdict"] == "ready" and [r["rank"] for r in cluster["init"]["ranks"]] == [0, 1]
    assert [n["node_rank"] for n in cluster["cluster"]["nodes"]] == [0, 1]
    assert os.path.exists(tmp_path / "cluster.json")
