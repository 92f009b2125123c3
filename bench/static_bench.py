"""Static phase on a Llama-70B-shaped folder (80 layers, 30 shards, ~130 GiB sparse) against peers:
(a) safe_open every shard and read every shape; (b) transformers on the meta device, names and shapes
compared. Targets: median ≤ 0.3 s; ≥ 7× faster than (a); ≥ 20× faster than (b); peak RSS ≤ 100 MB;
``--help`` ≤ 0.15 s."""

from __future__ import annotations

import sys

from bench.common import OUT, PY, llama70b, median_run, median_runs, mib, table

PEER_A = """
import glob, sys
from safetensors import safe_open
shapes = {}
for f in sorted(glob.glob(sys.argv[1] + "/*.safetensors")):
    with safe_open(f, framework="np") as s:
        for k in s.keys():
            shapes[k] = s.get_slice(k).get_shape()
print(len(shapes))
"""

PEER_A_PT = PEER_A.replace('framework="np"', 'framework="pt"')

PEER_B = """
import glob, json, sys
import torch, transformers
from safetensors import safe_open
d = sys.argv[1]
cfg = transformers.AutoConfig.from_pretrained(d)
with torch.device("meta"):
    model = transformers.AutoModelForCausalLM.from_config(cfg)
want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
got = {}
for f in sorted(glob.glob(d + "/*.safetensors")):
    with safe_open(f, framework="np") as s:
        for k in s.keys():
            got[k] = tuple(s.get_slice(k).get_shape())
bad = [k for k in want if got.get(k) != want[k]]
print(len(want), len(bad))
"""


def main(n: int = 7) -> dict[str, float]:
    folder = llama70b()
    ours = [PY, "-m", "npu_preflight", "check", str(folder), "--static", "--out", str(OUT / "static-report")]
    ours_mc = [
        *ours,
        "--target-device",
        "910B3",
        "--set",
        "backend_type=atb",
        "--set",
        "world_size=8",
        "--set",
        "rank=0",
        "--set",
        "npu_device_id=0",
        "--set",
        "max_seq_len=8192",
    ]
    with_tok = llama70b(tokenizer=True)
    # every command in alternating rounds (``median_runs``); only (b), 4 s a run, is measured apart
    (
        (w_ours, r_ours),
        (w_noout, r_noout),
        (w_tok, r_tok),
        (w_tok_noout, r_tok_noout),
        (w_mc, r_mc),
        (w_help, _),
        (w_a, r_a),
        (w_apt, r_apt),
    ) = median_runs(
        [
            ours,
            [*ours[:6], "--no-out"],
            [PY, "-m", "npu_preflight", "check", str(with_tok), "--static", "--out", str(OUT / "static-report-tok")],
            [PY, "-m", "npu_preflight", "check", str(with_tok), "--static", "--no-out"],
            ours_mc,
            [PY, "-m", "npu_preflight", "--help"],
            [PY, "-c", PEER_A, str(folder)],
            [PY, "-c", PEER_A_PT, str(folder)],
        ],
        n,
    )
    w_b, r_b = median_run([PY, "-c", PEER_B, str(folder)], max(3, n // 2))
    rows = [
        ["npu-preflight check --static", f"{w_ours:.3f} s", mib(r_ours), "1.0×"],
        ["  the same, terminal only (--no-out)", f"{w_noout:.3f} s", mib(r_noout), f"{w_ours / w_noout:.2f}×"],
        ["  + model_config, --target-device (plan, DIST, MC)", f"{w_mc:.3f} s", mib(r_mc), f"{w_ours / w_mc:.2f}×"],
        ["  with a 150k-token tokenizer.json (6 MB) instead", f"{w_tok:.3f} s", mib(r_tok), f"{w_ours / w_tok:.2f}×"],
        [
            "  the same, terminal only (--no-out)",
            f"{w_tok_noout:.3f} s",
            mib(r_tok_noout),
            f"{w_ours / w_tok_noout:.2f}×",
        ],
        ["(a) safe_open every shard, every shape (framework=np)", f"{w_a:.3f} s", mib(r_a), f"{w_a / w_ours:.2f}×"],
        ["(a) the same with framework=pt (imports torch)", f"{w_apt:.3f} s", mib(r_apt), f"{w_apt / w_ours:.1f}×"],
        ["(b) transformers meta device + compare", f"{w_b:.3f} s", mib(r_b), f"{w_b / w_ours:.1f}×"],
        ["npu-preflight --help", f"{w_help:.3f} s", "", ""],
    ]
    print(f"static phase, Llama-70B-shaped folder (80 layers, 30 shards, sparse), median of {n} alternating rounds")
    print(table(rows, ["command", "wall", "peak RSS", "peer wall / ours"]))
    for name, ok in (
        ("median ≤ 0.3 s", w_ours <= 0.3),
        ("≥ 7× faster than (a, np)", w_a / w_ours >= 7),
        ("--no-out ≤ 1.0× the time of (a, np)", w_noout <= w_a),
        ("--no-out peak RSS ≤ 30 MB", r_noout <= 30e6),
        ("≥ 7× faster than (a, pt)", w_apt / w_ours >= 7),
        ("≥ 20× faster than (b)", w_b / w_ours >= 20),
        ("peak RSS ≤ 100 MB", r_ours <= 100e6),
        ("150k-token tokenizer, --no-out ≤ 0.15 s", w_tok_noout <= 0.15),
        ("150k-token tokenizer, peak RSS ≤ 100 MB", max(r_tok, r_tok_noout) <= 100e6),
        ("--help ≤ 0.15 s", w_help <= 0.15),
    ):
        print(f"  target {name}: {'met' if ok else 'NOT met'}")
    return {
        "ours_s": w_ours,
        "ours_mc_s": w_mc,
        "ours_noout_s": w_noout,
        "peer_a_s": w_a,
        "peer_a_pt_s": w_apt,
        "peer_b_s": w_b,
        "rss": r_ours,
        "help_s": w_help,
        "tok_s": w_tok,
        "tok_noout_s": w_tok_noout,
    }


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
