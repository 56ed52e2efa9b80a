#!/usr/bin/python3
"""Golden fixtures from PyTorch for compressor's layer and model tests.

Run with Debian's Python, which has torch 1.13 and torchvision 0.14:

    /usr/bin/python3 tools/make_golden.py            # writes tests/data/golden/*.safetensors
    /usr/bin/python3 tools/make_golden.py --verify   # re-reads every fixture and checks it

Each case builds a PyTorch module with a fixed seed, runs forward on a fixed
input x and backward with a fixed R (so the loss is sum(output * R)) and
writes one safetensors file holding

    <state_dict names>       the module's state before the forward (PyTorch
                             names and layouts: conv weights OIHW)
    golden.input             x, NCHW as PyTorch has it
    golden.grad_output       R
    golden.output            the output
    golden.grad_input        dL/dx
    grad.<param>             dL/d(param), PyTorch layout
    after.<buffer>           every buffer after the forward (BN running stats)

CifarCnn's 1.56M parameters would not fit the size budget, so its weights are
not stored: both this script and the C++ test compute them from the formula of
formula_state() below, and its large gradients are stored as samples
(grad_sample_index.<param>, int64 flat indices in PyTorch layout, and
grad_sample.<param>). See docs/checkpoints.md.

Python here has no safetensors package, so write_safetensors() implements the
format from its specification; the C++ loader is thus tested against this
writer and PyTorch's values. Output is deterministic: rerunning the script
gives byte-identical files.

--check-checkpoint FILE --model {resnet18,cifar_cnn} [--width W --num-classes N]
[--compare IO_FILE] loads a checkpoint written by compressor into the PyTorch
model with load_state_dict(strict=True), to check that the files open in
PyTorch, and optionally compares PyTorch's eval output with compressor's
(the golden_pytorch_interop test does this).
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torchvision
from torchvision.models.resnet import BasicBlock

DTYPES = {
    torch.float32: ("F32", "<f4"),
    torch.int64: ("I64", "<i8"),
    torch.int32: ("I32", "<i4"),
    torch.int8: ("I8", "i1"),
    torch.uint8: ("U8", "u1"),
}
NP_DTYPES = {code: np_dtype for code, np_dtype in DTYPES.values()}
DTYPE_SIZE = {"F32": 4, "I64": 8, "I32": 4, "I8": 1, "U8": 1}


# ---- the safetensors format ---------------------------------------------------


def write_safetensors(path, tensors, metadata):
    """Writes {name: tensor} and {str: str} metadata; atomic (temp + rename)."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        code, np_dtype = DTYPES[t.dtype]
        data = t.numpy().astype(np_dtype, copy=False).tobytes(order="C")
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)  # the data starts 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_safetensors(path):
    """Returns ({name: torch tensor}, metadata), checking the offsets tile the data."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    if n > len(blob) - 8:
        raise ValueError(f"{path}: header length {n} runs past the end of the file")
    header = json.loads(blob[8 : 8 + n].decode("utf-8"))
    data = blob[8 + n :]
    metadata = header.pop("__metadata__", {})
    tensors = {}
    end = 0
    for name, e in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
        b, t_end = e["data_offsets"]
        if b != end:
            raise ValueError(f"{path}: tensor {name}: offsets do not tile the data")
        count = math.prod(e["shape"])
        if t_end - b != count * DTYPE_SIZE[e["dtype"]]:
            raise ValueError(f"{path}: tensor {name}: byte size does not match dtype and shape")
        arr = np.frombuffer(data[b:t_end], dtype=NP_DTYPES[e["dtype"]]).reshape(e["shape"])
        tensors[name] = torch.from_numpy(arr.copy())
        end = t_end
    if end != len(data):
        raise ValueError(f"{path}: {len(data) - end} trailing data bytes")
    return tensors, metadata


# ---- models ------------------------------------------------------------------


class CifarCnn(nn.Module):
    """The PyTorch definition in include/compressor/models/cifar_cnn.hpp."""

    def __init__(self, num_classes=10, in_channels=3):
        super().__init__()
        layers = []
        c_in = in_channels
        for c in (64, 128, 256, 512):
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def scaled(c, width):
    """Channels at a width multiplier, rounded half away from zero like std::lround."""
    return max(1, int(math.floor(c * width + 0.5)))


class ResNet18(nn.Module):
    """torchvision's ResNet-18 (same modules, names and init) with a width
    multiplier, as include/compressor/models/resnet.hpp builds it."""

    def __init__(self, width=1.0, num_classes=1000):
        super().__init__()
        c0 = scaled(64, width)
        self.conv1 = nn.Conv2d(3, c0, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(c0)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        c_in = c0
        for stage in range(4):
            c = scaled(64 << stage, width)
            stride = 1 if stage == 0 else 2
            downsample = None
            if stride != 1 or c_in != c:
                downsample = nn.Sequential(nn.Conv2d(c_in, c, 1, stride=stride, bias=False), nn.BatchNorm2d(c))
            layer = nn.Sequential(BasicBlock(c_in, c, stride, downsample), BasicBlock(c, c))
            setattr(self, f"layer{stage + 1}", layer)
            c_in = c
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():  # as torchvision.models.ResNet.__init__
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def features(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x):
        return self.fc(self.features(x))


def assert_matches_torchvision():
    """At width 1 our ResNet18 has exactly torchvision's state_dict keys and shapes."""
    ours = {k: tuple(v.shape) for k, v in ResNet18(1.0).state_dict().items()}
    ref = {k: tuple(v.shape) for k, v in torchvision.models.resnet18().state_dict().items()}
    assert list(ours) == list(ref), "state_dict keys differ from torchvision.models.resnet18()"
    assert ours == ref, "state_dict shapes differ from torchvision.models.resnet18()"


# ---- the weight formula shared with the C++ test -------------------------------

MASK64 = (1 << 64) - 1


def fnv1a64(text):
    h = 0xCBF29CE484222325
    for byte in text.encode("utf-8"):
        h = ((h ^ byte) * 0x100000001B3) & MASK64
    return h


def formula_ints(name, n):
    """k_i in [-1000, 1000]: splitmix64(fnv1a64(name) + i) >> 11, mod 2001, - 1000."""
    with np.errstate(over="ignore"):
        z = np.uint64(fnv1a64(name)) + np.arange(n, dtype=np.uint64)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return ((z >> np.uint64(11)) % np.uint64(2001)).astype(np.int64) - 1000


def formula_tensor(name, shape):
    """Exactly representable float32 values, the same in C++ (tests/golden):
    rank >= 2 (conv, linear weights): k * 2^-p with p the smallest integer such
    that 2^p >= 1000 * sqrt(fan_in), fan_in = numel / shape[0] (so |w| <~ 1/sqrt(fan_in));
    rank 1 named *weight (BN gamma): 1 + k * 2^-12; other rank 1: k * 2^-12."""
    n = math.prod(shape)
    k = formula_ints(name, n).astype(np.float64)
    if len(shape) >= 2:
        fan_in = n // shape[0]
        p = 0
        while 4**p < 1_000_000 * fan_in:
            p += 1
        v = k * 2.0**-p
    elif name.endswith("weight"):
        v = 1.0 + k * 2.0**-12
    else:
        v = k * 2.0**-12
    return torch.from_numpy(v.astype(np.float32).reshape(shape))


def formula_state(module):
    """Sets every float parameter from the formula; buffers keep their defaults."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(formula_tensor(name, tuple(p.shape)))


# ---- cases -------------------------------------------------------------------


def perturb_bn(module, gen):
    """Non-trivial BN affine parameters and running statistics (as after training)."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=gen) - 0.5)
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) * 1.5 + 0.5)
                m.num_batches_tracked.fill_(5)


def run_case(out_dir, name, module, x_shape, train, seed, description, store_state=True, sample_above=None,
             extra=None):
    gen = torch.Generator().manual_seed(seed + 1)
    module.train(train)
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    x = torch.randn(x_shape, generator=gen).requires_grad_(True)
    captured = {}
    if extra == "features":
        module.avgpool.register_forward_hook(lambda m, i, o: captured.update(features=torch.flatten(o, 1).detach()))
    y = module(x)
    r = torch.randn(y.shape, generator=gen)
    y.backward(r)

    tensors = dict(state) if store_state else {}
    tensors["golden.input"] = x.detach()
    tensors["golden.grad_output"] = r
    tensors["golden.output"] = y.detach()
    tensors["golden.grad_input"] = x.grad
    if "features" in captured:
        tensors["golden.features"] = captured["features"]
    for pname, p in module.named_parameters():
        g = p.grad.detach().contiguous()
        if sample_above is not None and g.numel() > sample_above:
            idx = torch.randperm(g.numel(), generator=gen)[:256].sort().values
            tensors["grad_sample_index." + pname] = idx.to(torch.int64)
            tensors["grad_sample." + pname] = g.reshape(-1)[idx]
        else:
            tensors["grad." + pname] = g
    for bname, b in module.named_buffers():
        tensors["after." + bname] = b.detach().clone()
    metadata = {
        "case": name,
        "mode": "train" if train else "eval",
        "module": description,
        "layout": "activations NCHW, conv weights OIHW (PyTorch)",
        "weights": "stored" if store_state else "formula (tools/make_golden.py formula_tensor)",
        "generator": "tools/make_golden.py",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }
    if not store_state:
        metadata["state_dict"] = json.dumps({k: list(v.shape) for k, v in state.items()}, separators=(",", ":"))
    path = os.path.join(out_dir, name + ".safetensors")
    write_safetensors(path, tensors, metadata)
    print(f"{path}: {os.path.getsize(path)} bytes")


def make_all(out_dir):
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(out_dir, exist_ok=True)
    assert_matches_torchvision()

    conv_cases = [
        ("conv3x3_pad1_bias", dict(in_channels=4, out_channels=6, kernel_size=3, padding=1, bias=True), (2, 4, 9, 7)),
        ("conv3x3_stride2_nobias", dict(in_channels=5, out_channels=8, kernel_size=3, stride=2, padding=1, bias=False),
         (2, 5, 11, 10)),
        ("conv1x1_stride2", dict(in_channels=6, out_channels=4, kernel_size=1, stride=2, bias=False), (2, 6, 8, 9)),
        ("conv7x7_stride2_pad3", dict(in_channels=3, out_channels=8, kernel_size=7, stride=2, padding=3, bias=False),
         (2, 3, 20, 18)),
    ]
    for i, (name, kw, x_shape) in enumerate(conv_cases):
        torch.manual_seed(100 + i)
        m = nn.Conv2d(**kw)
        run_case(out_dir, name, m, x_shape, True, 100 + i, repr(m))

    for i, train in enumerate((True, False)):
        torch.manual_seed(200 + i)
        m = nn.BatchNorm2d(5)
        perturb_bn(m, torch.Generator().manual_seed(200 + i))
        run_case(out_dir, "batchnorm_" + ("train" if train else "eval"), m, (3, 5, 6, 4), train, 200 + i, repr(m))

    torch.manual_seed(300)
    ds = nn.Sequential(nn.Conv2d(8, 16, 1, stride=2, bias=False), nn.BatchNorm2d(16))
    block = BasicBlock(8, 16, stride=2, downsample=ds)
    perturb_bn(block, torch.Generator().manual_seed(300))
    run_case(out_dir, "basic_block_downsample_train", block, (2, 8, 10, 10), True, 300,
             "torchvision BasicBlock(8, 16, stride=2) with downsample")

    torch.manual_seed(400)
    cnn = CifarCnn()
    formula_state(cnn)
    run_case(out_dir, "cifar_cnn_train", cnn, (2, 3, 32, 32), True, 400, "CifarCnn(num_classes=10)",
             store_state=False, sample_above=8192)

    torch.manual_seed(500)
    net = ResNet18(width=0.125, num_classes=10)
    perturb_bn(net, torch.Generator().manual_seed(500))
    run_case(out_dir, "resnet18_w0125_train", net, (2, 3, 64, 64), True, 500,
             "torchvision ResNet-18 topology and names, width 0.125, num_classes 10", extra="features")


def verify_all(out_dir):
    """Re-reads every fixture and checks the stored values against a rerun."""
    for fname in sorted(os.listdir(out_dir)):
        if fname.endswith(".safetensors"):
            tensors, meta = read_safetensors(os.path.join(out_dir, fname))
            print(f"{fname}: {len(tensors)} tensors, case {meta.get('case')}, mode {meta.get('mode')}")
    # The C++ formula must reproduce these: a few fixed values as a cross-check.
    v = formula_tensor("features.0.weight", (64, 3, 3, 3)).reshape(-1)
    print("formula features.0.weight[0:3] =", v[:3].tolist())


def check_checkpoint(path, model, width, num_classes, compare):
    """Loads a compressor checkpoint into the PyTorch model (strict). With
    compare (a file of "input" NCHW and compressor's eval "output"), checks
    PyTorch's eval output on that input; returns 1 on a mismatch."""
    tensors, meta = read_safetensors(path)
    net = CifarCnn(num_classes) if model == "cifar_cnn" else ResNet18(width, num_classes)
    net.load_state_dict(tensors, strict=True)
    print(f"{path}: loaded {len(tensors)} tensors into PyTorch {model} (strict); metadata {meta}")
    if not compare:
        return 0
    io, _ = read_safetensors(compare)
    net.eval()
    with torch.no_grad():
        y = net(io["input"])
    want = io["output"]
    err = ((y - want).abs().max() / max(want.abs().max().item(), 1e-6)).item()
    print(f"{compare}: PyTorch output vs compressor's: max|diff| / max|compressor| = {err:.3g}")
    return 0 if err <= 1e-4 else 1


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "data", "golden"))
    ap.add_argument("--verify", action="store_true", help="re-read the fixtures instead of writing them")
    ap.add_argument("--check-checkpoint", metavar="FILE")
    ap.add_argument("--model", choices=["resnet18", "cifar_cnn"], default="resnet18")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--num-classes", type=int, default=1000)
    ap.add_argument("--compare", metavar="IO_FILE", help="with --check-checkpoint: input and expected output")
    args = ap.parse_args()
    if args.check_checkpoint:
        return check_checkpoint(args.check_checkpoint, args.model, args.width, args.num_classes, args.compare)
    elif args.verify:
        verify_all(os.path.normpath(args.out))
    else:
        make_all(os.path.normpath(args.out))


if __name__ == "__main__":
    sys.exit(main())
