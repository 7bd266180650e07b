"""Local CPU language-model generation: measured greedy decode vs chipfit's prediction.

Not a test: it measures wall time on whatever machine runs it and prints the figures. Run it on
a quiet machine (other processes slow the measurement and the calibration alike):

    python benchmarks/llm_cpu.py                 # calibrate, then measure and predict
    python benchmarks/llm_cpu.py --quick         # a tiny smoke run (checks the script works)
    python benchmarks/llm_cpu.py --json out.json
    python benchmarks/llm_cpu.py --jax           # also the JAX port's decode rate (measured)

For each small Llama-family config (random weights, float32, transformers eager on
``torch:cpu``) and batch, it runs real greedy generation against a KV cache
(``chipfit.workloads.llm.greedy_generate``; ``--repeats`` times, the median step kept) and
sets the measured per-sequence decode tokens/s beside ``chipfit llm``'s eager-stack
prediction for ``local`` (the calibrated CPU: ``chipfit calibrate --devices torch:cpu`` runs
first unless ``--keep-calibration`` finds one). The issue's target: decode within 20%.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile

# (name, hidden, intermediate, layers, heads, kv heads, vocab): from 4M to ~150M parameters
CONFIGS = [("llama-h256-l4", 256, 688, 4, 8, 4, 8192),
           ("llama-h512-l8", 512, 1376, 8, 8, 4, 16384),
           ("llama-h1024-l8", 1024, 2752, 8, 16, 8, 32000)]
QUICK = [("llama-h64-l2", 64, 128, 2, 4, 2, 256)]


def _config(name: str, hidden: int, inter: int, layers: int, heads: int, kv: int,
            vocab: int) -> dict:
    return {"_name": name, "model_type": "llama", "hidden_size": hidden,
            "intermediate_size": inter, "num_hidden_layers": layers,
            "num_attention_heads": heads, "num_key_value_heads": kv, "vocab_size": vocab,
            "max_position_embeddings": 4096, "tie_word_embeddings": False}


def measure(cfg: dict, batch: int, prompt: int, gen: int, repeats: int) -> dict:
    import torch

    from chipfit.workloads.llm import build_model, greedy_generate

    model = build_model(cfg, "cpu", "float32")
    ids = torch.randint(0, cfg["vocab_size"], (batch, prompt),
                        generator=torch.Generator().manual_seed(0))
    # warm-up over the full length: the first pass at each new context length is slower
    # (kernel selection per shape), which serving at steady state no longer pays
    greedy_generate(model, ids, gen)
    runs = [greedy_generate(model, ids, gen) for _ in range(repeats)]
    step = statistics.median(s for r in runs for s in r.step_s)
    return {"prefill_s": statistics.median(r.prefill_s for r in runs), "step_s": step,
            "decode_tokens_per_s": 1.0 / step, "source": "measured"}


def measure_jax(cfg: dict, batch: int, prompt: int, gen: int, repeats: int) -> dict:
    """The same generation in JAX (jitted decode step, same weights): measured only."""
    import torch

    from chipfit.workloads.llm import build_model
    from chipfit.workloads.llm_jax import greedy_generate_jax

    model = build_model(cfg, "cpu", "float32")
    ids = torch.randint(0, cfg["vocab_size"], (batch, prompt),
                        generator=torch.Generator().manual_seed(0))
    runs = [greedy_generate_jax(model, ids, gen) for _ in range(repeats)]
    step = statistics.median(s for r in runs for s in r.step_s)
    return {"prefill_s": statistics.median(r.prefill_s for r in runs), "step_s": step,
            "decode_tokens_per_s": 1.0 / step, "source": "measured"}


def predict(cfg: dict, batch: int, prompt: int, gen: int) -> dict:
    from chipfit.pipelines.llm import llm_report

    row = llm_report(cfg, ["local"], prompt, gen, batch, "float32", stack="eager").rows[0]
    if row.prediction is None:
        raise SystemExit(f"no local prediction: {row.why}")
    p = row.prediction
    return {"ttft_s": p.ttft_s, "step_s": p.step_s, "decode_tokens_per_s":
            p.decode_tokens_per_s, "bound": p.decode_bound,
            "decode_seconds_by_bound": dict(p.decode_parts), "source": "predicted"}


def _calibrate(keep: bool, quick: bool) -> None:
    from chipfit.pipelines.calibrate import calibrate, load_calibration, save_calibration

    if keep and load_calibration("torch:cpu") is not None:
        return
    print("calibrating torch:cpu ...", flush=True)
    save_calibration(calibrate("torch:cpu", quick=quick, dtypes=("float32",)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run only")
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--gen-len", type=int, default=64)
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep-calibration", action="store_true",
                        help="reuse the calibration under CHIPFIT_HOME if there is one")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    parser.add_argument("--jax", action="store_true",
                        help="also measure the same generation in JAX on its CPU (no prediction)")
    args = parser.parse_args()
    if not args.keep_calibration and "CHIPFIT_HOME" not in os.environ:
        os.environ["CHIPFIT_HOME"] = tempfile.mkdtemp(prefix="chipfit-llm-cpu-")
    _calibrate(args.keep_calibration, args.quick)
    prompt, gen = (8, 4) if args.quick else (args.prompt_len, args.gen_len)
    batches = [1] if args.quick else [int(b) for b in args.batches.split(",")]
    rows = []
    for spec in QUICK if args.quick else CONFIGS:
        cfg = _config(*spec)
        for batch in batches:
            m = measure(cfg, batch, prompt, gen, 1 if args.quick else args.repeats)
            p = predict(cfg, batch, prompt, gen)
            err = (p["decode_tokens_per_s"] - m["decode_tokens_per_s"]) / m["decode_tokens_per_s"]
            rows.append({"config": spec[0], "batch": batch, "prompt_len": prompt,
                         "gen_len": gen, "measured": m, "predicted": p, "decode_error": err})
            print(f"{spec[0]:16s} batch {batch:3d}: decode measured "
                  f"{m['decode_tokens_per_s']:9.1f} tok/s, predicted "
                  f"{p['decode_tokens_per_s']:9.1f} tok/s ({err:+.0%}, {p['bound']}); "
                  f"prefill measured {m['prefill_s'] * 1e3:.1f} ms, predicted "
                  f"{p['ttft_s'] * 1e3:.1f} ms", flush=True)
            parts = ", ".join(f"{k} {v * 1e3:.2f}" for k, v in p["decode_seconds_by_bound"].items())
            print(f"{'':16s}   step measured {m['step_s'] * 1e3:.2f} ms, predicted "
                  f"{p['step_s'] * 1e3:.2f} ms ({parts} ms)", flush=True)
            if args.jax:
                rows[-1]["measured_jax"] = measure_jax(cfg, batch, prompt, gen,
                                                       1 if args.quick else args.repeats)
                print(f"{'':16s}   jax decode measured "
                      f"{rows[-1]['measured_jax']['decode_tokens_per_s']:9.1f} tok/s", flush=True)
    errors = sorted(abs(r["decode_error"]) for r in rows)
    print(f"median |decode error| {statistics.median(errors):.0%} over {len(rows)} cases "
          f"(target 20%); threads {os.environ.get('OMP_NUM_THREADS', 'default')}, "
          f"cpu count {os.cpu_count()}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
