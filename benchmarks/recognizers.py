"""The face recognisers as judges: their own accuracy on clean LFW crops and their speed.

For each recogniser and each prepared set given (fsggan-prepare-data folders, e.g. the 64 px
and 128 px Set1-LFW), on the CLEAN faces only:
  - verification ROC AUC over every pair of images (same person vs different people);
  - the protocol's clean rank-1 (the "Clean (upper bound)" row of fsggan-eval);
  - inference images/s (batch 64, after a warm-up batch).

    python -m benchmarks.recognizers data64/set1-lfw data/prepared/set1-lfw \
        --mobilefacenet ../shared/data/weights/mobilefacenet_casia_068.ckpt
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from fsggan.eval.recognition import build_recognizer, evaluate_protocol, load_protocol
from fsggan.images import load_image


def roc_auc(sim: np.ndarray, same: np.ndarray) -> float:
    """Probability that a random genuine pair scores above a random impostor pair (ties: half)."""
    from scipy.stats import rankdata  # scipy comes with scikit-image

    ranks = rankdata(sim)
    n_pos, n_neg = same.sum(), (~same).sum()
    return float((ranks[same].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def judge_set(net, set_dir: Path, batch: int = 64) -> dict:
    manifest = json.loads((set_dir / "manifest.json").read_text())
    names = [e["name"] for e in manifest["images"]]
    ident = np.array([e["identity"] for e in manifest["images"]])
    feats, seconds = [], 0.0
    with torch.inference_mode():
        net(torch.stack([load_image(set_dir / "clean" / n) for n in names[:batch]]))  # warm-up
        for i in range(0, len(names), batch):
            x = torch.stack([load_image(set_dir / "clean" / n) for n in names[i:i + batch]])
            t0 = time.perf_counter()
            feats.append(net(x).float())
            seconds += time.perf_counter() - t0
    f = torch.cat(feats)
    sim = (f @ f.T).numpy()
    iu = np.triu_indices(len(names), 1)
    same = ident[iu[0]] == ident[iu[1]]
    by_name = dict(zip(names, f))
    rank1 = evaluate_protocol(load_protocol(set_dir), by_name, by_name, ks=(1,))["rank1"]
    return {"images": len(names), "auc": roc_auc(sim[iu], same), "rank1": rank1["mean"], "rank1_std": rank1["std"],
            "images_per_sec": len(names) / seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sets", nargs="+", type=Path)
    p.add_argument("--mobilefacenet", help="MobileFaceNet weights (left out without)")
    args = p.parse_args()
    nets = {"dlib_resnet": build_recognizer("dlib_resnet").place("cpu")}
    if args.mobilefacenet:
        nets["mobilefacenet"] = build_recognizer("mobilefacenet", args.mobilefacenet).place("cpu")
    print(f"torch threads: {torch.get_num_threads()}")
    print("| recogniser | set | images | verification AUC | clean rank-1 (%) | images/s |\n|---|---|---|---|---|---|")
    for name, net in nets.items():
        for s in args.sets:
            r = judge_set(net, s)
            print(f"| {name} | {s} | {r['images']} | {r['auc']:.4f} | {100 * r['rank1']:.1f} ± "
                  f"{100 * r['rank1_std']:.1f} | {r['images_per_sec']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
