"""mlp_core.tune: a population trained as one vmapped program matches each trial trained alone."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import random

from mlp_core import tune
from mlp_core.config import TrainConfig
from mlp_core.errors import UserError
from mlp_core.data.artifact import read_split
from mlp_core.evaluation import evaluate
from mlp_core.model import init_network_params
from mlp_core.train import EpochRunner, flatten_images

# Measured on this machine's CPU (XLA, 2026-12-07): of 4 trials on 2,000 MNIST images, 784-512-512-10, two epochs,
# most parameters come out bit-identical to the trial trained alone; the batched kernels round a few differently,
# never by more than this.
PARAMS_TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def mnist_slice(small_dataset):
    images, labels = read_split(small_dataset, "train")
    return flatten_images(images), np.asarray(labels, np.int32)


def test_each_trial_of_a_population_matches_the_same_configuration_trained_alone(mnist_slice):
    images, labels = mnist_slice
    sizes, step_sizes, seeds = (784, 512, 512, 10), [0.01, 0.003, 0.05, 1e-4], [0, 5, 7, 2**31 - 1]
    alone = []  # per trial, its params after each epoch, trained by the one training loop's compiled epoch
    for step_size, seed in zip(step_sizes, seeds):
        runner = EpochRunner(TrainConfig(layer_sizes=sizes, step_size=step_size, seed=seed), len(labels))
        params, epochs = init_network_params(sizes, random.key(seed), 1e-2), []
        for epoch in range(2):
            out = runner.run_epoch(params, images, labels, epoch)
            params = out.params
            epochs.append((jax.tree.map(np.asarray, params), float(out.loss)))
        alone.append(epochs)
    population = tune.init_population(sizes, seeds, 1e-2)
    for epoch in range(2):
        population, losses, diverged = tune.population_epoch(
            population, jnp.asarray(step_sizes, jnp.float32), tune._keys(jnp.asarray(seeds), epoch), images, labels,
            batch_size=128, num_classes=10, shuffle=True)
        accuracy = tune.population_accuracy(population, images, labels)
        for k in range(len(seeds)):
            params, loss = alone[k][epoch]
            trial = jax.tree.map(lambda x: x[k], population)
            gap = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(trial)))
            assert gap <= PARAMS_TOLERANCE, (k, epoch, gap)
            assert accuracy[k] == evaluate(params, images, labels).accuracy, (k, epoch)
            assert float(losses[k]) == pytest.approx(loss, rel=1e-6) and not diverged[k]


def test_init_is_the_seeds_own_init_bit_for_bit():
    population = tune.init_population((784, 32, 10), [0, 3], 1e-2)
    for k, seed in enumerate([0, 3]):
        alone = init_network_params((784, 32, 10), random.key(seed), 1e-2)
        assert all(np.array_equal(a, b[k]) for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(population)))


def _best(results: list[tune.TrialResult]) -> tune.TrialResult:
    """The best completed trial by final validation accuracy (then the lowest number)."""
    completed = [r for r in results if r.status == "completed"]
    if not completed:
        raise UserError("every trial diverged: try a smaller step size range", field="step_size_range")
    return max(completed, key=lambda r: (r.val_accuracy[-1], -r.trial.number))


def test_a_diverged_trial_is_dropped_and_the_others_go_on(mnist_slice):
    images, labels = mnist_slice
    trials = [tune.Trial(0, 0.01, 0, 128, (64,)), tune.Trial(1, 1e9, 1, 128, (64,)), tune.Trial(2, 0.02, 2, 128, (64,))]
    results = tune.train_population(TrainConfig(epochs=2), trials, (images, labels), (images[:500], labels[:500]),
                                    eta=1, log=lambda line: None)
    assert [r.status for r in results] == ["completed", "diverged", "completed"]
    assert len(results[1].val_accuracy) == 1 and len(results[0].val_accuracy) == 2
    assert _best(results).trial.number in (0, 2)


def test_successive_halving_keeps_the_best_third_at_each_rung(mnist_slice):
    images, labels = mnist_slice
    trials = [tune.Trial(i, s, i, 256, (32,)) for i, s in enumerate([1e-5, 1e-4, 0.003, 0.01, 0.03, 2e-5])]
    results = tune.train_population(TrainConfig(epochs=3), trials, (images, labels), (images[:500], labels[:500]),
                                    eta=3, log=lambda line: None)
    assert tune.rungs(3, 3) == [1]
    completed = [r for r in results if r.status == "completed"]
    stopped = [r for r in results if r.status == "stopped"]
    assert len(completed) == 2 and len(stopped) == 4
    assert all(len(r.val_accuracy) == 1 for r in stopped) and all(len(r.val_accuracy) == 3 for r in completed)
    assert min(r.val_accuracy[0] for r in completed) >= max(r.val_accuracy[0] for r in stopped)


def test_the_validation_split_is_stratified_deterministic_and_apart():
    labels = np.repeat(np.arange(10), [100, 50, 30, 20, 10, 10, 10, 10, 10, 10])
    train, validation = tune.validation_split(labels, 0.1, 10)
    again = tune.validation_split(labels, 0.1, 10)
    assert np.array_equal(validation, again[1]) and not set(train) & set(validation)
    assert len(train) + len(validation) == len(labels)
    assert np.bincount(labels[validation], minlength=10).tolist() == [10, 5, 3, 2, 1, 1, 1, 1, 1, 1]


@pytest.mark.parametrize("fraction, words", [(0.01, "with no validation example"), (0.99, "with no training example"),
                                             (0.0, "between 0 and 1"), (1.5, "between 0 and 1")])
def test_a_validation_split_that_leaves_a_class_empty_is_refused(fraction, words):
    labels = np.repeat(np.arange(3), [100, 20, 10])
    with pytest.raises(UserError, match=words):
        tune.validation_split(labels, fraction, 3)


def test_a_class_with_no_example_at_all_is_refused():
    with pytest.raises(UserError, match="class 2 .0 examples"):
        tune.validation_split(np.repeat([0, 1], 50), 0.1, 3)


@pytest.mark.parametrize("trials, low, high, words", [(0, 0.001, 0.1, "at least 1"), (4, 0.1, 0.001, "low <= high"),
                                                      (4, 0.0, 0.1, "0 < low"), (4, 0.001, float("inf"), "0 < low")])
def test_bad_search_spaces_are_refused(trials, low, high, words):
    with pytest.raises(UserError, match=words):
        tune.sample_trials(trials, (low, high), [128], [(512, 512)])


def test_trials_are_drawn_log_uniformly_within_the_range_and_reproducibly():
    trials = tune.sample_trials(200, (1e-4, 1e-1), [64, 128], [(512, 512), (256,)], search_seed=3)
    assert trials == tune.sample_trials(200, (1e-4, 1e-1), [64, 128], [(512, 512), (256,)], search_seed=3)
    steps = np.log10([t.step_size for t in trials])
    assert steps.min() >= -4 and steps.max() <= -1 and 70 < (steps < -2.5).sum() < 130  # half the decades, half the draws
    assert {t.batch_size for t in trials} == {64, 128} and {t.hidden_sizes for t in trials} == {(512, 512), (256,)}


@pytest.mark.slow
def test_a_tuned_run_fans_out_per_population_and_trains_the_chosen_configuration(mnist_data_dir, tmp_path):
    """pipeline.py run --trials: tune-plan -> one tune task per population (dsl.ParallelFor) -> tune-choose
    (dsl.Collected) -> train with the choice; evaluate's report names it; runs lists the run as tuned."""
    import json
    import subprocess
    import sys

    from conftest import ROOT, SMALL_TEST, SMALL_TRAIN

    root = tmp_path / "runs"
    result = subprocess.run([sys.executable, "pipeline.py", "run", "--trials", "4", "--epochs", "2",
                             "--tune-batch-sizes", "32,64", "--tfds-data-dir", mnist_data_dir, "--train-split",
                             SMALL_TRAIN, "--test-split", SMALL_TEST, "--pipeline-root", str(root)],
                            cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (folder,) = [p for p in root.iterdir() if (p / "run.json").is_file()]
    tasks = [line for line in result.stdout.splitlines() if line and not line.startswith((" ", "run ", "pipeline ",
                                                                                           "test accuracy"))]
    assert tasks == ["ingest", "new-data", "validate", "tune-plan", "tune", "tune", "tune-choose", "train", "evaluate"]
    chosen = json.loads((folder / "tune-choose" / "best_hyperparameters").read_text())
    assert chosen["trials"] == 4 and chosen["batch_size"] in (32, 64)
    config = json.loads((folder / "train" / "model" / "config.json").read_text())
    assert (config["step_size"], config["seed"], config["batch_size"]) == (
        chosen["step_size"], chosen["seed"], chosen["batch_size"])
    page = folder / "tune-report.html"
    assert f"  tuning     {page.as_uri()}" in result.stdout.splitlines()
    assert "Validation accuracy against step size" in page.read_text() and "data:image/png;base64," in page.read_text()
    assert f"chosen by the tune step: trial {chosen['trial']} of 4" in (folder / "report.html").read_text()
    listed = subprocess.run([sys.executable, "pipeline.py", "runs", "--pipeline-root", str(root)], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    assert "trials=4" in listed


@pytest.mark.slow
def test_the_tune_command_line_chooses_and_train_takes_its_choice(small_dataset, tmp_path):
    import json

    from conftest import run_cli

    out = run_cli("-m", "components.tune", "--dataset", str(small_dataset), "--best-hyperparameters",
                  str(tmp_path / "best.json"), "--report", str(tmp_path / "tune.html"), "--report-markdown",
                  str(tmp_path / "tune.md"), "--tensorboard", str(tmp_path / "tb"), "--trials", "3", "--epochs", "2",
                  "--tune-hidden-sizes", "64;32,32").stdout
    best = json.loads((tmp_path / "best.json").read_text())
    assert out.splitlines()[-1].startswith(f"chose trial {best['trial']} of 3: step size ")
    assert "| trial | step size | seed |" in (tmp_path / "tune.md").read_text()
    run_cli("-m", "components.train", "--dataset", str(small_dataset), "--model", str(tmp_path / "model"),
            "--epochs", "1", "--best-hyperparameters", json.dumps(best))
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["layer_sizes"][1:-1] == [int(h) for h in best["hidden_sizes"].split(",")]
    assert (config["step_size"], config["seed"], config["batch_size"]) == (best["step_size"], best["seed"], 128)
    # A validation split that leaves a class without an example: one line, nothing written.
    r = run_cli("-m", "components.tune", "--dataset", str(small_dataset), "--best-hyperparameters",
                str(tmp_path / "other.json"), "--validation-fraction", "0.001", check=False)
    assert r.returncode == 2 and r.stderr.startswith("error: --validation-fraction 0.001 leaves class ")
    assert len(r.stderr.splitlines()) == 1 and not (tmp_path / "other.json").exists()


def test_the_hparams_dashboard_lists_every_trial_with_its_status(tmp_path):
    from mlp_core.tensorboard import read_hparams
    from mlp_core.tune_report import write_hparams

    trials = [{"number": 0, "step_size": 0.01, "seed": 1, "batch_size": 128, "hidden_sizes": [512, 512],
               "status": "completed", "val_accuracy": [0.9, 0.95]},
              {"number": 1, "step_size": 1e-4, "seed": 2, "batch_size": 128, "hidden_sizes": [512, 512],
               "status": "stopped", "val_accuracy": [0.5]}]
    write_hparams(trials, tmp_path / "tb")
    sessions = read_hparams(tmp_path / "tb")
    assert sessions["trial-0000"]["hparams"] == {"hidden_sizes": "512,512", "seed": 1.0, "step_size": 0.01,
                                                 "status": "completed", "batch_size": 128.0}
    assert sessions["trial-0001"]["hparams"]["status"] == "stopped"
    assert sessions["trial-0000"]["metrics"] == {"validation/accuracy": pytest.approx(0.95)}
    assert sessions["trial-0001"]["metrics"] == {"validation/accuracy": 0.5}  # its last rung
