"""Evaluation: PSNR/SSIM (paper Table 2), rank-k identification (Table 3), results
folders and side-by-side comparison (Table 4). CLI: ``fsggan-eval``
(:mod:`fsggan.cli.evaluate`)."""

from .evaluate import MissingPredictionsError, evaluate_set, evaluate_sets
from fsggan.metrics import PSNR_PM1_OFFSET, image_metrics, image_metrics_batch, psnr, psnr_pm1, ssim, summarize
from .recognition import (build_recognizer, evaluate_protocol, identification_ranks, load_protocol,
                          rank_k_accuracy, recognizer_names)
from .report import CLEAN, OCCLUDED, load_results, markdown, write_comparison, write_results

__all__ = [
    "evaluate_sets", "evaluate_set", "MissingPredictionsError", "OCCLUDED", "CLEAN",
    "psnr", "psnr_pm1", "ssim", "image_metrics", "image_metrics_batch", "summarize", "PSNR_PM1_OFFSET",
    "load_protocol", "evaluate_protocol", "rank_k_accuracy", "identification_ranks",
    "build_recognizer", "recognizer_names",
    "load_results", "markdown", "write_results", "write_comparison",
]
