#!/usr/bin/python3
"""Training throughput of compressor beside PyTorch 1.13, measured in one run.

Alternates ROUNDS times between benchmarks/train/bench_train and
tools/bench_pytorch.py (the same models or conv shapes, optimizer and thread
counts), so both see the same machine state, and prints a markdown table of the
medians of each and their ratio (compressor / PyTorch; above 1 = compressor
faster).

    /usr/bin/python3 tools/bench_train_compare.py [--build build/release] [--rounds 3]
        [--threads 1 2] [--min-time S]
        [--torch-isa avx2]   # also cap PyTorch's oneDNN at AVX2, as on an AVX2-only CPU
        [--convs]            # Conv2d forward/backward instead of the training steps
        [--isa avx2]         # run ours on this COMPRESSOR_ISA path (default: the best)

Default: the training steps (BM_TrainStep_*), in images/s, 3 s per benchmark.
--convs: BM_Conv2dForward / BM_Conv2dBackward on every shape bench_train lists,
in GFLOP/s (bench_train's FLOP count), 1 s per benchmark. PyTorch runs each
step or shape in NCHW (contiguous) and in channels_last and keeps the faster,
named in the table. The table names our ISA path (bench_train's kernel_path).
"""
import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

# mode -> (our benchmark filter, metric of ours, metric of bench_pytorch.py, default min time)
MODES = {
    "steps": ("TrainStep", "images/s", "images_per_second", 3.0),
    "convs": ("Conv2d(Forward|Backward)", "GFLOP/s", "GFLOP/s", 1.0),
}


def bench_train(build):
    return os.path.join(build, "benchmarks/train/bench_train")


def split_name(name):
    """"BM_Conv2dForward/N:8/.../s:1/threads:2/real_time" -> ("Conv2dForward/N:8/.../s:1", 2)."""
    base, rest = name.replace("BM_", "", 1).split("/threads:")
    return base, int(rest.split("/")[0])


def conv_shapes(build, threads):
    """The conv shapes bench_train runs, as "N:../HW:../Cin:../Cout:../k:../s:.." strings."""
    out = subprocess.run([bench_train(build), "--benchmark_list_tests",
                          "--benchmark_filter=^BM_Conv2dForward/.*threads:(%s)/"
                          % "|".join(map(str, threads))],
                         check=True, capture_output=True, text=True).stdout
    shapes = [split_name(line)[0].split("/", 1)[1] for line in out.split()]
    return list(dict.fromkeys(shapes))


def ours(build, mode, threads, min_time, isa):
    """Our figures by (name, threads), and the ISA path they ran on."""
    bench_filter, metric = MODES[mode][0], MODES[mode][1]
    env = dict(os.environ)
    if isa:
        env["COMPRESSOR_ISA"] = isa
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([bench_train(build),
                        "--benchmark_filter=%s.*threads:(%s)/" % (bench_filter,
                                                                   "|".join(map(str, threads))),
                        f"--benchmark_min_time={min_time:g}", "--benchmark_out=" + out.name,
                        "--benchmark_out_format=json"], check=True, stdout=subprocess.DEVNULL,
                       env=env)
        data = json.load(open(out.name))
    return ({split_name(b["name"]): b[metric] for b in data["benchmarks"]},
            data["context"].get("kernel_path", "?"))


def torch(mode, threads, isa, min_time, shapes):
    env = dict(os.environ)
    if isa:
        env["DNNL_MAX_CPU_ISA"] = isa.upper()
        env["ONEDNN_MAX_CPU_ISA"] = isa.upper()
    extra = ["--convs", "--shapes", *shapes] if mode == "convs" else []
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(["/usr/bin/python3", os.path.join(HERE, "bench_pytorch.py"), "--threads",
                        *map(str, threads), "--min-time", f"{min_time:g}", *extra,
                        "--json", out.name], check=True, env=env, stdout=subprocess.DEVNULL)
        data = json.load(open(out.name))
    metric = MODES[mode][2]
    return {(r["name"], r["threads"]): (r[metric], r.get("memory_format"))
            for r in data["results"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build", "release"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--torch-isa", default="")
    ap.add_argument("--isa", default="",
                    help="COMPRESSOR_ISA for our side (scalar, avx2, avx_vnni, avx512, avx512_vnni)")
    ap.add_argument("--min-time", type=float, default=None,
                    help="seconds per benchmark, both sides (default 3, with --convs 1)")
    ap.add_argument("--convs", action="store_true",
                    help="compare Conv2d forward/backward (GFLOP/s) instead of training steps")
    args = ap.parse_args()
    mode = "convs" if args.convs else "steps"
    min_time = MODES[mode][3] if args.min_time is None else args.min_time
    shapes = conv_shapes(args.build, args.threads) if args.convs else []
    a, b, fmt = {}, {}, collections.defaultdict(collections.Counter)
    path = "?"
    for r in range(args.rounds):
        figures, path = ours(args.build, mode, args.threads, min_time, args.isa)
        for k, v in figures.items():
            a.setdefault(k, []).append(v)
        for k, (v, f) in torch(mode, args.threads, args.torch_isa, min_time, shapes).items():
            b.setdefault(k, []).append(v)
            fmt[k][f] += 1
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    if args.convs:
        # bench_train's order: direction, then threads, then shape.
        print(f"| benchmark | threads | compressor GFLOP/s | PyTorch GFLOP/s | ratio | PyTorch layout |")
        print(f"|---|---|---|---|---|---|")
        for k in a:
            if k not in b:
                continue
            ma, mb = statistics.median(a[k]), statistics.median(b[k])
            layout = " / ".join(f"{f} ({c}/{args.rounds})" if len(fmt[k]) > 1 else f
                                for f, c in fmt[k].most_common())
            print(f"| {k[0]} | {k[1]} | {ma:.1f} | {mb:.1f} | {ma / mb:.2f}x | {layout} |")
    else:
        print(f"| benchmark | threads | compressor images/s ({path}) | PyTorch images/s | ratio "
              f"| PyTorch layout |")
        print(f"|---|---|---|---|---|---|")
        for k in sorted(a):
            if k not in b:
                continue
            ma, mb = statistics.median(a[k]), statistics.median(b[k])
            layout = " / ".join(f"{f} ({c}/{args.rounds})" if len(fmt[k]) > 1 else f
                                for f, c in fmt[k].most_common())
            print(f"| {k[0]} | {k[1]} | {ma:.1f} | {mb:.1f} | {ma / mb:.2f}x | {layout} |")
    missing = sorted(set(a) ^ set(b))
    if missing:
        print(f"\nnot in both (left out): {', '.join(f'{n} threads {t}' for n, t in missing)}")
    print(f"\nmedians of {args.rounds} alternating rounds, {min_time:g} s per benchmark; our ISA "
          f"path: {path}; PyTorch "
          f"oneDNN ISA cap: {args.torch_isa or 'none (its default dispatch)'}; load average "
          f"{os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
