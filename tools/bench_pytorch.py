#!/usr/bin/python3
"""PyTorch 1.13 baseline for benchmarks/train/bench_train: the same models,
shapes, optimizer and thread counts, timed the same way (median of repeated
steps after warm-up). Run it right after bench_train so both see the same
machine state, or use tools/bench_train_compare.sh, which runs both and prints
the ratios.

    /usr/bin/python3 tools/bench_pytorch.py [--threads 1 2] [--repeats N] [--json out.json]
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torchvision


class CifarCnn(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        layers, c_in = [], 3
        for c in (64, 128, 256, 512):
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class EfRegressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = torchvision.models.resnet18()
        self.backbone.fc = nn.Identity()
        self.head = nn.Linear(512, 1)

    def forward(self, clips):  # (N, T, C, H, W)
        n, t = clips.shape[:2]
        f = self.backbone(clips.flatten(0, 1)).view(n, t, -1).mean(1)
        return self.head(f)


def time_steps(step, repeats, min_seconds=3.0):
    for _ in range(2):
        step()
    times = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def train_step_fn(model, x, target, loss_fn):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), target)
        loss.backward()
        opt.step()
    return step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.manual_seed(0)
    results = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        cnn = CifarCnn()
        x = torch.randn(128, 3, 32, 32)
        y = torch.arange(128) % 10
        t = time_steps(train_step_fn(cnn, x, y, nn.CrossEntropyLoss()), args.repeats)
        results.append({"name": "TrainStep_CifarCnn_b128", "threads": threads, "seconds": t,
                        "images_per_second": 128 / t})
        ef = EfRegressor()
        clips = torch.randn(4, 8, 3, 112, 112)
        target = torch.tensor([[40.0], [55.0], [60.0], [70.0]])
        t = time_steps(train_step_fn(ef, clips, target, nn.MSELoss()), args.repeats)
        results.append({"name": "TrainStep_EfRegressor_4x8x112", "threads": threads, "seconds": t,
                         "images_per_second": 32 / t, "videos_per_second": 4 / t})
    for r in results:
        print(f"pytorch {r['name']:32s} threads {r['threads']}: {1000 * r['seconds']:8.1f} ms/step "
              f"{r['images_per_second']:8.1f} images/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
