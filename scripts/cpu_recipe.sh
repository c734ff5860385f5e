#!/usr/bin/env bash
# The CPU reference recipe end to end, each phase timed (README "Measured results"):
# prepare the 64 px evaluation sets, Stage I, Stage II, evaluate Set1 + Set2 with the
# independent judge (dlib) and the training recogniser (MobileFaceNet, marked).
#   bash scripts/cpu_recipe.sh          # from the repository root, the venv active
# Interrupted? Run it again: prepared sets are kept and a training stage that has a
# checkpoints/last.pt resumes from it (a finished stage says so and is skipped).
set -euo pipefail
WEIGHTS=../shared/data/weights/mobilefacenet_casia_068.ckpt
timed() { local name=$1; shift; local t0=$SECONDS; "$@"; echo "phase $name: $(( SECONDS - t0 )) s"; }
train() {  # train <command> <config> <run dir>: a fresh run, or a resume when last.pt exists
    if [ -f "$3/checkpoints/last.pt" ]; then "$1" --resume "$3"; else "$1" --config "$2"; fi
}
start=$SECONDS
[ -d data64/set2-lfw ] || timed prepare fsggan-prepare-data --config configs/data/lfw.yaml \
    --set dataset.image_size=64 --out data64 --quiet
timed stage1 train fsggan-train-vae configs/cpu/vae.yaml runs/cpu_vae
timed stage2 train fsggan-train-gan configs/cpu/gan.yaml runs/cpu_gan
timed evaluate fsggan-eval data64/set1-lfw data64/set2-lfw --gan runs/cpu_gan --recognizer dlib_resnet \
    --recognizer mobilefacenet --recognizer-weights "$WEIGHTS" --out results/cpu
echo "total: $(( SECONDS - start )) s; results in results/cpu/results.md"
