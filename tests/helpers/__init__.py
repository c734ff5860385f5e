"""What the test modules share besides fixtures (those are in tests/conftest.py), one topic
per module:

- :mod:`helpers.files`: where the repository and the shared data are, a skip for missing
  shared data, a snapshot of a folder's bytes;
- :mod:`helpers.training`: the tiny training settings (32 px synthetic faces, widths of 4) and
  their configs, a synthetic data config, bitwise comparison of training states;
- :mod:`helpers.checkpoints`: checkpoints written with fsggan's own helpers, and damaged ones;
- :mod:`helpers.prepared`: a tiny prepared evaluation set;
- :mod:`helpers.photos`: real LFW photos with an occluder and a stub face detector;
- :mod:`helpers.identity`: genuine and impostor similarities;
- :mod:`helpers.cli`: the one-line error a command prints.

pytest puts tests/ on ``sys.path``, so test modules write ``from helpers.files import REPO``.
"""
