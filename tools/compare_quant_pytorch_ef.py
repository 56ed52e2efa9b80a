#!/usr/bin/python3
"""PyTorch 1.13's eager static int8 quantization of the EF regressor, on the same
trained weights and the same calibration and test clips as compressor's PTQ,
beside compressor's own figures: test MAE, file size and latency of one clip,
in one run, same threads. The EF counterpart of compare_quant_pytorch.py.

    /usr/bin/python3 tools/compare_quant_pytorch_ef.py --run DIR --ours build/release
        [--observer auto] [--threads 1 2] [--min-time S]
        [--full-size-rounds R] [--calibration-sets K [--skip-latency]] [--json out.json]

DIR is an ef_experiment --out folder: its baseline.safetensors (an
EfRegressor checkpoint, torchvision names and PyTorch layouts) and its
results.json (the configuration it was trained with: data, frames, size,
batch, calibration batches, weight grid, seed; our PTQ's observer is
--observer). Run the script from
the folder ef_experiment ran in (its default synthetic set, synthetic_echo/,
is relative to it; it is generated again, identically, if missing).

For each thread count, ef_experiment --no-train-baseline --mode quantization
--qat-epochs 0 runs on a copy of the checkpoint: our fp32 and PTQ int8 rows
(test MAE, file size, median latency of one clip, kernel path). The first of
those runs also writes the clips (--export-tensors): the calibration clips
its PTQ used and the test clips with their EF, normalised, so that PyTorch
sees the very same inputs. PyTorch then runs the same network (a quantizable
ResNet-18 trunk per frame built from the checkpoint's shapes, so any width or
channel plan; temporal mean, or mean, max and min concatenated; the linear
head): the fp32 eager model (contiguous and channels_last, the faster kept)
and the TorchScript-frozen one (optimize_for_inference), and for each
quantized engine and two qconfigs (the engine's default, and the histogram
observer for activations) the fused, calibrated and converted int8 model. The
fp32 MAE of the port must equal ours (checked), else the comparison stops.

A second table is the issue's latency target: the full-size model (width 1,
mean pooling, one clip of 8 frames of 112x112, random weights: dense latency
does not depend on the values) on both sides: ours from bench_quant_models
(ef_clip: fp32, int8 on the full weight grid, PTQ's default, and on the
narrow grid, which AVX2 machines run faster; the fastest kernel path per
precision and thread count), PyTorch's
fp32 eager and JIT and each engine's int8 (default qconfig, calibrated on 4
random clips). With --full-size-rounds R the table is measured R times,
PyTorch's rows and ours alternating (the shared VM's speed drifts over
minutes, and the two sides are timed minutes apart), and shows each cell's
median; our int8 time over PyTorch's fastest int8 engine's follows, per
round and its median.

With --calibration-sets K > 1, PTQ's spread over calibration sets is measured
too (test MAE only): set k is the run's calibration clips taken from training
clip k C on (C = calibration batches x batch size; ef_experiment
--calibration-offset k C, which exports them); every engine's default qconfig
and compressor's PTQ calibrate on the same clips. The printout ends with each
model's mean and standard deviation over the sets and compressor's mean
paired difference against each engine with its standard error.
"""
import argparse
import copy
import json
import os
import shutil
import subprocess
import statistics
import sys
import tempfile
import warnings

import torch
import torch.ao.quantization as tq
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_quant_pytorch import (add_spread_args, batches_of, check_spread_args, engines,  # noqa: E402
                                   fastest_model_times, median_ms, print_spread, pytorch_int8, saved_bytes)
from make_golden import read_safetensors  # noqa: E402


# ---- the model ----------------------------------------------------------------


def conv_bn(c_in, c_out, k, stride):
    return nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out)


class Block(nn.Module):
    """torchvision's BasicBlock (names conv1, bn1, conv2, bn2, downsample.0/1) with
    the residual add + ReLU as a FloatFunctional, as its quantizable version has."""

    def __init__(self, c_in, mid, c_out, stride):
        super().__init__()
        self.conv1, self.bn1 = conv_bn(c_in, mid, 3, stride)
        self.relu1 = nn.ReLU()
        self.conv2, self.bn2 = conv_bn(mid, c_out, 3, 1)
        self.downsample = nn.Sequential(*conv_bn(c_in, c_out, 1, stride)) if stride != 1 or c_in != c_out else None
        self.add_relu = nn.quantized.FloatFunctional()

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.add_relu.add_relu(out, x if self.downsample is None else self.downsample(x))

    def fuse(self):
        tq.fuse_modules(self, [["conv1", "bn1", "relu1"], ["conv2", "bn2"]], inplace=True)
        if self.downsample is not None:
            tq.fuse_modules(self.downsample, [["0", "1"]], inplace=True)


class Trunk(nn.Module):
    """ResNet-18 up to the global average pool; out(name) gives each conv's output
    channels (from a checkpoint, or torchvision's widths)."""

    def __init__(self, out):
        super().__init__()
        self.conv1, self.bn1 = conv_bn(3, out("conv1"), 7, 2)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c = out("conv1")
        for s in range(4):
            blocks = []
            for b in range(2):
                name = f"layer{s + 1}.{b}"
                blocks.append(Block(c, out(f"{name}.conv1"), out(f"{name}.conv2"), 2 if s > 0 and b == 0 else 1))
                c = out(f"{name}.conv2")
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.features = c

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def fuse(self):
        tq.fuse_modules(self, [["conv1", "bn1", "relu"]], inplace=True)
        for s in range(4):
            for block in getattr(self, f"layer{s + 1}"):
                block.fuse()


class QuantEf(nn.Module):
    """compressor's EfRegressor (models/ef_regressor.hpp) with quant stubs. Takes the
    frames of whole clips, (N*T, 3, H, W), `frames` per clip."""

    def __init__(self, out, pool, frames):
        super().__init__()
        self.quant = tq.QuantStub()
        self.backbone = Trunk(out)
        self.pool_mode, self.frames = pool, frames
        self.cat = nn.quantized.FloatFunctional()  # unused with mean pooling (its observer sees nothing)
        self.head = nn.Linear(self.backbone.features * (3 if pool == "mean_max_min" else 1), 1)
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        f = self.backbone(self.quant(x))
        f = f.reshape(f.shape[0] // self.frames, self.frames, f.shape[1])
        pooled = torch.mean(f, 1)
        if self.pool_mode == "mean_max_min":  # [mean | max | min] over T, one scale
            pooled = self.cat.cat([pooled, torch.max(f, 1)[0], torch.min(f, 1)[0]], 1)
        return self.dequant(self.head(pooled))

    def fuse(self):
        self.backbone.fuse()


def from_checkpoint(path, frames):
    state, meta = read_safetensors(path)
    plan = json.loads(meta.get("compressor.channel_plan", "{}"))
    pool = plan.get("options", {}).get("pool", "mean")
    m = QuantEf(lambda name: state[f"backbone.{name}.weight"].shape[0], pool, frames)
    missing, unexpected = m.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(("quant.", "dequant."))]
    unexpected = [k for k in unexpected if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise SystemExit(f"{path}: does not match the EfRegressor: missing {missing}, unexpected {unexpected}")
    return m.eval(), pool


def full_size_model(frames):
    widths = {"conv1": 64}
    for s, c in enumerate((64, 128, 256, 512)):
        for b in range(2):
            widths[f"layer{s + 1}.{b}.conv1"] = widths[f"layer{s + 1}.{b}.conv2"] = c
    torch.manual_seed(1)
    return QuantEf(widths.__getitem__, "mean", frames).eval()


# ---- measuring -----------------------------------------------------------------


def frames_of(clips):
    """(N, T, H, W, 3) -> (N*T, 3, H, W)."""
    n, t, h, w, c = clips.shape
    return clips.permute(0, 1, 4, 2, 3).reshape(n * t, c, h, w).contiguous()


def mae(model, clips, ef, batch):
    err = 0.0
    with torch.no_grad():
        for i in range(0, len(ef), batch):
            err += (model(frames_of(clips[i : i + batch])) - ef[i : i + batch]).abs().sum().item()
    return err / len(ef)


def clip_latencies(model, clip, threads, min_time, memory_format=torch.contiguous_format):
    x = frames_of(clip).contiguous(memory_format=memory_format)
    out = {}
    for t in threads:
        torch.set_num_threads(t)
        out[f"t{t}"] = median_ms(lambda: model(x), min_time)
    return out


def pytorch_rows(fp, calib, test, batch, clip, threads, min_time, qconfigs=("default", "histogram")):
    """fp32 eager (faster memory format per thread count) and JIT, then each engine's
    int8 per qconfig. test: (clips, ef) or None (latency only)."""
    rows = []

    def measured(m):
        return mae(m, *test, batch) if test else None

    eager = {}
    for name, fmt in (("contiguous", torch.contiguous_format), ("channels_last", torch.channels_last)):
        m = copy.deepcopy(fp).to(memory_format=fmt)
        for key, ms in clip_latencies(m, clip, threads, min_time, fmt).items():
            if key not in eager or ms < eager[key][0]:
                eager[key] = (ms, name)
    rows.append({"name": f"pytorch fp32 eager ({', '.join(sorted({f for _, f in eager.values()}))})",
                 "precision": "fp32", "mae": measured(fp), "file_bytes": saved_bytes(fp),
                 "latency_ms": {k: v[0] for k, v in eager.items()}, "memory_format": {k: v[1] for k, v in eager.items()}})
    with torch.no_grad():
        jit = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.script(copy.deepcopy(fp))))
    rows.append({"name": "pytorch fp32 jit (frozen, optimize_for_inference)", "precision": "fp32",
                 "mae": measured(jit), "file_bytes": saved_bytes(fp),
                 "latency_ms": clip_latencies(jit, clip, threads, min_time)})
    for engine in engines():
        default = tq.get_default_qconfig(engine)
        hist = tq.QConfig(activation=tq.HistogramObserver.with_args(reduce_range=default.activation().reduce_range),
                          weight=default.weight)
        for qname, qconfig in (("default", default), ("histogram", hist)):
            if qname not in qconfigs:
                continue
            m = int8_of(fp, engine, qconfig, calib, batch)
            rows.append({"name": f"pytorch int8 {engine} ({qname} qconfig)", "precision": "int8",
                         "mae": measured(m), "file_bytes": saved_bytes(m),
                         "latency_ms": clip_latencies(m, clip, threads, min_time)})
    return rows


def flags_of(config):
    """ef_experiment flags that reproduce the data and PTQ of a run's config."""
    flags = []
    for key in ("data_root", "generate", "frames", "size", "batch_size", "max_clips", "calibration_batches",
                "weight_grid", "seed"):
        if key == "data_root" and not config.get(key):
            continue
        flags += ["--" + key.replace("_", "-"), str(config[key])]
    return flags


def run_ours(exe, args, config, out, threads, extra=()):
    """ef_experiment --no-train-baseline --mode quantization (PTQ, no QAT) with the run's
    data and PTQ flags on a copy of its checkpoint in the folder out; returns its
    results.json rows."""
    shutil.copy(os.path.join(args.run, "baseline.safetensors"), os.path.join(out, "baseline.safetensors"))
    cmd = [exe, "--no-train-baseline", "--mode", "quantization", "--qat-epochs", "0", "--threads", str(threads),
           "--observer", args.observer, "--out", out, *extra] + flags_of(config)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(out, "results.json")) as f:
        return json.load(f)["rows"]


def our_rows(build, args, config, tensors_file):
    exe = os.path.join(build, "examples", "ef_experiment", "ef_experiment")
    bench = os.path.join(build, "benchmarks", "quant", "bench_quant_models")
    for f in (exe, bench):  # (the bench: our_full_size_rows)
        if not os.access(f, os.X_OK):
            raise SystemExit(f"--ours {build}: {f} is missing (build it: cmake --build --preset release)")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for t in args.threads:
            out = os.path.join(tmp, f"t{t}")
            os.makedirs(out)
            export = () if os.path.exists(tensors_file) else ("--export-tensors", tensors_file)
            for r in run_ours(exe, args, config, out, t, export):
                if r["method"] not in ("baseline", "ptq"):
                    continue
                key = "compressor " + ("int8 PTQ" if r["precision"] == "int8" else "fp32 deploy")
                row = rows.setdefault(key, {"name": f"{key}{f' ({args.observer})' if r['precision'] == 'int8' else ''}, {r['kernel_path']}",
                                            "precision": r["precision"], "mae": r["mae"],
                                            "file_bytes": r["file_bytes"], "latency_ms": {}})
                row["latency_ms"][f"t{t}"] = r["latency_ms_median"]
    return list(rows.values())


def our_full_size_rows(build, args):
    """bench_quant_models' full-size EF clip, fp32 and int8 (both grids), on
    the fastest path of each."""
    bench = os.path.join(build, "benchmarks", "quant", "bench_quant_models")
    best = fastest_model_times(bench, "ef_clip", ("int8", "int8_narrow", "fp32"), args.threads, 2 * args.min_time)
    full = {}
    names = {"fp32": "fp32 deploy", "int8": "int8 PTQ", "int8_narrow": "int8 PTQ, narrow grid"}
    for (precision, t), (ms, path) in sorted(best.items()):
        row = full.setdefault(precision, {"name": f"compressor {names[precision]}",
                                          "precision": precision, "latency_ms": {}, "path": {}})
        row["latency_ms"][f"t{t}"] = ms
        row["path"][f"t{t}"] = path
    for row in full.values():
        row["name"] += ", " + "/".join(sorted(set(row["path"].values())))
    return list(full.values())


def full_size_rounds(build, args):
    """The full-size rows of both frameworks, measured args.full_size_rounds
    times, PyTorch's and ours alternating (the VM's speed drifts over
    minutes). Returns the rows with the median of each cell over the rounds
    (each cell's rounds under "rounds_ms"), and per round the ratio of our
    int8 time to PyTorch's fastest int8 engine's."""
    fullsize = full_size_model(8)
    calib, clip = torch.randn(4, 8, 112, 112, 3), torch.randn(1, 8, 112, 112, 3)
    rounds = []
    for _ in range(args.full_size_rounds):
        rounds.append(pytorch_rows(fullsize, calib, None, 1, clip, args.threads, args.min_time,
                                   qconfigs=("default",)) + our_full_size_rows(build, args))
    rows = []
    for i, row in enumerate(rounds[0]):
        per_cell = {k: [r[i]["latency_ms"][k] for r in rounds] for k in row["latency_ms"]}
        rows.append({**row, "latency_ms": {k: statistics.median(v) for k, v in per_cell.items()},
                     "rounds_ms": per_cell})
    ratios = {}
    for k in rounds[0][0]["latency_ms"]:
        for r in rounds:
            theirs = min(x["latency_ms"][k] for x in r if x["name"].startswith("pytorch int8"))
            ours = next(x["latency_ms"][k] for x in r if x["name"].startswith("compressor int8 PTQ,"))
            ratios.setdefault(k, []).append(ours / theirs)
    return rows, ratios


def int8_of(fp, engine, qconfig, calib, batch):
    """fp quantized on engine with qconfig, calibrated on the clips calib."""
    return pytorch_int8(fp, engine, qconfig, [frames_of(c) for c in batches_of(calib, batch)])


def our_ptq(build, args, config, offset, tensors_file):
    """compressor's (fp32, PTQ int8) test MAE, PTQ calibrated from training clip
    `offset` on, at the most threads, and the range rule --observer auto chose
    (None for another observer); writes the calibration and test clips to
    tensors_file."""
    exe = os.path.join(build, "examples", "ef_experiment", "ef_experiment")
    with tempfile.TemporaryDirectory() as out:
        rows = run_ours(exe, args, config, out, max(args.threads),
                        ("--calibration-offset", str(offset), "--export-tensors", tensors_file,
                         "--latency-rounds", "1", "--latency-seconds", "0"))
        with open(os.path.join(out, "results.json")) as f:
            rule = json.load(f).get("extras", {}).get("ptq_range_rule", {}).get("PTQ int8")
        fp32, ptq = (next(r["mae"] for r in rows if r["method"] == m) for m in ("baseline", "ptq"))
        return fp32, ptq, rule


def check_port(pytorch_fp32, ours_fp32):
    if abs(pytorch_fp32 - ours_fp32) > 1e-3 * max(1.0, ours_fp32):
        raise SystemExit(f"the PyTorch port's fp32 MAE {pytorch_fp32:.5f} differs from ours {ours_fp32:.5f}: "
                         "the two do not run the same network")


def calibration_spread(build, args, config, fp, batch):
    """{model: [test MAE per calibration set]}, every engine's default qconfig and ours."""
    per_set = int(config["calibration_batches"]) * batch
    torch.set_num_threads(max(args.threads))
    sets = {}
    for k in range(args.calibration_sets):
        offset = k * per_set
        with tempfile.TemporaryDirectory() as tmp:
            tensors_file = os.path.join(tmp, "clips.safetensors")
            ours_fp32, ours, rule = our_ptq(build, args, config, offset, tensors_file)
            tensors, _ = read_safetensors(tensors_file)
        calib, test = tensors["calibration.clips"], (tensors["test.clips"], tensors["test.ef"])
        if k == 0:
            check_port(mae(fp, *test, batch), ours_fp32)
        for engine in engines():
            m = int8_of(fp, engine, tq.get_default_qconfig(engine), calib, batch)
            sets.setdefault(f"pytorch int8 {engine} (default qconfig)", []).append(mae(m, *test, batch))
        sets.setdefault(f"compressor int8 PTQ ({args.observer})", []).append(ours)
        chosen = "" if rule is None else (
            f"; our range rule by validation MAE: {rule['chosen']} (" +
            ", ".join(f"{r} {v:.3f}" for r, v in rule["val_mae"].items()) + ")")
        print(f"calibration set {k}: {len(calib)} clips from training clip {offset}: " +
              ", ".join(f"{name} {v[-1]:.3f}" for name, v in sets.items()) + chosen, flush=True)
    return sets


def print_table(title, rows, keys, metric):
    print(title)
    print(f"{'model':58s} {metric:>7s} {'MB':>6s} " + " ".join(f"{k:>9s}" for k in keys))
    for r in rows:
        m = r.get("mae")
        lat = " ".join(f"{r['latency_ms'].get(k, float('nan')):9.2f}" for k in keys)
        mb = f"{r['file_bytes'] / 1e6:6.2f}" if "file_bytes" in r else f"{'-':>6s}"
        print(f"{r['name']:58s} {('-' if m is None else f'{m:.3f}'):>7s} {mb} {lat}")


def main():
    # The unused FloatFunctional of a mean-pooling model: converted without data.
    warnings.filterwarnings("ignore", message="must run observer before calling calculate_qparams")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="an ef_experiment --out folder (baseline.safetensors, results.json)")
    ap.add_argument("--ours", required=True, metavar="BUILD", help="compressor's release build folder")
    ap.add_argument("--observer", default="auto", help="our PTQ's activation observer "
                    "(ef_experiment --observer; default: its default, auto: the histogram range rule "
                    "chosen on the validation split)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds per latency figure, at least")
    ap.add_argument("--full-size-rounds", type=int, default=1, metavar="R",
                    help="measure the full-size rows R times, PyTorch and ours alternating; report medians")
    add_spread_args(ap, "test MAE")
    ap.add_argument("--json")
    args = ap.parse_args()
    check_spread_args(ap, args)
    if args.full_size_rounds < 1:
        ap.error(f"--full-size-rounds must be at least 1, got {args.full_size_rounds}")

    ckpt = os.path.join(args.run, "baseline.safetensors")
    with open(os.path.join(args.run, "results.json")) as f:
        config = json.load(f)["config"]
    batch = int(config["batch_size"])
    fp, pool = from_checkpoint(ckpt, int(config["frames"]))
    result = {"torch": torch.__version__, "args": vars(args), "config": config}
    if not args.skip_latency:
        with tempfile.TemporaryDirectory() as tmp:
            tensors_file = os.path.join(tmp, "clips.safetensors")
            ours = our_rows(args.ours, args, config, tensors_file)
            tensors, _ = read_safetensors(tensors_file)
        calib, test_clips, test_ef = tensors["calibration.clips"], tensors["test.clips"], tensors["test.ef"]
        rows = pytorch_rows(fp, calib, (test_clips, test_ef), batch, test_clips[:1], args.threads, args.min_time)
        check_port(rows[0]["mae"], next(r["mae"] for r in ours if r["precision"] == "fp32"))
        rows += ours

        n, t, h = test_clips.shape[:3]
        full_rows, ratios = full_size_rounds(args.ours, args)

        keys = [f"t{t_}" for t_ in args.threads]
        print_table(f"EfRegressor of {args.run} ({pool} pooling, {t} frames of {h}x{h}), {n} test clips, "
                    f"{len(calib)} calibration clips; PyTorch {torch.__version__}; latency: median ms per clip",
                    rows, keys, "MAE")
        print()
        print_table("EfRegressor at full size (width 1, mean pooling), one clip of 8 frames of 112x112, "
                    f"random weights; median of {args.full_size_rounds} alternating round(s)",
                    full_rows, keys, "MAE")
        for k, v in ratios.items():
            print(f"our int8 / PyTorch's fastest int8, {k}: per round " + ", ".join(f"{x:.2f}" for x in v) +
                  f"; median {statistics.median(v):.2f}")
        result.update({"rows": rows, "full_size_rows": full_rows, "full_size_ratio_int8": ratios})
    if args.calibration_sets > 1:
        sets = calibration_spread(args.ours, args, config, fp, batch)
        print_spread(sets, "test MAE", "lower")
        per_set = int(config["calibration_batches"]) * batch
        result["calibration_sets"] = {"offsets": [k * per_set for k in range(args.calibration_sets)], "mae": sets}
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump(result, f, indent=1)
        os.replace(args.json + ".tmp", args.json)


if __name__ == "__main__":
    main()
