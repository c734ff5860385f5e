#!/usr/bin/env bash
# The CPU reference recipe at the paper's 128 px (issue 16; not yet timed end to end), each phase
# timed: prepare the 128 px evaluation sets, Stage I at 64 and 128 px, Stage II
# at 64 px, then fine-tuned at 128 px (G is fully convolutional), evaluate Set1 + Set2 at 128 px
# with the independent judge (dlib) and the training recogniser (MobileFaceNet, marked).
#   bash scripts/cpu_recipe128.sh          # from the repository root, the venv active
# Interrupted? Run it again: prepared sets are kept and a training stage that has a
# checkpoints/last.pt resumes from it (a finished stage says so and is skipped).
set -euo pipefail
WEIGHTS=../shared/data/weights/mobilefacenet_casia_068.ckpt
timed() { local name=$1; shift; local t0=$SECONDS; "$@"; echo "phase $name: $(( SECONDS - t0 )) s"; }
train() {  # train <command> <config> <run dir>: a fresh run, or a resume when last.pt exists
    if [ -f "$3/checkpoints/last.pt" ]; then "$1" --resume "$3"; else "$1" --config "$2"; fi
}
start=$SECONDS
[ -d data128/set2-lfw ] || timed prepare fsggan-prepare-data --config configs/data/lfw.yaml --out data128 --quiet
timed stage1_64 train fsggan-train-vae configs/cpu/vae.yaml runs/cpu_vae
timed stage2_64 train fsggan-train-gan configs/cpu/gan128_stage64.yaml runs/cpu128_gan64
timed stage1_128 train fsggan-train-vae configs/cpu/vae128.yaml runs/cpu_vae128
timed stage2_128 train fsggan-train-gan configs/cpu/gan128.yaml runs/cpu_gan128
timed evaluate fsggan-eval data128/set1-lfw data128/set2-lfw --gan runs/cpu_gan128 \
    --recognizer dlib_resnet --recognizer mobilefacenet --recognizer-weights "$WEIGHTS" --out results/cpu128
echo "total: $(( SECONDS - start )) s; results in results/cpu128/results.md"
