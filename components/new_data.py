"""New data: does this run's Dataset differ from what the champion was trained on? (``jobs.novelty``)

    python -m components.new_data --dataset DIR --publish-uri URI [--force] [training flags as train's]

Prints one line; exits 0 when there is something to train (new data, other settings,
no champion, ``--force``) and 3 when there is nothing new. In the pipeline its
boolean output gates everything after ingest (a ``dsl.If``).
"""

import argparse
import sys

from kfp import dsl
from kfp.dsl import Dataset, Input

from platforms.options import StepPolicy
from components._cli import check_inputs, exit_on_error
from components._step import add_parameter_flags, descriptions
from components.train import config_of

# Small and quick: reads the Dataset's metadata and the champion's manifest. Never cached: the champion is not an input.
CLUSTER = StepPolicy("0.5", "1", "1Gi", "2Gi", cacheable=False)
NOTHING_NEW = 3  # the CLI's exit status when there is nothing to train


def new_data(
    dataset: Input[Dataset],
    publish_uri: str = "",
    hidden_sizes: str = "512,512",
    step_size: float = 0.01,
    batch_size: int = 128,
    epochs: int = 10,
    seed: int = 0,
    shuffle: bool = True,
    force: bool = False,
    trials: int = 0,
) -> bool:
    """Decide whether to train: false when the champion was trained on this very data with these settings.

    Args:
        dataset: Dataset artifact folder (from components.ingest)
        publish_uri: where blessed models are published and the champion is read (folder, gs://, s3://, or a
            Vertex AI Model Registry model); empty, no champion
        hidden_sizes: hidden layer widths, comma-separated
        step_size: SGD step size
        batch_size: examples per SGD step
        epochs: passes over the train split
        seed: PRNG seed for init and shuffling
        shuffle: shuffle each epoch on the device; false keeps the seed's order
        force: train (and replace an incomparable champion) even when nothing is new
        trials: configurations the tune step tries (0: no tuning); a tuned run's data alone decides, with the
            settings tuning does not choose (epochs, shuffle)
    """
    import components  # noqa: F401 - pipeline.py run shows what this step prints (components/__init__.py)
    from components.train import config_of
    from jobs.novelty import check_dataset

    config = config_of(hidden_sizes, step_size, batch_size, epochs, seed, shuffle)
    decision = check_dataset(dataset.path, publish_uri, config, force=force, trials=trials)
    print(decision.reason)
    return decision.new


def component(base_image: str):
    """``new_data`` as a kfp component running on ``base_image`` (the project image)."""
    return dsl.component(new_data, base_image=base_image, install_kfp_package=False)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m components.new_data",
        description="Say whether a Dataset holds anything the champion at --publish-uri was not trained on "
        f"(exit 0: train; exit {NOTHING_NEW}: nothing new).",
    )
    p.add_argument("--dataset", required=True, help=descriptions(new_data)["dataset"])
    add_parameter_flags(p, new_data)
    return p


@exit_on_error
def main(argv: "list[str] | None" = None) -> int:
    from jobs.novelty import check_dataset
    from artifacts.locations import check_flags

    args = _parser().parse_args(argv)
    check_flags({"--dataset": args.dataset}, local=("--dataset",))
    check_inputs({"--dataset": args.dataset})
    config = config_of(args.hidden_sizes, args.step_size, args.batch_size, args.epochs, args.seed, args.shuffle)
    decision = check_dataset(args.dataset, args.publish_uri, config, force=args.force, trials=args.trials)
    print(decision.reason)
    return 0 if decision.new else NOTHING_NEW


if __name__ == "__main__":
    sys.exit(main())
