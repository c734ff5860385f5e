"""Measurements of fsggan (speed, files, whole-photo round trips), not installed with it.

Run each from the repository root as a module, ``python -m benchmarks.NAME``, so that the
benchmarks share helpers (:mod:`benchmarks.photo_sets`) through ordinary imports.
"""
