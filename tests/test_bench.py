"""The benchmark runs (its figures are printed, never asserted: timings are noisy here)."""

import re

import numpy as np
import pytest

from conftest import run_cli, run_main

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


@pytest.fixture(scope="module")
def npz(small_dataset, tmp_path_factory):
    """small_dataset as the benchmarks' .npz, written once (in process) for the three benchmarks below."""
    npz = tmp_path_factory.mktemp("bench") / "mnist.npz"
    run_main("-m", "bench.train_speed", "--dataset", str(small_dataset), "--write-npz", str(npz))
    return npz


def test_npz_mode_runs_without_tensorflow(npz):
    with np.load(npz, allow_pickle=False) as data:
        assert data["train_x"].shape == (512, 784) and data["train_x"].dtype == np.uint8
    out = run_cli("-c", _NO_TF, "--npz", str(npz), "--epochs", "2", "--unroll", "1", "4", "--quiet").stdout
    assert "notebook: its code cells verbatim" in out
    assert "epoch time ratio notebook/ours" in out
    # The whole figure: a substring "0.00" would also pass for any difference below 0.01.
    assert re.search(r"largest difference notebook vs ours: 0\.0000$", out, re.MULTILINE)
    assert out.count("traced the epoch function 1 time(s)") == 2 and "unroll 4" in out
    assert "FLOP per epoch" in out


def test_the_notebook_runs_the_seeds_code_cells_verbatim():
    """Every cell as the JAX docs wrote it; only the data dir line (or, with --npz, the TensorFlow cell) differs."""
    from bench.notebook import DATA_DIR_LINE, code_cells, prepared_cells

    cells = code_cells()
    assert len(cells) == 10 and "def update(params, x, y):" in cells[6] and "for epoch in range(num_epochs):" in cells[9]
    assert not any("mlp_core" in cell for cell in cells)
    with_dir = prepared_cells("/data/tfds", None)
    changed = [i for i, (a, b) in enumerate(zip(cells, with_dir)) if a != b]
    assert changed == [7] and with_dir[7] == cells[7].replace(DATA_DIR_LINE, "data_dir = '/data/tfds'")
    with_npz = prepared_cells(None, "x.npz")
    assert [i for i, (a, b) in enumerate(zip(cells, with_npz)) if a != b] == [7]


def test_the_multiprocess_benchmark_compares_one_process_and_two(npz):
    out = run_cli("-m", "bench.multiprocess_speed", "--npz", str(npz), "--epochs", "2").stdout
    rows = {line[:32].strip(): line[32:].split() for line in out.splitlines() if "process" in line[:32]}
    assert set(rows) == {"1 process, 1 device", "1 process, 2 devices", "2 processes, 1 device each"}
    assert len({r[-1] for r in rows.values()}) == 1  # the same test accuracy: the same training
    assert re.search(r"communication share of the 2-process epoch: \d+%", out)


def test_the_tuning_benchmark_runs_without_tensorflow_and_prints_its_three_ways(npz):
    no_tf = _NO_TF.replace("bench.train_speed", "bench.tune_speed")
    out = run_cli("-c", no_tf, "--npz", str(npz), "--trials", "3", "--epochs", "2", "--population-sizes", "2").stdout
    assert re.search(r"one population \(vmap, one program\) +\d", out) and "one after another, in process" in out
    assert re.search(r"= \d+\.\d\d of one trial's epoch", out) and re.search(r"K=  2: epoch \d", out)
    assert re.search(r"MiB per trial beyond the shared data; .*: K <= \d+ fits", out)
