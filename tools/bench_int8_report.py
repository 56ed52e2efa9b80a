#!/usr/bin/env python3
"""Turns bench_int8's JSON output into the Markdown tables of docs/performance.md.

Usage:
  for i in 1 2 3; do
    build/release/benchmarks/kernels/bench_int8 --benchmark_min_time=0.3 \\
        --benchmark_out=int8.$i.json --benchmark_out_format=json
  done
  tools/bench_int8_report.py int8.1.json int8.2.json int8.3.json

One table per ISA path of the int8 kernels (benchmark names impl@path/...).
Every ratio compares figures measured in the same run (same process, same
machine state, back to back): int8 GEMM / conv against our fp32 GEMM
(kernels::sgemm on its best path) and oneDNN's int8 matmul (s32 output) on
the same shape, batch and thread count; sparse against the dense kernel of
the same type; and each int8 figure as a fraction of the best peak that
run's probe of the path's instruction stream measured (before, at the start
and at the end of the run). With several runs (files), each cell is the
median over the runs of the per-run figure or ratio.
"""
import json
import statistics
import sys
from collections import defaultdict

NAN = float("nan")
# The instruction stream of each path's int8 GEMM kernel (peak_probe.hpp).
PATH_PROBE = {"avx2": "u8s8_ymm_maddubs", "avx_vnni": "u8s8_ymm_vnni",
              "avx512": "u8s8_zmm_maddubs", "avx512_vnni": "u8s8_zmm_vnni"}


def median(values):
    values = [v for v in values if v == v]
    return statistics.median(values) if values else NAN


def load_run(path):
    with open(path) as f:
        data = json.load(f)
    ctx = data["context"]
    peak = defaultdict(lambda: NAN)  # (probe, threads) -> GOPS
    for key, value in ctx.items():
        if key.startswith("peak_") and key.endswith(("_t1", "_t2")):
            probe = key[len("peak_"):-len("_gops_t1")]
            peak[(probe, int(key[-1]))] = float(value)
    dense = defaultdict(dict)   # (path, shape, batch, threads) -> impl -> GOPS
    base = defaultdict(dict)    # (shape, batch, threads) -> impl -> GOPS (path-independent)
    sparse = defaultdict(dict)  # (shape, threads) -> impl[/sparsity] -> GOPS
    for b in data["benchmarks"]:
        if b.get("error_occurred") or b.get("run_type") == "aggregate":
            continue
        parts = b["name"].split("/")
        impl = parts[0]
        if impl == "peak":
            key = (parts[1], int(parts[3][1:]))
            peak[key] = b["GOPS"] if peak[key] != peak[key] else max(peak[key], b["GOPS"])
        elif len(parts) < 4:
            continue
        elif "@" in impl:
            name, isa = impl.split("@")
            dense[(isa, parts[1], parts[2], parts[3])][name] = b["GOPS"]
        elif impl in ("f32_gemm", "onednn_matmul_s32"):
            base[(parts[1], parts[2], parts[3])][impl] = b["GOPS"]
        elif impl in ("dense_eigen_f32", "dense_int8"):
            sparse[(parts[1], parts[2])][impl] = b["GOPS"]
        elif impl in ("sparse_f32", "sparse_int8"):
            sparse[(parts[1], parts[2])][f"{impl}/{parts[3]}"] = b["GOPS"]
    return ctx, peak, dense, base, sparse


def main(paths):
    runs = [load_run(p) for p in paths]
    ctx = runs[0][0]
    print(f"Machine: {ctx.get('host_name', '?')}, {ctx.get('num_cpus', '?')} CPUs; "
          f"CPU features: {ctx.get('cpu_features', '?')}; int8 paths: "
          f"{ctx.get('kernel_paths', '?')}; oneDNN ISA: {ctx.get('onednn_max_isa', 'not built')}; "
          f"{len(runs)} run(s), medians over runs")
    loads = ["/".join(f"{x:.1f}" for x in r[0].get("load_avg", [])) or "?" for r in runs]
    print(f"Load average (1/5/15 min) at the start of each run: {'; '.join(loads)}")
    probes = sorted({p for r in runs for (p, _) in r[1]})
    print("Measured peaks (best per run), GOPS 1 thread / 2 threads: " + "; ".join(
        f"{p} " + ", ".join(f"{r[1][(p, 1)]:.0f} / {r[1][(p, 2)]:.0f}" for r in runs)
        for p in probes) + "\n")

    isas = list(dict.fromkeys(k[0] for r in runs for k in r[2]))
    for isa in isas:
        probe = PATH_PROBE.get(isa, "?")
        print(f"\nPath {isa} (peak: {probe})\n")
        print("| shape | batch | threads | int8 conv GOPS | int8 GEMM GOPS | GEMM full grid | "
              "fp32 GEMM GFLOP/s | oneDNN s32 GOPS | conv / fp32 | GEMM / oneDNN | "
              "GEMM s32 / oneDNN | conv % of peak | GEMM % of peak |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        keys = list(dict.fromkeys(k[1:] for r in runs for k in r[2] if k[0] == isa))
        for key in keys:
            shape, batch, threads = key
            t = int(threads[1:])
            cells = defaultdict(list)
            for _, peak, dense, base, _ in runs:
                r = dense.get((isa,) + key, {})
                conv, gemm = r.get("int8_conv", NAN), r.get("int8_gemm", NAN)
                s32, full = r.get("int8_gemm_s32", NAN), r.get("int8_gemm_full", NAN)
                f32 = base.get(key, {}).get("f32_gemm", NAN)
                dnn = base.get(key, {}).get("onednn_matmul_s32", NAN)
                pk = peak[(probe, t)]
                for name, v in (("conv", conv), ("gemm", gemm), ("full", full), ("f32", f32),
                                ("dnn", dnn), ("c/f", conv / f32), ("g/d", gemm / dnn),
                                ("s/d", s32 / dnn), ("c%", 100 * conv / pk),
                                ("g%", 100 * gemm / pk)):
                    cells[name].append(v)
            m = {k: median(v) for k, v in cells.items()}
            print(f"| {shape} | {batch[1:]} | {t} | {m['conv']:.0f} | {m['gemm']:.0f} | "
                  f"{m['full']:.0f} | {m['f32']:.0f} | {m['dnn']:.0f} | {m['c/f']:.2f} | "
                  f"{m['g/d']:.2f} | {m['s/d']:.2f} | {m['c%']:.0f}% | {m['g%']:.0f}% |")

    skeys = list(dict.fromkeys(k for r in runs for k in r[4]))
    if skeys:
        print("\nSparse kernels: speedup over the dense kernel of the same type "
              "(dense-equivalent GOPS ratio, same run)\n")
        pcts = ["s50", "s70", "s80", "s90", "s95"]
        print("| shape | threads | type | dense GOPS | " + " | ".join(p[1:] + "%" for p in pcts) + " |")
        print("|---|---|---|---|" + "---|" * len(pcts))
        for key in skeys:
            shape, threads = key
            for typ, impl, dense_key in (("fp32", "sparse_f32", "dense_eigen_f32"),
                                         ("int8", "sparse_int8", "dense_int8")):
                dens = [r[4].get(key, {}).get(dense_key, NAN) for r in runs]
                if all(d != d for d in dens):
                    continue
                cells = []
                for p in pcts:
                    ratios = [r[4].get(key, {}).get(f"{impl}/{p}", NAN) / d for r, d in zip(runs, dens)]
                    cells.append(f"{median(ratios):.2f}x")
                print(f"| {shape} | {threads[1:]} | {typ} | {median(dens):.0f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
