#!/usr/bin/env bash
# The CPU reference recipe end to end, each phase timed (docs/results.md).
#   bash scripts/cpu_recipe.sh        # 64 px: prepare the 64 px sets, Stage I, Stage II (5,000 steps)
#   bash scripts/cpu_recipe.sh 128    # the paper's 128 px (R128b, R128r in docs/experiments.md): Stage I
#                                     # at 64 and 128 px, Stage II 2,400 steps at 64 px, then 1,800 at
#                                     # 128 px from that G (G is fully convolutional), 128 px sets
#   bash scripts/cpu_recipe.sh 128 1  # the same with train.seed 1 in every stage: run directories and
#                                     # results get the suffix _s1 (seed 0, the default, has none)
# Both evaluate Set1, Set2 and Set3 (unseen kinds of occluder) with the independent judge (dlib) and the training recogniser
# (MobileFaceNet, marked). Run from the repository root, the venv active.
# Interrupted? Run it again: prepared sets are kept and a training stage that has a
# checkpoints/last.pt resumes from it (a finished stage says so and is skipped).
set -euo pipefail
SIZE=${1:-64}
SEED=${2:-0}
case $SEED in ''|*[!0-9]*) echo "cpu_recipe.sh: error: seed $SEED: give a whole number (default 0)" >&2; exit 2 ;; esac
S=$([ "$SEED" = 0 ] || echo "_s$SEED")   # the run directories' suffix
WEIGHTS=../shared/data/weights/mobilefacenet_casia_068.ckpt
timed() { local name=$1; shift; local t0=$SECONDS; "$@"; echo "phase $name: $(( SECONDS - t0 )) s"; }
train() {  # train <command> <config> <run dir> [--set K=V ...]: a fresh run, or a resume when last.pt exists
    if [ -f "$3/checkpoints/last.pt" ]; then "$1" --resume "$3"
    else "$1" --config "$2" --run-dir "$3" --set "train.seed=$SEED" "${@:4}"; fi
}
best() { echo "$1/checkpoints/best.pt"; }
start=$SECONDS
case $SIZE in
64)
    [ -d data64/set2-lfw ] || timed prepare fsggan-prepare-data --config configs/data/lfw.yaml \
        --set dataset.image_size=64 --out data64 --quiet
    [ -d data64/set3-lfw ] || timed prepare_set3 fsggan-prepare-data --config configs/data/lfw.yaml \
        --set dataset.image_size=64 --out data64 --sets set3 --quiet
    timed stage1 train fsggan-train-vae configs/cpu/vae.yaml runs/cpu_vae$S
    timed stage2 train fsggan-train-gan configs/cpu/gan.yaml runs/cpu_gan$S --set gan.vae_checkpoint="$(best runs/cpu_vae$S)"
    data=data64 gan=runs/cpu_gan$S out=results/cpu$S ;;
128)
    [ -d data128/set2-lfw ] || timed prepare fsggan-prepare-data --config configs/data/lfw.yaml --out data128 --quiet
    [ -d data128/set3-lfw ] || timed prepare_set3 fsggan-prepare-data --config configs/data/lfw.yaml --out data128 \
        --sets set3 --quiet
    timed stage1_64 train fsggan-train-vae configs/cpu/vae.yaml runs/cpu_vae$S
    timed stage2_64 train fsggan-train-gan configs/cpu/gan128_stage64.yaml runs/cpu128_gan64$S \
        --set gan.vae_checkpoint="$(best runs/cpu_vae$S)"
    timed stage1_128 train fsggan-train-vae configs/cpu/vae128.yaml runs/cpu_vae128$S
    timed stage2_128 train fsggan-train-gan configs/cpu/gan128.yaml runs/cpu_gan128$S \
        --set gan.vae_checkpoint="$(best runs/cpu_vae128$S)" --set gan.init_generator="$(best runs/cpu128_gan64$S)"
    data=data128 gan=runs/cpu_gan128$S out=results/cpu128$S ;;
*)
    echo "cpu_recipe.sh: error: size $SIZE: give 64 (default) or 128" >&2; exit 2 ;;
esac
timed evaluate fsggan-eval "$data/set1-lfw" "$data/set2-lfw" "$data/set3-lfw" --gan "$gan" --recognizer dlib_resnet \
    --recognizer mobilefacenet --recognizer-weights "$WEIGHTS" --out "$out"
echo "total: $(( SECONDS - start )) s; results in $out/results.md"
