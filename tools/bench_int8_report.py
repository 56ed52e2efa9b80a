#!/usr/bin/env python3
"""Turns bench_int8's JSON output into the Markdown tables of docs/performance.md.

Usage:
  build/release/benchmarks/kernels/bench_int8 --benchmark_format=json \
      --benchmark_out=int8.json --benchmark_out_format=json
  tools/bench_int8_report.py int8.json

Every ratio compares figures measured in the same run (same process, same
machine state): int8 GEMM / conv against Eigen fp32 and oneDNN u8s8s32 on the
same shape, batch and thread count; sparse against the dense kernel of the
same type; and each int8 figure as a fraction of the int8 peak measured by
the vpmaddubsw+vpmaddwd+vpaddd probe at the start of the run.
"""
import json
import sys
from collections import defaultdict


def gops(b):
    # The GOPS counter is ops * 1e-9 per second: GOPS already.
    return b["GOPS"]


def main(path):
    with open(path) as f:
        data = json.load(f)
    ctx = data["context"]
    peak = {t: float(ctx.get(f"int8_peak_gops_t{t}", "nan")) for t in (1, 2)}
    fpeak = {t: float(ctx.get(f"f32_peak_gflops_t{t}", "nan")) for t in (1, 2)}
    # The best peak seen in the run: the context (measured before the run) and
    # the peak_int8 / peak_f32 probes run at its start and end.
    for b in data["benchmarks"]:
        parts = b["name"].split("/")
        if parts[0] in ("peak_int8", "peak_f32") and not b.get("error_occurred"):
            t = int(parts[2][1:])
            table = peak if parts[0] == "peak_int8" else fpeak
            table[t] = max(table[t], b["GOPS"]) if table[t] == table[t] else b["GOPS"]
    print(f"Machine: {ctx.get('host_name', '?')}, {ctx.get('num_cpus', '?')} CPUs at "
          f"{ctx.get('mhz_per_cpu', '?')} MHz; kernel path: {ctx.get('kernel_path', '?')}; "
          f"oneDNN max ISA: {ctx.get('onednn_max_isa', 'not built')}")
    print(f"Best measured int8 peak (vpmaddubsw+vpmaddwd+vpaddd loop): {peak[1]:.0f} GOPS on 1 thread, "
          f"{peak[2]:.0f} on 2; fp32 FMA peak: {fpeak[1]:.0f} / {fpeak[2]:.0f} GFLOP/s\n")

    dense = defaultdict(dict)   # (shape, batch, threads) -> impl -> GOPS
    sparse = defaultdict(dict)  # (shape, threads) -> impl/sparsity -> GOPS
    for b in data["benchmarks"]:
        if b.get("error_occurred"):
            continue
        parts = b["name"].split("/")
        impl = parts[0]
        if len(parts) < 4:
            continue
        if impl in ("int8_conv", "int8_gemm", "eigen_f32_gemm", "onednn_u8s8s32_gemm"):
            dense[(parts[1], parts[2], parts[3])][impl] = gops(b)
        elif impl in ("dense_eigen_f32", "dense_int8"):
            sparse[(parts[1], parts[2])][impl] = gops(b)
        elif impl in ("sparse_f32", "sparse_int8"):
            sparse[(parts[1], parts[2])][f"{impl}/{parts[3]}"] = gops(b)

    print("| shape | batch | threads | int8 conv GOPS | int8 GEMM GOPS | Eigen fp32 GFLOP/s "
          "| oneDNN u8s8s32 GOPS | conv / Eigen | GEMM / oneDNN | conv / oneDNN | conv % of int8 peak |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (shape, batch, threads), r in dense.items():
        t = int(threads[1:])
        conv, gemm = r.get("int8_conv", float("nan")), r.get("int8_gemm", float("nan"))
        eig, dnn = r.get("eigen_f32_gemm", float("nan")), r.get("onednn_u8s8s32_gemm", float("nan"))
        print(f"| {shape} | {batch[1:]} | {t} | {conv:.0f} | {gemm:.0f} | {eig:.0f} | {dnn:.0f} "
              f"| {conv / eig:.2f} | {gemm / dnn:.2f} | {conv / dnn:.2f} | {100 * conv / peak[t]:.0f}% |")

    if sparse:
        print("\nSparse kernels: speedup over the dense kernel of the same type "
              "(dense-equivalent GOPS ratio, same run)\n")
        pcts = ["s50", "s70", "s80", "s90", "s95"]
        print("| shape | threads | type | dense GOPS | " + " | ".join(p[1:] + "%" for p in pcts) + " |")
        print("|---|---|---|---|" + "---|" * len(pcts))
        for (shape, threads), r in sparse.items():
            for typ, impl, dense_key in (("fp32", "sparse_f32", "dense_eigen_f32"),
                                         ("int8", "sparse_int8", "dense_int8")):
                d = r.get(dense_key)
                if not d:
                    continue
                cells = [f"{r.get(f'{impl}/{p}', float('nan')) / d:.2f}x" for p in pcts]
                print(f"| {shape} | {threads[1:]} | {typ} | {d:.0f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
