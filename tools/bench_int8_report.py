#!/usr/bin/env python3
"""Turns bench_int8's JSON output into the Markdown tables of docs/performance.md.

Usage:
  for i in 1 2 3; do
    build/release/benchmarks/kernels/bench_int8 --benchmark_min_time=0.3 \\
        --benchmark_out=int8.$i.json --benchmark_out_format=json
  done
  tools/bench_int8_report.py int8.1.json int8.2.json int8.3.json

Every ratio compares figures measured in the same run (same process, same
machine state, back to back): int8 GEMM / conv against Eigen fp32 and oneDNN
u8s8s32 on the same shape, batch and thread count; sparse against the dense
kernel of the same type; and each int8 figure as a fraction of the best int8
peak that run's vpmaddubsw+vpmaddwd+vpaddd probe measured (before, at the
start and at the end of the run). With several runs (files), each cell is
the median over the runs of the per-run figure or ratio.
"""
import json
import statistics
import sys
from collections import defaultdict

DENSE = ("int8_conv", "int8_gemm", "int8_gemm_s32", "eigen_f32_gemm", "onednn_u8s8s32_gemm")
NAN = float("nan")


def median(values):
    values = [v for v in values if v == v]
    return statistics.median(values) if values else NAN


def load_run(path):
    with open(path) as f:
        data = json.load(f)
    ctx = data["context"]
    peak = {t: float(ctx.get(f"int8_peak_gops_t{t}", "nan")) for t in (1, 2)}
    fpeak = {t: float(ctx.get(f"f32_peak_gflops_t{t}", "nan")) for t in (1, 2)}
    dense = defaultdict(dict)   # (shape, batch, threads) -> impl -> GOPS
    sparse = defaultdict(dict)  # (shape, threads) -> impl[/sparsity] -> GOPS
    for b in data["benchmarks"]:
        if b.get("error_occurred") or b.get("run_type") == "aggregate":
            continue
        parts = b["name"].split("/")
        impl = parts[0]
        if impl in ("peak_int8", "peak_f32"):
            t = int(parts[2][1:])
            table = peak if impl == "peak_int8" else fpeak
            table[t] = max(table[t], b["GOPS"]) if table[t] == table[t] else b["GOPS"]
        elif len(parts) < 4:
            continue
        elif impl in DENSE:
            dense[(parts[1], parts[2], parts[3])][impl] = b["GOPS"]
        elif impl in ("dense_eigen_f32", "dense_int8"):
            sparse[(parts[1], parts[2])][impl] = b["GOPS"]
        elif impl in ("sparse_f32", "sparse_int8"):
            sparse[(parts[1], parts[2])][f"{impl}/{parts[3]}"] = b["GOPS"]
    return ctx, peak, fpeak, dense, sparse


def main(paths):
    runs = [load_run(p) for p in paths]
    ctx = runs[0][0]
    print(f"Machine: {ctx.get('host_name', '?')}, {ctx.get('num_cpus', '?')} CPUs at "
          f"{ctx.get('mhz_per_cpu', '?')} MHz; kernel path: {ctx.get('kernel_path', '?')}; "
          f"oneDNN max ISA: {ctx.get('onednn_max_isa', 'not built')}; {len(runs)} run(s), "
          "medians over runs")
    loads = ["/".join(f"{x:.1f}" for x in r[0].get("load_avg", [])) or "?" for r in runs]
    print(f"Load average (1/5/15 min) at the start of each run: {'; '.join(loads)}")
    print("Measured peaks per run, int8 GOPS 1 thread / 2 threads; fp32 GFLOP/s: " + "; ".join(
        f"{r[1][1]:.0f} / {r[1][2]:.0f}; {r[2][1]:.0f} / {r[2][2]:.0f}" for r in runs) + "\n")

    keys = list(dict.fromkeys(k for r in runs for k in r[3]))
    print("| shape | batch | threads | int8 conv GOPS | int8 GEMM GOPS | Eigen fp32 GFLOP/s "
          "| oneDNN u8s8s32 GOPS | conv / Eigen | GEMM / oneDNN | GEMM s32 / oneDNN | conv / oneDNN "
          "| conv % of int8 peak | GEMM % of int8 peak |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for key in keys:
        shape, batch, threads = key
        t = int(threads[1:])
        cells = defaultdict(list)
        for _, peak, _, dense, _ in runs:
            r = dense.get(key, {})
            conv, gemm = r.get("int8_conv", NAN), r.get("int8_gemm", NAN)
            s32 = r.get("int8_gemm_s32", NAN)
            eig, dnn = r.get("eigen_f32_gemm", NAN), r.get("onednn_u8s8s32_gemm", NAN)
            for name, v in (("conv", conv), ("gemm", gemm), ("eig", eig), ("dnn", dnn),
                            ("c/e", conv / eig), ("g/d", gemm / dnn), ("s/d", s32 / dnn),
                            ("c/d", conv / dnn),
                            ("c%", 100 * conv / peak[t]), ("g%", 100 * gemm / peak[t])):
                cells[name].append(v)
        m = {k: median(v) for k, v in cells.items()}
        print(f"| {shape} | {batch[1:]} | {t} | {m['conv']:.0f} | {m['gemm']:.0f} | {m['eig']:.0f} "
              f"| {m['dnn']:.0f} | {m['c/e']:.2f} | {m['g/d']:.2f} | {m['s/d']:.2f} | {m['c/d']:.2f} "
              f"| {m['c%']:.0f}% | {m['g%']:.0f}% |")

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
