#!/bin/bash
# INR-GAN Table 1 rows and Table 2 ablations on builtin:digits at 32x32, each trained for the same 10 kimg
# (one thread each, two at a time), then FID of 500 samples against the 1,500 training digits.
# Usage: bash bench/inrgan_baselines.sh [OUT_DIR]   (about 25 minutes on 2 cores; results in docs/benchmarks.md)
set -e
OUT=${1:-out/base}
INRKIT=${INRKIT:-.venv/bin/inrkit}
COMMON="--data builtin:digits --resolution 32 --channels 1 --no-flip --z-dim 128 --hyper-hidden 256
  --blocks 16x2x64,32x2x64 --fourier-scale 3 --d-channel-base 1024 --d-channel-max 128 --batch 16 --lr-g 3e-4
  --lr-shared 1e-3 --lr-d 2e-3 --r1-gamma 4 --ema-rampup 0.05 --kimg 10 --tick-kimg 2 --snapshot-ticks 1000
  --workers 0"
mkdir -p "$OUT"
run() {
  name=$1; shift; start=$SECONDS
  OMP_NUM_THREADS=1 $INRKIT train-gan $COMMON "$@" --out "$OUT/$name.safetensors" > "$OUT/$name.log" 2>&1
  fid=$(OMP_NUM_THREADS=1 $INRKIT fid "$OUT/$name.safetensors" --data builtin:digits --n 500 --workers 0 2>/dev/null \
        | tail -1)
  echo "$name: $((SECONDS - start)) s (training and FID), FID $fid, options: $*"
}
( run latent --arch inr-latent --no-fourier --no-multiscale; run fourier --modulation full --no-multiscale
  run inrgan; run bilinear --upsample bilinear ) &
( run hyper --modulation full --no-fourier --no-multiscale; run fmm --no-multiscale
  run fmm-linear --modulation fmm-linear ) &
wait
