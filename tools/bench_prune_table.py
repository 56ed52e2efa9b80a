#!/usr/bin/env python3
"""Turns bench_prune's BM_PrunedModel JSON output into the latency tables of
docs/pruning.md (issue 14): per network, one row per pruning configuration,
fp32 and int8 at 1 and 2 threads, each time beside its speed-up against the
dense model of the same precision and thread count, measured in the same run.

Usage:
  build/release/benchmarks/prune/bench_prune --benchmark_filter=PrunedModel \\
      --benchmark_repetitions=3 --benchmark_min_time=0.3 \\
      --benchmark_out=prune.json --benchmark_out_format=json
  tools/bench_prune_table.py prune.json [more.json ...]

Each cell is the median over every repetition in every file (run_type
"iteration"); speed-ups are dense median / pruned median. With several files,
pass only files measured on the same machine and ISA path.
"""
import json
import statistics
import sys
from collections import defaultdict

NETS = {0: "ResNet-18, one 112x112 frame",
        1: "ResNet-18, one 8-frame clip (8 x 112x112)",
        2: "CifarCnn, batch 1 (32x32)",
        3: "CifarCnn, batch 128 (32x32)"}
KINDS = {0: "dense", 1: "channels", 2: "unstructured"}


def parse_name(name):
    """BM_PrunedModel/net:0/kind:1/pct:30/int8:0/threads:1/real_time -> dict."""
    args = {}
    for part in name.split("/")[1:]:
        if ":" in part:
            k, v = part.split(":")
            args[k] = int(v)
    return args


def main(paths):
    if not paths:
        sys.exit(__doc__)
    times = defaultdict(list)  # (net, kind, pct, int8, threads) -> [ms]
    info = {}                  # (net, kind, pct, int8, threads) -> (MACs_vs_dense, sparse_layers)
    isa_paths = set()
    context = None
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        context = context or data.get("context", {})
        for b in data["benchmarks"]:
            if not b["name"].startswith("BM_PrunedModel/") or b.get("run_type") != "iteration":
                continue
            if b.get("error_occurred"):
                sys.exit(f"{path}: {b['name']} failed: {b.get('error_message')}")
            a = parse_name(b["name"])
            key = (a["net"], a["kind"], a["pct"], a["int8"])
            assert b["time_unit"] == "ms", b["name"]
            times[key + (a["threads"],)].append(b["real_time"])
            info[key + (a["threads"],)] = (b["MACs_vs_dense"], int(b["sparse_layers"]))
            isa_paths.add(b.get("label", "?"))
    if not times:
        sys.exit("no BM_PrunedModel results in " + ", ".join(paths))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"ISA path(s): {', '.join(sorted(isa_paths))}; "
          f"CPU: {context.get('num_cpus')} x {context.get('mhz_per_cpu')} MHz; "
          f"{len(next(iter(times.values())))} timings per cell\n")

    def cell(net, kind, pct, int8, threads):
        t = med.get((net, kind, pct, int8, threads))
        d = med.get((net, 0, 0, int8, threads))
        if t is None:
            return "-"
        if kind == 0 or d is None:
            return f"{t:.3g} ms"
        return f"{t:.3g} ms ({d / t:.2f}x)"

    for net, title in NETS.items():
        configs = sorted({(k[1], k[2]) for k in info if k[0] == net})
        if not configs:
            continue
        print(f"**{title}**\n")
        print("| model | MACs vs dense | sparse layers, fp32 1/2 threads, int8 1/2 threads "
              "| fp32 1 thread | fp32 2 threads | int8 1 thread | int8 2 threads |")
        print("|---|---|---|---|---|---|---|")
        for kind, pct in configs:
            label = KINDS[kind] + ("" if kind == 0 else f" {pct / 100:.1f}")
            macs = next(v[0] for k, v in info.items() if k[:3] == (net, kind, pct))
            sparse = ", ".join("/".join(str(info[(net, kind, pct, q, t)][1])
                                        if (net, kind, pct, q, t) in info else "-"
                                        for t in (1, 2)) for q in (0, 1))
            cells = [cell(net, kind, pct, q, t) for q in (0, 1) for t in (1, 2)]
            print(f"| {label} | {macs:.2f} | {sparse if kind == 2 else ''} | "
                  + " | ".join(cells) + " |")
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
