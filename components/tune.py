"""Tune: step size, seed, batch size and hidden sizes searched on a validation split carved from the train split.

    python -m components.tune --dataset DIR --best-hyperparameters FILE [--report FILE] [--trials 16 ...]

In the pipeline ``tune_plan`` draws the trials, ``tune`` trains one population of shared shapes (``mlp_core.tune``)
per ``dsl.ParallelFor`` iteration and ``tune_choose`` writes ``best_hyperparameters``; the CLI does all three.
"""


import argparse
import math
import sys
from typing import List

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Output

from artifacts.locations import check_flags
from artifacts.outputs import check_apart, check_output_file, write_json
from components._cli import check_inputs, exit_on_error
from mlp_core.errors import UserError
from platforms.options import StepPolicy

# mlp_core.tune and the Dataset's reader load inside the functions below: the CLI refuses bad flags before JAX loads.

# The population's epochs want the train step's device; the plan and the choice are light.
CLUSTER = StepPolicy("4", "8", "4Gi", "8Gi", accelerated=True, cacheable=False)
LIGHT = StepPolicy("0.5", "1", "1Gi", "2Gi", cacheable=False)
# Populations (one per batch and hidden sizes) tuned at once on a cluster: one device each.
PARALLELISM = 4
MAX_TRIALS = 4096


def search_space(trials: int, step_size_range: str, batch_sizes: str, hidden_sizes: str, validation_fraction: float,
                 eta: int) -> dict:
    """The search, checked: ``UserError`` naming the parameter for anything out of range."""
    def numbers(text: str, name: str, kind=int, sep=","):
        try:
            values = [kind(v) for v in text.split(sep) if v.strip()]
        except ValueError:
            raise UserError(f"{name} must be {kind.__name__}s separated by '{sep}', got {text!r}", field=name) from None
        if not values or any(not math.isfinite(v) or v <= 0 for v in values):
            raise UserError(f"{name} must be positive {kind.__name__}s separated by '{sep}', got {text!r}", field=name)
        return values

    if not 0 <= trials <= MAX_TRIALS:
        raise UserError(f"trials must be from 0 (no tuning) to {MAX_TRIALS}, got {trials}", field="trials")
    low_high = numbers(step_size_range, "tune_step_size_range", float)
    if len(low_high) != 2 or low_high[0] > low_high[1]:
        raise UserError(f"tune_step_size_range must be LOW,HIGH with 0 < LOW <= HIGH, got {step_size_range!r}",
                          field="tune_step_size_range")
    if not 0 < validation_fraction < 1:
        raise UserError(f"validation_fraction must be between 0 and 1, got {validation_fraction}",
                          field="validation_fraction")
    if eta < 2:
        raise UserError(f"tune_eta must be 2 or more, got {eta}", field="tune_eta")
    return {"trials": trials, "step_size_range": low_high, "batch_sizes": numbers(batch_sizes, "tune_batch_sizes"),
            "hidden_sizes": [numbers(h, "tune_hidden_sizes") for h in hidden_sizes.split(";")],
            "validation_fraction": validation_fraction, "eta": eta}


def plan(space: dict, search_seed: int) -> list[dict]:
    """The populations to train: trials drawn, grouped by (batch size, hidden sizes); one empty one for no trials."""
    from mlp_core.tune import sample_trials

    if space["trials"] == 0:
        return [{"batch_size": 0, "hidden_sizes": [], "trials": []}]
    groups: dict[tuple, list] = {}
    for t in sample_trials(space["trials"], space["step_size_range"], space["batch_sizes"], space["hidden_sizes"],
                           search_seed):
        groups.setdefault((t.batch_size, t.hidden_sizes), []).append(
            {"number": t.number, "step_size": t.step_size, "seed": t.seed})
    return [{"batch_size": b, "hidden_sizes": list(h), "trials": trials} for (b, h), trials in sorted(groups.items())]


def train_population(dataset: str, population: dict, epochs: int, validation_fraction: float, eta: int,
                     log=print) -> dict:
    """Train one population on the train split less the validation split: its trials' results and the split."""
    import numpy as np

    from mlp_core.config import TrainConfig
    from mlp_core.data.artifact import load_metadata, read_split
    from mlp_core.tune import Trial, max_population, train_population as train_trials, validation_split

    if not population["trials"]:
        return {"trials": []}
    metadata = load_metadata(dataset)
    images, labels = read_split(dataset, "train", metadata)
    num_classes = metadata["num_classes"]
    train, held = validation_split(labels, validation_fraction, num_classes)
    base = TrainConfig(layer_sizes=(int(np.prod(images.shape[1:])), num_classes), epochs=epochs)
    trials = [Trial(int(t["number"]), float(t["step_size"]), int(t["seed"]), int(population["batch_size"]),
                    tuple(int(h) for h in population["hidden_sizes"])) for t in population["trials"]]
    fits = max_population((base.layer_sizes[0], *trials[0].hidden_sizes, num_classes), trials[0].batch_size)
    log(f"tuning {len(trials)} trial(s) at batch {trials[0].batch_size}, hidden "
        f"{','.join(map(str, trials[0].hidden_sizes))}: {len(train)} training and {len(held)} validation examples"
        + (f", in groups of {fits} (device memory)" if fits < len(trials) else ""))
    results = []
    for start in range(0, len(trials), fits):
        results += train_trials(base, trials[start:start + fits], (images[train], labels[train]),
                                (images[held], labels[held]), eta=eta, log=log)
    return {"trials": [r.to_dict() for r in results], "train_examples": len(train), "validation_examples": len(held)}


def choose(populations: list[dict], space: dict, epochs: int) -> "tuple[dict, dict, list[dict]]":
    """``(best_hyperparameters, summary, trials)``; best_hyperparameters is {} when nothing was tuned."""
    from mlp_core.tune import rungs

    trials = sorted((t for p in populations for t in p["trials"]), key=lambda t: t["number"])
    if not trials:
        return {}, {}, []
    completed = [t for t in trials if t["status"] == "completed"]
    if not completed:
        raise UserError("every trial diverged: try a lower tune_step_size_range", field="tune_step_size_range")
    winner = max(completed, key=lambda t: (t["val_accuracy"][-1], -t["number"]))
    best = {"step_size": winner["step_size"], "seed": winner["seed"], "batch_size": winner["batch_size"],
            "hidden_sizes": ",".join(map(str, winner["hidden_sizes"])), "trial": winner["number"],
            "validation_accuracy": winner["val_accuracy"][-1], "trials": len(trials)}
    tuned = next(p for p in populations if p["trials"])
    low, high = space["step_size_range"]
    summary = {"best": best, "populations": sum(bool(p["trials"]) for p in populations), "epochs": epochs,
               "search": f"step size log-uniform in [{low:g}, {high:g}], a random seed, batch size in "
                         f"{space['batch_sizes']}, hidden sizes in {[','.join(map(str, h)) for h in space['hidden_sizes']]}",
               "validation_fraction": space["validation_fraction"], "eta": space["eta"],
               "rungs": rungs(epochs, space["eta"]), "train_examples": tuned["train_examples"] + tuned["validation_examples"],
               "validation_examples": tuned["validation_examples"]}
    return best, summary, trials


def chosen_line(best: dict) -> str:
    """The one line that says which trial was chosen."""
    return (f"chose trial {best['trial']} of {best['trials']}: step size {best['step_size']:.4g}, seed {best['seed']}, "
            f"batch {best['batch_size']}, hidden {best['hidden_sizes']} (validation accuracy "
            f"{best['validation_accuracy']:.4f})")


def write_outputs(best: dict, summary: dict, trials: list[dict], best_path: str, report: "str | None" = None,
                  report_markdown: "str | None" = None, tensorboard: "str | None" = None) -> None:
    """best_hyperparameters (JSON), and when something was tuned the reports and the HParams runs."""
    write_json(best_path, best)
    if not trials:
        return
    from mlp_core.tune_report import render, write_hparams

    page, markdown = render(summary, trials)
    for path, text in ((report, page), (report_markdown, markdown)):
        if path:
            with open(path, "w") as f:
                f.write(text)
    if tensorboard:
        write_hparams(trials, tensorboard)


def tune_plan(trials: int = 0, tune_step_size_range: str = "0.001,0.1", tune_batch_sizes: str = "128",
              tune_hidden_sizes: str = "512,512", validation_fraction: float = 0.1, tune_eta: int = 3,
              search_seed: int = 0) -> list:
    """Draw the tuning trials and group them into populations of shared shapes (components.tune).

    Args:
        trials: configurations to try before training (0: no tuning; train uses its own parameters)
        tune_step_size_range: LOW,HIGH of the step sizes tried (drawn log-uniformly)
        tune_batch_sizes: batch sizes tried, comma-separated
        tune_hidden_sizes: hidden sizes tried, ';' between choices, e.g. 512,512;1024
        validation_fraction: share of each class of the train split held out to compare the trials
        tune_eta: successive halving keeps the best 1/tune_eta of the trials after epochs 1, eta, eta**2, ...
        search_seed: seed of the draws
    """
    from components.tune import plan, search_space

    space = search_space(trials, tune_step_size_range, tune_batch_sizes, tune_hidden_sizes, validation_fraction,
                         tune_eta)
    return plan(space, search_seed)


def tune(dataset: Input[Dataset], population: dict, trials_out: Output[Artifact], epochs: int = 10,
         validation_fraction: float = 0.1, tune_eta: int = 3):
    """Train one population of trials on the validation split's complement (components.tune)."""
    import components  # noqa: F401 - pipeline.py run shows what this step prints (components/__init__.py)
    from artifacts.outputs import write_json
    from components.tune import train_population

    write_json(trials_out.path, train_population(dataset.path, population, epochs, validation_fraction, tune_eta))


def tune_choose(populations: Input[List[Artifact]], best_hyperparameters: Output[Artifact], metrics: Output[Metrics],
                report: Output[HTML], report_markdown: Output[Markdown], tensorboard: Output[Artifact],
                trials: int = 0, tune_step_size_range: str = "0.001,0.1", tune_batch_sizes: str = "128",
                tune_hidden_sizes: str = "512,512", validation_fraction: float = 0.1, tune_eta: int = 3,
                epochs: int = 10) -> str:
    """Choose the best trial on validation accuracy; write best_hyperparameters and the report (components.tune).

    Returns best_hyperparameters' JSON too: train takes it as a parameter (kfp.local passes a dsl.OneOf of
    parameters, not of artifacts).
    """
    import json

    import components  # noqa: F401
    from artifacts import storage
    from components.tune import choose, chosen_line, search_space, write_outputs

    space = search_space(trials, tune_step_size_range, tune_batch_sizes, tune_hidden_sizes, validation_fraction,
                         tune_eta)
    found = [json.loads(storage.read_bytes(artifact.path, storage.METRICS)) for artifact in populations]
    best, summary, tried = choose(found, space, epochs)
    write_outputs(best, summary, tried, best_hyperparameters.path, report.path, report_markdown.path, tensorboard.path)
    best_hyperparameters.metadata.update(best)
    for name in ("step_size", "batch_size", "seed", "validation_accuracy", "trials"):
        if name in best:
            metrics.log_metric(name, best[name])
    print(chosen_line(best))
    return json.dumps(best)


def untuned() -> str:
    """No tuning (trials 0): train uses its own parameters (components.tune)."""
    return "{}"


def components(base_image: str):
    """The tuning components on ``base_image``: plan, tune (one population), choose, and untuned (no tuning)."""
    return tuple(dsl.component(f, base_image=base_image, install_kfp_package=False)
                 for f in (tune_plan, tune, tune_choose, untuned))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m components.tune", description=(
        "Search step size, seed, batch size and hidden sizes on a validation split of a Dataset's train split "
        "(trials of the same shapes trained at once); write the best as JSON for train's --best-hyperparameters."))
    p.add_argument("--dataset", required=True, help="Dataset artifact folder (from components.ingest)")
    p.add_argument("--best-hyperparameters", required=True, help="JSON file to write: the chosen configuration")
    p.add_argument("--report", help="HTML report to write: the trials table and a plot")
    p.add_argument("--report-markdown", help="the same report as Markdown")
    p.add_argument("--tensorboard", help="folder (new or empty): each trial in TensorBoard's HParams dashboard")
    p.add_argument("--trials", type=int, default=16, help="configurations to try (default: 16)")
    p.add_argument("--epochs", type=int, default=10, help="epochs per trial, at most (default: 10)")
    p.add_argument("--tune-step-size-range", default="0.001,0.1",
                   help="LOW,HIGH, drawn log-uniformly (default: %(default)s)")
    p.add_argument("--tune-batch-sizes", default="128", help="choices, comma-separated (default: %(default)s)")
    p.add_argument("--tune-hidden-sizes", default="512,512", help="choices, ';' between them (default: %(default)s)")
    p.add_argument("--validation-fraction", type=float, default=0.1,
                   help="share of each class held out for validation (default: %(default)s)")
    p.add_argument("--tune-eta", type=int, default=3, help="successive halving keeps the best 1/eta (default: 3)")
    p.add_argument("--search-seed", type=int, default=0, help="seed of the draws (default: 0)")
    return p


@exit_on_error
def main(argv: "list[str] | None" = None) -> int:
    args = _parser().parse_args(argv)
    if args.trials < 1 or args.epochs < 1:
        raise UserError(f"--trials and --epochs must be at least 1, got {args.trials} and {args.epochs}")
    space = search_space(args.trials, args.tune_step_size_range, args.tune_batch_sizes, args.tune_hidden_sizes,
                         args.validation_fraction, args.tune_eta)
    check_flags({"--dataset": args.dataset}, local=("--dataset",))
    check_inputs({"--dataset": args.dataset})
    check_apart({"--dataset": args.dataset}, {"--best-hyperparameters": args.best_hyperparameters, "--report": args.report,
                                              "--report-markdown": args.report_markdown, "--tensorboard": args.tensorboard})
    for path in (args.best_hyperparameters, args.report, args.report_markdown):
        if path:
            check_output_file(path)
    populations = [train_population(args.dataset, p, args.epochs, args.validation_fraction, args.tune_eta)
                   for p in plan(space, args.search_seed)]
    best, summary, trials = choose(populations, space, args.epochs)
    write_outputs(best, summary, trials, args.best_hyperparameters, args.report, args.report_markdown, args.tensorboard)
    print(chosen_line(best))
    return 0


if __name__ == "__main__":
    sys.exit(main())
