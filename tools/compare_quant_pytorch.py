#!/usr/bin/python3
"""PyTorch 1.13's eager static int8 quantization of the CifarCnn, on the same
trained weights and calibration images as compressor's PTQ, beside compressor's
own figures: accuracy, file size and latency, in one run, same threads.

    /usr/bin/python3 tools/compare_quant_pytorch.py --checkpoint CKPT --data DIR
        [--ours build/release] [--calibration-size 512] [--observer histogram_mse]
        [--width W] [--test-size N] [--threads 1 2] [--min-time S] [--calibration-sets K [--skip-latency]]
        [--json out.json]

CKPT is a CifarCnn checkpoint written by compressor (safetensors, PyTorch
names and layouts: it loads with load_state_dict). DIR holds CIFAR-10 in its
binary layout (data_batch_1.bin ... data_batch_5.bin, test_batch.bin), or is an
image folder (train/<class>/*.jpg, test/<class>/*.jpg, as the archive in
../shared/data unpacks): that is decoded once (Pillow) into the binary layout
in DIR/../cifar10-bin-from-jpeg, classes interleaved (image i of class c at
record 10 i + c), so that both sides read the very same pixels. The
calibration images are the first --calibration-size training images in
class-interleaved order (the first image of each class, then the second of
each, ...; on the layout above, file order), normalised like compressor's
training (data/normalize.hpp), with no augmentation, which is what
cifar10_experiment calibrates on.

For every quantized engine this PyTorch has (Debian's: onednn and qnnpack;
fbgemm / x86 where built) and two qconfigs (the engine's default, and the
histogram observer for activations with the default per-channel weights), the
model is fused (conv + bn + relu), prepared, calibrated and converted; then
top-1 on the test images, the size of its saved state_dict, and the median
latency of a forward at batch 1 and 128 per thread count. The fp32 rows are
the eager model (contiguous and channels_last, the faster kept per batch and
thread count) and the
TorchScript-frozen model with torch.jit.optimize_for_inference (oneDNN, BN
folded). With --ours, compressor runs in the same session with the same
checkpoint, data, calibration images and threads: cifar10_experiment
--no-train-baseline (PTQ with --observer) for top-1, file size and
batch-1 latency, and bench_quant_models for batch 128 (on every kernel path,
the fastest kept and named).

With --calibration-sets K > 1, PTQ's spread over calibration sets is measured
too (top-1 only): set k is training images [k N, (k + 1) N) (in that order) for N =
--calibration-size; every engine's default qconfig and compressor's PTQ
(cifar10_experiment --calibration-offset k N) calibrate on it and are scored on
the test images. The printout ends with each model's mean and standard
deviation over the sets and compressor's mean paired difference against each
engine with its standard error: one test image is 0.01 point on the full test
set, and a calibration set moves top-1 by about that much, so one set cannot
say which PTQ is better.
"""
import argparse
import copy
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.ao.quantization as tq
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_golden import read_safetensors  # noqa: E402  (the format, checked)

MEAN = (0.4914, 0.4822, 0.4465)  # data/normalize.hpp, cifar10()
STD = (0.2470, 0.2435, 0.2616)
RECORD = 1 + 3 * 32 * 32


class QuantCifarCnn(nn.Module):
    """compressor's CifarCnn (models/cifar_cnn.hpp) with PyTorch's quant stubs."""

    def __init__(self, channels=(64, 128, 256, 512), num_classes=10):
        super().__init__()
        layers, c_in = [], 3
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)
        self.quant = tq.QuantStub()
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.fc(torch.flatten(self.pool(self.features(x)), 1))
        return self.dequant(x)

    def fuse(self):
        tq.fuse_modules(self, [[f"features.{i}", f"features.{i + 1}", f"features.{i + 2}"] for i in range(0, 16, 4)],
                        inplace=True)


CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def binary_from_image_folder(root):
    """Writes root's images in CIFAR-10's binary layout once; returns the folder."""
    from PIL import Image

    out = os.path.join(os.path.dirname(os.path.abspath(root)), "cifar10-bin-from-jpeg")
    if os.path.exists(os.path.join(out, "test_batch.bin")):
        return out
    os.makedirs(out, exist_ok=True)
    for split, files in (("train", [f"data_batch_{i}.bin" for i in range(1, 6)]), ("test", ["test_batch.bin"])):
        per_class = []
        for c in CLASSES:
            d = os.path.join(root, split, c)
            if not os.path.isdir(d):
                raise SystemExit(f"--data {root}: {split}/{c} is missing (expected an image folder of CIFAR-10)")
            per_class.append(sorted(os.listdir(d)))
        n = min(len(f) for f in per_class)
        records = np.zeros((n * len(CLASSES), RECORD), dtype=np.uint8)
        for i in range(n):
            for c, names in enumerate(per_class):
                img = np.asarray(Image.open(os.path.join(root, split, CLASSES[c], names[i])).convert("RGB"))
                if img.shape != (32, 32, 3):
                    raise SystemExit(f"{names[i]}: {img.shape} is not a 32x32 RGB image")
                records[i * len(CLASSES) + c, 0] = c
                records[i * len(CLASSES) + c, 1:] = img.transpose(2, 0, 1).reshape(-1)
        for k, chunk in enumerate(np.array_split(records, len(files))):
            tmp = os.path.join(out, files[k] + ".tmp")
            chunk.tofile(tmp)
            os.replace(tmp, os.path.join(out, files[k]))
    return out


def read_cifar(path, limit=None):
    """(images NCHW float normalised, labels int64) from one CIFAR-10 binary file."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % RECORD != 0:
        raise SystemExit(f"{path}: {raw.size} bytes is not a whole number of {RECORD}-byte CIFAR-10 records")
    raw = raw.reshape(-1, RECORD)
    if limit is not None:
        raw = raw[:limit]
    return from_records(raw)


def from_records(raw):
    """(images NCHW float normalised, labels int64) from CIFAR-10 records."""
    labels = torch.from_numpy(raw[:, 0].astype(np.int64))
    x = torch.from_numpy(raw[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std, labels


def class_interleaved_order(labels):
    """The indices with the classes in turn: the first image of each class, then
    the second of each, ... (data::class_interleaved_order, cifar10_experiment's
    calibration order). On the binary layout written from an image folder
    (record 10 i + c) it is the file order."""
    per_class = [np.flatnonzero(labels == c) for c in range(int(labels.max()) + 1)]
    order = []
    for i in range(max(len(p) for p in per_class)):
        order.extend(int(p[i]) for p in per_class if i < len(p))
    return np.asarray(order, dtype=np.int64)


def load_calibration(data_dir, n, offset=0):
    """Training images [offset, offset + n) in class-interleaved order, as
    cifar10_experiment --calibration-offset offset --calibration-size n takes them."""
    raws = []
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)]:
        path = os.path.join(data_dir, name)
        if not os.path.exists(path):
            raise SystemExit(f"--data {data_dir}: {name} is missing (expected CIFAR-10's binary layout)")
        raw = np.fromfile(path, dtype=np.uint8)
        if raw.size % RECORD != 0:
            raise SystemExit(f"{path}: {raw.size} bytes is not a whole number of {RECORD}-byte CIFAR-10 records")
        raws.append(raw.reshape(-1, RECORD))
    raw = np.concatenate(raws)
    return from_records(raw[class_interleaved_order(raw[:, 0])[offset : offset + n]])


def load_split(data_dir, train, limit=None, offset=0):
    """Images [offset, offset + limit) of a split (limit None: to the end)."""
    if offset:
        x, y = load_split(data_dir, train, None if limit is None else offset + limit)
        return x[offset:], y[offset:]
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if train else ["test_batch.bin"]
    xs, ys, left = [], [], limit
    for name in names:
        path = os.path.join(data_dir, name)
        if not os.path.exists(path):
            raise SystemExit(f"--data {data_dir}: {name} is missing (expected CIFAR-10's binary layout)")
        x, y = read_cifar(path, left)
        xs.append(x)
        ys.append(y)
        if left is not None:
            left -= len(y)
            if left <= 0:
                break
    return torch.cat(xs), torch.cat(ys)


def top1(model, x, y, batch=500):
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            correct += (model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum().item()
    return 100.0 * correct / len(y)


def log_probs(model, x, batch=500):
    """The model's log-softmax rows over x, in float64."""
    with torch.no_grad():
        return torch.cat([torch.log_softmax(model(x[i : i + batch]).double(), 1)
                          for i in range(0, len(x), batch)])


def fidelity(logp, logq):
    """(% of images whose top-1 class under q is p's, mean KL(p || q) in nats):
    what cifar10_experiment records as fp32_agreement and kl_to_fp32."""
    agree = 100.0 * (logp.argmax(1) == logq.argmax(1)).double().mean().item()
    kl = (logp.exp() * (logp - logq)).sum(1).mean().item()
    return agree, kl


def saved_bytes(model):
    """Bytes of torch.save(state_dict) (the frozen TorchScript model's weights are
    constants that its file does not hold as such: its rows report the eager file)."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def median_ms(fn, min_time):
    with torch.no_grad():
        for _ in range(3):
            fn()
        times, start = [], time.perf_counter()
        while len(times) < 5 or time.perf_counter() - start < min_time:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def latencies(model, threads, min_time, memory_format=torch.contiguous_format):
    out = {}
    for t in threads:
        torch.set_num_threads(t)
        for b in (1, 128):
            x = torch.randn(b, 3, 32, 32).contiguous(memory_format=memory_format)
            out[f"b{b}_t{t}"] = median_ms(lambda: model(x), min_time)
    return out


def float_model(state):
    """The checkpoint's CifarCnn, its channels read from the conv weights (any --width)."""
    if any(f"features.{4 * i}.weight" not in state for i in range(4)):
        raise SystemExit("checkpoint does not hold a CifarCnn: features.{0,4,8,12}.weight missing")
    m = QuantCifarCnn(tuple(state[f"features.{4 * i}.weight"].shape[0] for i in range(4)))
    missing, unexpected = m.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(("quant.", "dequant."))]
    if missing or unexpected:
        raise SystemExit(f"checkpoint does not match the CifarCnn: missing {missing}, unexpected {unexpected}")
    return m.eval()


def pytorch_rows(state, calib, test, threads, min_time):
    rows = []
    fp = float_model(state)
    acc = top1(fp, *test)
    eager = {}
    for name, fmt in (("contiguous", torch.contiguous_format), ("channels_last", torch.channels_last)):
        m = copy.deepcopy(fp).to(memory_format=fmt)
        for key, ms in latencies(m, threads, min_time, fmt).items():
            if key not in eager or ms < eager[key][0]:
                eager[key] = (ms, name)
    formats = sorted({f for _, f in eager.values()})
    rows.append({"name": f"pytorch fp32 eager ({', '.join(formats)})", "precision": "fp32", "top1": acc,
                 "file_bytes": saved_bytes(fp), "latency_ms": {k: v[0] for k, v in eager.items()},
                 "memory_format": {k: v[1] for k, v in eager.items()}})
    with torch.no_grad():
        jit = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.script(copy.deepcopy(fp))))
    rows.append({"name": "pytorch fp32 jit (frozen, optimize_for_inference)", "precision": "fp32",
                 "top1": top1(jit, *test), "file_bytes": saved_bytes(fp),
                 "latency_ms": latencies(jit, threads, min_time)})
    for engine in engines():
        default = tq.get_default_qconfig(engine)
        hist = tq.QConfig(activation=tq.HistogramObserver.with_args(reduce_range=default.activation().reduce_range),
                          weight=default.weight)
        for qname, qconfig in (("default", default), ("histogram", hist)):
            m = pytorch_int8(fp, engine, qconfig, batches_of(calib, 128))
            rows.append({"name": f"pytorch int8 {engine} ({qname} qconfig)", "precision": "int8",
                         "top1": top1(m, *test), "file_bytes": saved_bytes(m),
                         "latency_ms": latencies(m, threads, min_time)})
    return rows


def fastest_model_times(bench, model, precisions, threads, min_time):
    """bench_quant_models' BM_Model/<model>/<precision>/<path>/threads:<t> for each
    precision and thread count, every kernel path this CPU runs but the scalar
    reference (never the fastest, and slow to time); returns
    {(precision, t): (ms, path)}, the fastest path of each."""
    paths = "avx2|avx_vnni|avx512|avx512_vnni"  # kernels/isa.hpp's, but scalar
    flt = f"{model}/({'|'.join(precisions)})/({paths})/({'|'.join(f'threads:{t}' for t in threads)})"
    with tempfile.TemporaryDirectory() as tmp:
        js = os.path.join(tmp, "bench.json")
        subprocess.run([bench, f"--benchmark_filter={flt}", f"--benchmark_min_time={min_time}",
                        "--benchmark_format=json", f"--benchmark_out={js}"], check=True, stdout=subprocess.DEVNULL)
        with open(js) as f:
            bench_rows = json.load(f)["benchmarks"]
    best = {}
    for b in bench_rows:
        _, name, precision, path, t = b["name"].split("/")[:5]
        if name != model or precision not in precisions:
            continue
        key = (precision, t.split(":")[1])
        ms = b["real_time"] if b["time_unit"] == "ms" else b["real_time"] * 1e-6
        if key not in best or ms < best[key][0]:
            best[key] = (ms, path)
    return best


def run_ours(exe, args, out, threads, extra=()):
    """cifar10_experiment --no-train-baseline (PTQ, no QAT) on a copy of the checkpoint
    in the folder out; returns its results.json rows."""
    shutil.copy(args.checkpoint, os.path.join(out, "baseline.safetensors"))
    cmd = [exe, "--no-train-baseline", "--out", out, "--data-root", args.data, "--qat-epochs", "0",
           "--sensitivity-size", "0", "--calibration-size", str(args.calibration_size),
           "--observer", args.observer, "--width", str(args.width), "--threads", str(threads), *extra]
    if args.test_size:
        cmd += ["--test-size", str(args.test_size)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(out, "results.json")) as f:
        return json.load(f)["rows"]


def our_rows(build, args):
    """compressor's PTQ of the same checkpoint on the same images: cifar10_experiment
    (--no-train-baseline: the checkpoint is its baseline) per thread count for top-1,
    file size and batch-1 latency; bench_quant_models for batch 128."""
    exe = os.path.join(build, "examples", "cifar10_experiment", "cifar10_experiment")
    bench = os.path.join(build, "benchmarks", "quant", "bench_quant_models")
    for f in (exe, bench):
        if not os.access(f, os.X_OK):
            raise SystemExit(f"--ours {build}: {f} is missing (build it: cmake --build --preset release)")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for t in args.threads:
            out = os.path.join(tmp, f"t{t}")
            os.makedirs(out)
            for r in run_ours(exe, args, out, t):
                key = "compressor " + (f"int8 PTQ ({args.observer})" if r["precision"] == "int8" else "fp32 deploy")
                row = rows.setdefault(key, {"name": f"{key}, {r['kernel_path']}", "precision": r["precision"],
                                            "top1": r["top1"], "file_bytes": r["file_bytes"], "latency_ms": {}})
                row["latency_ms"][f"b1_t{t}"] = r["latency_ms_median"]
        # bench_quant_models' CifarCnn has the default width: its batch-128
        # times are of another network for any other --width.
        best = {} if args.width != 1 else fastest_model_times(bench, "cifar_cnn_b128", ("int8", "fp32"),
                                                              args.threads, 2 * args.min_time)
        for (precision, t), (ms, path) in best.items():
            key = "compressor " + (f"int8 PTQ ({args.observer})" if precision == "int8" else "fp32 deploy")
            if key in rows:
                rows[key]["latency_ms"][f"b128_t{t}"] = ms
                rows[key].setdefault("b128_path", {})[t] = path
    return list(rows.values())


def pytorch_int8(fp, engine, qconfig, batches):
    """fp fused, prepared with qconfig on engine, calibrated on the input batches, converted."""
    torch.backends.quantized.engine = engine
    m = copy.deepcopy(fp)
    m.fuse()
    m.qconfig = qconfig
    tq.prepare(m, inplace=True)
    with torch.no_grad():
        for x in batches:
            m(x)
    tq.convert(m, inplace=True)
    return m


def batches_of(x, n):
    return [x[i : i + n] for i in range(0, len(x), n)]


def add_spread_args(ap, metric):
    ap.add_argument("--calibration-sets", type=int, default=1, metavar="K",
                    help=f"also measure PTQ's {metric} on K disjoint calibration sets (mean, spread, paired "
                    "differences; default 1: no spread)")
    ap.add_argument("--skip-latency", action="store_true",
                    help="only the calibration-set spread: no latency rows (needs --calibration-sets > 1)")


def check_spread_args(ap, args):
    if args.calibration_sets < 1:
        ap.error(f"--calibration-sets {args.calibration_sets}: expected 1 or more")
    if args.skip_latency and args.calibration_sets < 2:
        ap.error("--skip-latency leaves nothing to measure without --calibration-sets 2 or more")


def engines():
    return [e for e in torch.backends.quantized.supported_engines if e != "none"]


def our_ptq(build, args, offset, threads):
    """compressor's PTQ calibrated on training images [offset, offset + N): its
    results.json row (top1, fp32_agreement, kl_to_fp32)."""
    exe = os.path.join(build, "examples", "cifar10_experiment", "cifar10_experiment")
    with tempfile.TemporaryDirectory() as out:
        rows = run_ours(exe, args, out, threads,
                        ("--calibration-offset", str(offset), "--latency-rounds", "1", "--latency-seconds", "0"))
        return next(r for r in rows if r["precision"] == "int8")


def calibration_spread(state, test, args):
    """Per calibration set, for every engine's default qconfig and, with --ours,
    compressor's PTQ: {"top1" | "fp32_agreement" | "kl_to_fp32": {model: [value
    per set]}}. Fidelity is against each framework's own fp32 model of the same
    weights on the test images."""
    fp = float_model(state)
    torch.set_num_threads(max(args.threads))
    logp = log_probs(fp, test[0])
    sets = {"top1": {}, "fp32_agreement": {}, "kl_to_fp32": {}}
    for k in range(args.calibration_sets):
        offset = k * args.calibration_size
        calib, _ = load_calibration(args.data, args.calibration_size, offset)
        for engine in engines():
            m = pytorch_int8(fp, engine, tq.get_default_qconfig(engine), batches_of(calib, 128))
            name = f"pytorch int8 {engine} (default qconfig)"
            agree, kl = fidelity(logp, log_probs(m, test[0]))
            for key, v in (("top1", top1(m, *test)), ("fp32_agreement", agree), ("kl_to_fp32", kl)):
                sets[key].setdefault(name, []).append(v)
        if args.ours:
            r = our_ptq(args.ours, args, offset, max(args.threads))
            for key in sets:
                sets[key].setdefault(f"compressor int8 PTQ ({args.observer})", []).append(r[key])
        print(f"calibration set {k}: images [{offset}, {offset + args.calibration_size}): " +
              ", ".join(f"{name} {v[-1]:.2f} (agrees {sets['fp32_agreement'][name][-1]:.2f}%, "
                        f"KL {sets['kl_to_fp32'][name][-1]:.2e})" for name, v in sets["top1"].items()),
              flush=True)
    return sets


def print_spread(sets, metric="top-1", better="higher"):
    """Each model's mean and standard deviation over the calibration sets, and
    compressor's mean paired difference against every other model with its
    standard error (better: which sign of the difference favours compressor)."""
    print(f"{metric} over {len(next(iter(sets.values())))} calibration sets: mean, standard deviation "
          f"({better} is better)")
    for name, v in sets.items():
        print(f"  {name:58s} {statistics.mean(v):9.5g} {statistics.stdev(v):9.3g}")
    ours = [n for n in sets if n.startswith("compressor")]
    for o in ours:
        for name, v in sets.items():
            if name == o:
                continue
            d = [a - b for a, b in zip(sets[o], v)]
            se = statistics.stdev(d) / len(d) ** 0.5
            print(f"  compressor - {name}: {statistics.mean(d):+.4g} (standard error {se:.3g})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True, help="CIFAR-10 binary folder (cifar-10-batches-bin)")
    ap.add_argument("--ours", metavar="BUILD", help="compressor's release build folder (build/release): "
                    "its cifar10_experiment and bench_quant_models run beside PyTorch")
    ap.add_argument("--calibration-size", type=int, default=512)
    ap.add_argument("--observer", default="histogram_mse", help="our PTQ's activation observer "
                    "(cifar10_experiment --observer; default: its default, PyTorch's HistogramObserver rule)")
    ap.add_argument("--width", type=float, default=1.0, help="the checkpoint's cifar10_experiment --width "
                    "(our binary needs it to reuse the checkpoint; PyTorch's model reads the channels "
                    "from the weights; at a width other than 1 our batch-128 latency is not measured)")
    ap.add_argument("--test-size", type=int, default=None, help="first N test images (default: all)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds per latency figure, at least")
    add_spread_args(ap, "top-1")
    ap.add_argument("--json")
    args = ap.parse_args()
    check_spread_args(ap, args)

    if not os.path.exists(os.path.join(args.data, "test_batch.bin")):
        args.data = binary_from_image_folder(args.data)
    if args.ours:
        exe = os.path.join(args.ours, "examples", "cifar10_experiment", "cifar10_experiment")
        if not os.access(exe, os.X_OK):
            raise SystemExit(f"--ours {args.ours}: {exe} is missing (build it: cmake --build --preset release)")
    state, _ = read_safetensors(args.checkpoint)
    test = load_split(args.data, train=False, limit=args.test_size)
    rows, sets = [], None
    if not args.skip_latency:
        calib, _ = load_calibration(args.data, args.calibration_size)
        rows = pytorch_rows(state, calib, test, args.threads, args.min_time)
        if args.ours:
            rows += our_rows(args.ours, args)
        keys = [f"b{b}_t{t}" for t in args.threads for b in (1, 128)]
        print(f"CifarCnn, {len(test[1])} test images, {args.calibration_size} calibration images; "
              f"PyTorch {torch.__version__}; latency: median ms per forward")
        print(f"{'model':58s} {'top1':>6s} {'MB':>6s} " + " ".join(f"{k:>9s}" for k in keys))
        for r in rows:
            lat = " ".join(f"{r['latency_ms'].get(k, float('nan')):9.2f}" for k in keys)
            print(f"{r['name']:58s} {r['top1']:6.2f} {r['file_bytes'] / 1e6:6.2f} {lat}")
    if args.calibration_sets > 1:
        sets = calibration_spread(state, test, args)
        print_spread(sets["top1"])
        print_spread(sets["fp32_agreement"], "top-1 agreement with fp32 (%)")
        print_spread(sets["kl_to_fp32"], "KL divergence from fp32 (nats)", "lower")
    if args.json:
        result = {"torch": torch.__version__, "args": vars(args), "rows": rows}
        if sets is not None:
            result["calibration_sets"] = {
                "offsets": [k * args.calibration_size for k in range(args.calibration_sets)], **sets}
        with open(args.json + ".tmp", "w") as f:
            json.dump(result, f, indent=1)
        os.replace(args.json + ".tmp", args.json)


if __name__ == "__main__":
    main()
