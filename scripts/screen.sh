#!/usr/bin/env bash
# One screening run of docs/experiments.md: the quickstart's Stage II with some overrides,
# then Set1 scored with the independent judge (dlib) and the training recogniser (MobileFaceNet).
#   bash scripts/screen.sh NAME [KEY=VALUE ...]      # from the repository root, the venv active
# Needs data64/ (fsggan-prepare-data --config configs/data/lfw.yaml --set dataset.image_size=64
# --out data64) and runs/qs_vae (fsggan-train-vae --config configs/cpu/quickstart_vae.yaml
# --run-dir runs/qs_vae). Writes runs/NAME and results/NAME; an existing run resumes.
set -euo pipefail
name=$1; shift
sets=(); for kv in "$@"; do sets+=(--set "$kv"); done
WEIGHTS=../shared/data/weights/mobilefacenet_casia_068.ckpt
t0=$SECONDS
if [ -f "runs/$name/checkpoints/last.pt" ]; then
    fsggan-train-gan --resume "runs/$name"
else
    fsggan-train-gan --config configs/cpu/quickstart_gan.yaml --run-dir "runs/$name" \
        --set gan.vae_checkpoint=runs/qs_vae/checkpoints/best.pt --set train.progress=false "${sets[@]}"
fi
t1=$SECONDS
fsggan-eval data64/set1-lfw --gan "runs/$name" --recognizer dlib_resnet --recognizer mobilefacenet \
    --recognizer-weights "$WEIGHTS" --out "results/$name" --no-progress > /dev/null
echo "$name: Stage II $(( t1 - t0 )) s, eval $(( SECONDS - t1 )) s"
