#!/usr/bin/env bash
# Runs both experiments end to end, one after the other, into one folder:
#   OUT/cifar10  cifar10_experiment: the CifarCnn fp32 baseline, PTQ and QAT
#                int8 on CIFAR-10 (default data: the JPEG archive in
#                ../shared/data, unpacked into a cache folder on first use);
#   OUT/ef       ef_experiment --mode all: the EF regressor's baseline beside
#                the mean predictor, pruned (unstructured and channels),
#                quantized (PTQ, QAT) and both (default data: a synthetic
#                EchoNet-layout set, generated into OUT/synthetic_echo);
# each with its table on stdout and in OUT/<name>.log, results.json,
# results.csv and report.html, and OUT/index.html linking both reports.
#
#   bash tools/run_experiments.sh                  # quick configurations
#   bash tools/run_experiments.sh --full           # full configurations
#   bash tools/run_experiments.sh --cifar '--epochs 5' --ef '--epochs 4'
#
# Options:
#   --full          full configurations: cifar10_experiment --epochs 60
#                   --swa-epochs 10 --width 2 --cutout 8 --qat-epochs 2
#                   (the best run of docs/results.md, 90.27% fp32; ~5 h of
#                   training on 2 cores) and ef_experiment --full
#   --out DIR       output folder (default: experiments_out)
#   --bin DIR       build folder with both binaries (default: build/release,
#                   configured and built with the release preset when a
#                   binary is missing)
#   --threads N     threads for both (default: the binaries' default)
#   --resume        continue both from the checkpoints and results in OUT
#   --cifar ARGS    more arguments for cifar10_experiment (one string, split
#                   at white space)
#   --ef ARGS       more arguments for ef_experiment (likewise)
#   -h, --help      this text
# Exit status: 0 when both ran, 2 on a bad option, else the failing run's.
set -euo pipefail

usage() { sed -n '2,/^# Exit status/s/^# \{0,1\}//p' "$0"; }
die() {
  echo "run_experiments.sh: $*" >&2
  exit 2
}

root=$(cd "$(dirname "$0")/.." && pwd)
full=0
out=experiments_out
bin=""
threads=""
resume=0
cifar_extra=""
ef_extra=""
while [ $# -gt 0 ]; do
  case "$1" in
    --full) full=1 ;;
    --resume) resume=1 ;;
    --out | --bin | --threads | --cifar | --ef)
      [ $# -ge 2 ] || die "$1 needs a value"
      case "$1" in
        --out) out=$2 ;;
        --bin) bin=$2 ;;
        --threads) threads=$2 ;;
        --cifar) cifar_extra=$2 ;;
        --ef) ef_extra=$2 ;;
      esac
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
  shift
done
[ -n "$out" ] || die "--out: expected a folder"
if [ -n "$threads" ] && ! [[ "$threads" =~ ^[1-9][0-9]*$ ]]; then
  die "--threads '$threads': expected a positive integer"
fi

cifar_bin_rel=examples/cifar10_experiment/cifar10_experiment
ef_bin_rel=examples/ef_experiment/ef_experiment
if [ -z "$bin" ]; then
  bin=$root/build/release
  if [ ! -x "$bin/$cifar_bin_rel" ] || [ ! -x "$bin/$ef_bin_rel" ]; then
    (cd "$root" && cmake --preset release >/dev/null &&
      cmake --build --preset release -j "$(nproc)" --target cifar10_experiment ef_experiment)
  fi
fi
[ -d "$bin" ] || die "--bin '$bin': no such folder"
bin=$(cd "$bin" && pwd)
for b in "$cifar_bin_rel" "$ef_bin_rel"; do
  [ -x "$bin/$b" ] || die "--bin '$bin': $b is not built there (cmake --build <dir> --target $(basename "$b"))"
done

mkdir -p "$out" 2>/dev/null || die "--out '$out': cannot create the folder"
[ -w "$out" ] || die "--out '$out': the folder is not writable"
out=$(cd "$out" && pwd)

common=()
[ -n "$threads" ] && common+=(--threads "$threads")
[ "$resume" = 1 ] && common+=(--resume)
cifar_args=()
ef_args=(--mode all)
if [ "$full" = 1 ]; then
  cifar_args+=(--epochs 60 --swa-epochs 10 --width 2 --cutout 8 --qat-epochs 2
    --qat-freeze-bn-epoch 2 --qat-freeze-observer-epoch 2)
  ef_args+=(--full)
fi
# Split at any white space, line breaks included (read stops at the NUL
# that never comes, hence the || true).
read -r -d '' -a cifar_more <<<"$cifar_extra" || true
read -r -d '' -a ef_more <<<"$ef_extra" || true

start=$(date +%s)
cd "$out"
echo "== cifar10_experiment -> $out/cifar10 (log: $out/cifar10.log)"
"$bin/$cifar_bin_rel" --out cifar10 "${common[@]}" "${cifar_args[@]}" "${cifar_more[@]}" 2>&1 |
  tee cifar10.log
echo "== ef_experiment -> $out/ef (log: $out/ef.log)"
"$bin/$ef_bin_rel" --out ef "${common[@]}" "${ef_args[@]}" "${ef_more[@]}" 2>&1 | tee ef.log

for f in cifar10/results.json cifar10/report.html ef/results.json ef/report.html; do
  [ -s "$f" ] || {
    echo "run_experiments.sh: $out/$f was not written" >&2
    exit 1
  }
done
cat >index.html.tmp <<'EOF'
<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>compressor experiments</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 2em auto">
<h1>compressor experiments</h1>
<ul>
<li><a href="cifar10/report.html">CIFAR-10: CifarCnn fp32, PTQ and QAT int8</a>
(<a href="cifar10/results.json">results.json</a>, <a href="cifar10/results.csv">results.csv</a>,
<a href="cifar10.log">log</a>)</li>
<li><a href="ef/report.html">EchoNet EF: pruning and int8 quantization of the EF regressor</a>
(<a href="ef/results.json">results.json</a>, <a href="ef/results.csv">results.csv</a>,
<a href="ef.log">log</a>)</li>
</ul>
</body></html>
EOF
mv index.html.tmp index.html
echo "== both experiments done in $((($(date +%s) - start) / 60)) min: $out/index.html"
echo "   $out/cifar10/report.html"
echo "   $out/ef/report.html"
