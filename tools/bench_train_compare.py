#!/usr/bin/python3
"""Training throughput of compressor beside PyTorch 1.13, measured in one run.

Alternates ROUNDS times between benchmarks/train/bench_train (the training
step benchmarks) and tools/bench_pytorch.py (the same models, shapes,
optimizer and thread counts), so both see the same machine state, and prints
the median images/s of each and their ratio.

    /usr/bin/python3 tools/bench_train_compare.py [--build build/release] [--rounds 3]
        [--torch-isa avx2]   # also cap PyTorch's oneDNN at AVX2, as on an AVX2-only CPU
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def ours(build, threads):
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([os.path.join(build, "benchmarks/train/bench_train"),
                        "--benchmark_filter=TrainStep.*threads:(%s)/" % "|".join(map(str, threads)),
                        "--benchmark_min_time=3", "--benchmark_out=" + out.name,
                        "--benchmark_out_format=json"], check=True, stdout=subprocess.DEVNULL)
        data = json.load(open(out.name))
    res = {}
    for b in data["benchmarks"]:
        name = b["name"].split("/")[0].replace("BM_", "")
        t = int(b["name"].split("threads:")[1].split("/")[0])
        res[(name, t)] = b["images/s"]
    return res


def torch(threads, isa):
    env = dict(os.environ)
    if isa:
        env["DNNL_MAX_CPU_ISA"] = isa.upper()
        env["ONEDNN_MAX_CPU_ISA"] = isa.upper()
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(["/usr/bin/python3", os.path.join(HERE, "bench_pytorch.py"), "--threads",
                        *map(str, threads), "--json", out.name], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        data = json.load(open(out.name))
    return {(r["name"], r["threads"]): r["images_per_second"] for r in data["results"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build", "release"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--torch-isa", default="")
    args = ap.parse_args()
    a, b = {}, {}
    for r in range(args.rounds):
        for k, v in ours(args.build, args.threads).items():
            a.setdefault(k, []).append(v)
        for k, v in torch(args.threads, args.torch_isa).items():
            b.setdefault(k, []).append(v)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    print(f"| benchmark | threads | compressor images/s | PyTorch images/s | ratio |")
    print(f"|---|---|---|---|---|")
    for k in sorted(a):
        if k not in b:
            continue
        ma, mb = statistics.median(a[k]), statistics.median(b[k])
        print(f"| {k[0]} | {k[1]} | {ma:.1f} | {mb:.1f} | {ma / mb:.2f}x |")
    print(f"\nmedians of {args.rounds} alternating rounds; PyTorch oneDNN ISA cap: "
          f"{args.torch_isa or 'none (its default dispatch)'}; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
