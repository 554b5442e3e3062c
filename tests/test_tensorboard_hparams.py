"""TensorBoard's HParams dashboard: every train run under ``--logdir`` with its hyperparameters and final metrics.

Read back through TensorBoard's own event multiplexer and the hparams plugin's
``/session_groups`` handler (``mlp_core.tensorboard.read_hparams``): what the dashboard lists.
"""

import json
import re
from html.parser import HTMLParser

import pytest

from conftest import SMALL_TEST, SMALL_TRAIN, run_cli
from mlp_core.tensorboard import SCALARS, read_hparams, write_events

# Two epochs of a run as the train step records them (mlp_core.train's history entries).
HISTORY = [
    {"epoch": 1, "loss": 0.0478, "train_accuracy": 0.9192, "test_accuracy": 0.9229, "test_loss": 0.0273,
     "seconds": 6.96, "examples_per_second": 8625.0},
    {"epoch": 2, "loss": 0.0246, "train_accuracy": 0.9397, "test_accuracy": 0.9416, "test_loss": 0.0201,
     "seconds": 3.71, "examples_per_second": 16166.0},
]
MNIST = {"name": "mnist", "version": "3.0.1", "shards": {"train": ["a" * 64], "test": ["b" * 64]}}


def _hyper(**changes):
    """``mlp_core.metrics.hyperparameters`` of the train step's defaults, with ``changes``."""
    from components.train import config_of
    from mlp_core.metrics import hyperparameters

    given = {"hidden_sizes": "512,512", "step_size": 0.01, "batch_size": 128, "epochs": 2, "seed": 0, "shuffle": True,
             **changes}
    placement = given.pop("placement", "auto")
    return hyperparameters(config_of(**given), placement)


def test_the_dashboard_lists_two_runs_side_by_side_with_their_hyperparameters_and_final_metrics(tmp_path):
    runs = tmp_path / "runs"
    slower = [{**m, "test_accuracy": m["test_accuracy"] - 0.1, "loss": m["loss"] * 2} for m in HISTORY]
    write_events(HISTORY, runs / "jax-mlp-pipeline-a" / "train" / "tensorboard", _hyper(), run_id="run-a", dataset=MNIST)
    write_events(slower, runs / "jax-mlp-pipeline-b" / "train" / "tensorboard",
                 _hyper(step_size=0.001, hidden_sizes="64", shuffle=False), run_id="run-b",
                 dataset={**MNIST, "shards": {"train": ["c" * 64], "test": ["b" * 64]}})

    listed = read_hparams(runs)
    # TensorBoard names a run by its folder under --logdir: the pipeline run's folder leads it.
    assert sorted(listed) == ["jax-mlp-pipeline-a/train/tensorboard", "jax-mlp-pipeline-b/train/tensorboard"]
    a, b = listed["jax-mlp-pipeline-a/train/tensorboard"], listed["jax-mlp-pipeline-b/train/tensorboard"]
    assert (a["trial"], b["trial"]) == ("run-a", "run-b")
    assert a["hparams"] == {"epochs": 2, "batch_size": 128, "step_size": 0.01, "seed": 0, "shuffle": 1,
                            "hidden_sizes": "512,512", "placement": "auto", "dataset": "mnist 3.0.1",
                            "data_fingerprint": a["hparams"]["data_fingerprint"]}
    assert b["hparams"]["step_size"] == 0.001 and b["hparams"]["hidden_sizes"] == "64" and b["hparams"]["shuffle"] == 0
    assert re.fullmatch(r"[0-9a-f]{12}", a["hparams"]["data_fingerprint"])
    assert a["hparams"]["data_fingerprint"] != b["hparams"]["data_fingerprint"]  # other train shards: other data
    for run, history in ((a, HISTORY), (b, slower)):
        assert run["status"] == "STATUS_SUCCESS"
        # Each metric is the run's last value of that scalar: the final epoch's.
        assert run["metrics"] == {tag: pytest.approx(history[-1][key], rel=1e-6) for key, tag in SCALARS.items()}


def test_two_runs_with_the_same_settings_are_two_rows(tmp_path):
    """Without a run id (the CLI), each run gets its own trial id: the same settings on new data are not merged."""
    write_events(HISTORY, tmp_path / "first", _hyper())
    write_events(HISTORY[:1], tmp_path / "second", _hyper())
    listed = read_hparams(tmp_path)
    assert sorted(listed) == ["first", "second"]
    assert listed["first"]["trial"] != listed["second"]["trial"]
    assert listed["first"]["hparams"] == listed["second"]["hparams"]
    assert listed["second"]["metrics"]["test/accuracy"] == pytest.approx(HISTORY[0]["test_accuracy"])


class _Rows(HTMLParser):
    """Every two-cell table row of a page: first cell -> second cell."""

    def __init__(self):
        super().__init__()
        self.rows, self._row, self._in_cell = {}, [], False

    def handle_starttag(self, tag, attrs):
        self._row = [] if tag == "tr" else self._row
        self._in_cell = tag in ("td", "th")

    def handle_endtag(self, tag):
        if tag == "tr" and len(self._row) == 2:
            self.rows[self._row[0]] = self._row[1]

    def handle_data(self, data):
        if self._in_cell and data.strip():
            self._row.append(data.strip())


@pytest.mark.slow
def test_two_pipeline_runs_in_the_dashboard_and_their_reports(mnist_data_dir, tmp_path):
    """``pipeline.py run`` twice (kfp.local): ``tensorboard --logdir <root>`` lists both, named by run folder;
    each run's evaluate report names the run id its train step recorded (the Model's metadata)."""
    root = tmp_path / "runs"
    common = ["--epochs", "1", "--tfds-data-dir", mnist_data_dir, "--train-split", SMALL_TRAIN,
              "--test-split", SMALL_TEST, "--pipeline-root", str(root)]
    for step_size in ("0.01", "0.05"):
        run_cli("pipeline.py", "run", "--step-size", step_size, *common)
    runs = sorted(root.glob("*/train/tensorboard"))  # kfp.local: <root>/<pipeline run>/<task>/<output>
    assert len(runs) == 2

    listed = read_hparams(root)
    assert sorted(listed) == [events.relative_to(root).as_posix() for events in runs]
    for events, step_size in zip(runs, (0.01, 0.05)):
        name, run = events.relative_to(root).as_posix(), events.parent.parent
        assert re.fullmatch(r"jax-mlp-pipeline-[\d-]+/train/tensorboard", name)
        shown = listed[name]
        assert shown["hparams"]["step_size"] == step_size and shown["hparams"]["dataset"] == "mnist 3.0.1"
        history = json.loads((run / "train" / "metrics").read_text())["history"]
        assert shown["metrics"]["test/accuracy"] == pytest.approx(history[-1]["test_accuracy"], rel=1e-6)
        assert shown["metrics"]["train/loss"] == pytest.approx(history[-1]["loss"], rel=1e-6)

        page = _Rows()
        page.feed((run / "evaluate" / "report").read_text())
        assert page.rows["run id"] == shown["trial"]  # the pipeline's run id, as the train step received it
        assert re.fullmatch(r"[0-9a-f-]{36}", page.rows["run id"])
        assert page.rows["model"] == str(run / "train" / "model")
        assert page.rows["step_size"] == str(step_size)
    assert listed[runs[0].relative_to(root).as_posix()]["trial"] != listed[runs[1].relative_to(root).as_posix()]["trial"]
