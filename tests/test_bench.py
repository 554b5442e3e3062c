"""The benchmark runs (its figures are printed, never asserted: timings are noisy here)."""

import re

import numpy as np

from conftest import run_cli

# Refuses any TensorFlow import, as on a GPU machine that has JAX but no TF.
_NO_TF = """
import sys, runpy
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith(("tensorflow.", "tensorflow_datasets")):
            raise ImportError("TensorFlow is blocked in this test")
sys.meta_path.insert(0, _Block())
sys.argv = ["bench.train_speed", *sys.argv[1:]]
runpy.run_module("bench.train_speed", run_name="__main__")
"""


def test_npz_mode_runs_without_tensorflow(small_dataset, tmp_path):
    npz = tmp_path / "mnist.npz"
    run_cli("-m", "bench.train_speed", "--dataset", str(small_dataset), "--write-npz", str(npz))
    with np.load(npz, allow_pickle=False) as data:
        assert data["train_x"].shape == (512, 784) and data["train_x"].dtype == np.uint8
    out = run_cli("-c", _NO_TF, "--npz", str(npz), "--epochs", "2", "--unroll", "1", "4", "--quiet").stdout
    assert "notebook loop fed numpy batches" in out
    assert "epoch time ratio notebook/ours" in out
    # The whole figure: a substring "0.00" would also pass for any difference below 0.01.
    assert re.search(r"largest difference notebook vs ours: 0\.0000$", out, re.MULTILINE)
    assert out.count("traced the epoch function 1 time(s)") == 2 and "unroll 4" in out
    assert "FLOP per epoch" in out and "8x the notebook loop needs" in out
