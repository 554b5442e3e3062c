"""New data: does this run's Dataset differ from what the champion was trained on? (``components.new_data``)

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
import math
from typing import TYPE_CHECKING, Any, NamedTuple
from components.publish import CANDIDATES
from mlp_core.errors import UserError
if TYPE_CHECKING:
    from mlp_core.config import TrainConfig

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
    from components.new_data import check_dataset

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
    from components.new_data import check_dataset
    from artifacts.locations import check_flags

    args = _parser().parse_args(argv)
    check_flags({"--dataset": args.dataset}, local=("--dataset",))
    check_inputs({"--dataset": args.dataset})
    config = config_of(args.hidden_sizes, args.step_size, args.batch_size, args.epochs, args.seed, args.shuffle)
    decision = check_dataset(args.dataset, args.publish_uri, config, force=args.force, trials=args.trials)
    print(decision.reason)
    return 0 if decision.new else NOTHING_NEW



class Novelty(NamedTuple):
    new: bool
    reason: str


# What tuning chooses (components.tune): a tuned run compares the champion's other settings only.
TUNED = ("layer_sizes", "step_size", "batch_size", "seed")


def compare(identity: "dict[str, Any]", config: "dict[str, Any]", champion: "dict[str, Any] | None",
            tuned: bool = False) -> Novelty:
    """Is (``identity``, ``config``) different from what ``champion`` (a publish manifest, or None) was trained on?

    ``tuned``: the tune step chooses the ``TUNED`` settings, so only the data and the others count.
    """
    if champion is None:
        return Novelty(True, "no champion yet")
    from mlp_core.blessing import test_set_sha256

    version = champion.get("version", "?")
    recorded = champion.get("dataset") or {}
    trained_on, ours = recorded.get("shards_sha256"), identity["shards"]
    if not isinstance(trained_on, dict) and isinstance(recorded.get("splits_sha256"), dict):
        # a Model Registry record: one fingerprint per split
        trained_on, ours = recorded["splits_sha256"], {split: test_set_sha256(shards) for split, shards in ours.items()}
    if not isinstance(trained_on, dict) or "config" not in champion:
        return Novelty(True, f"champion {version} has no record of its training data")
    if trained_on != ours:
        changed = sorted(split for split in {*trained_on, *ours} if trained_on.get(split) != ours.get(split))
        return Novelty(True, f"new data since champion {version} (split {', '.join(changed)} changed)")
    keys = sorted(k for k in {*champion["config"], *config} if champion["config"].get(k) != config.get(k)
                  and not (tuned and k in TUNED))
    if keys:
        return Novelty(True, f"the training settings differ from champion {version}'s ({', '.join(keys)})")
    return Novelty(False, f"no new data since champion {version}: the same data and settings trained it")




def candidate_key(shards: "dict[str, list[str]]", config: "dict[str, Any]") -> str:
    """One name for (the data, the training settings): sha256 of their canonical JSON."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps({"shards": shards, "config": config}, sort_keys=True).encode()).hexdigest()


def record_candidate(publish_uri: str, shards: "dict[str, list[str]]", config: "dict[str, Any]",
                     result: "dict[str, Any]") -> None:
    """Remember, at the publish location, that this data and these settings lost to ``result``'s champion."""
    from datetime import datetime, timezone

    from artifacts import locations, storage
    from artifacts.schemas import dumps

    record = {"champion_version": result["champion_version"], "test_accuracy": result["test_accuracy"],
              "champion_test_accuracy": result["champion_test_accuracy"], "reason": result["reason"],
              "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    storage.write_bytes(locations.join(publish_uri, CANDIDATES, candidate_key(shards, config) + ".json"),
                        dumps(record).encode())


def _lost_before(publish_uri: str, shards, config, champion_version: str) -> "dict | None":
    import json

    from artifacts import locations, storage

    try:
        record = json.loads(storage.read_bytes(locations.join(publish_uri, CANDIDATES, candidate_key(shards, config) + ".json"),
                                               storage.RECORD))
    except (storage.StorageError, UserError, ValueError):  # none, or not ours: train
        return None
    if not isinstance(record, dict) or record.get("champion_version") != champion_version \
            or not all(isinstance(record.get(key), str) for key in ("evaluated_at", "reason")):
        return None
    return {key: " ".join(record[key].split())[:120] for key in ("evaluated_at", "reason")}  # quoted in one line


def check_dataset(dataset: str, publish_uri: str, config: "TrainConfig", force: bool = False,
                  trials: int = 0) -> Novelty:
    """``compare`` for the Dataset artifact at ``dataset`` and the champion at ``publish_uri`` ("" = none);
    ``trials`` > 0: the run tunes, so the champion's tuned settings are not compared."""
    from mlp_core.data.artifact import dataset_identity, load_metadata
    from artifacts.locations import check_publish_target, is_resource_name
    from components.publish import read_champion

    if publish_uri:
        check_publish_target(publish_uri, "--publish-uri")
    metadata = load_metadata(dataset)
    config = config.for_data(math.prod(metadata["image_shape"]), metadata["num_classes"]).to_dict()
    if force:
        return Novelty(True, "forced: training whatever the champion was trained on")
    if not publish_uri:
        return Novelty(True, "no publish location, so no champion to compare with")
    identity, champion = dataset_identity(metadata), read_champion(publish_uri)
    decision = compare(identity, config, champion, tuned=trials > 0)
    if decision.new and champion is not None and not is_resource_name(publish_uri):  # a registry keeps no candidates
        lost = _lost_before(publish_uri, identity["shards"], config, champion["version"])
        if lost is not None:
            return Novelty(False, f"no new data since champion {champion['version']}: a model of this data and these "
                                  f"settings lost to it on {lost['evaluated_at']} ({lost['reason']})")
    return decision

if __name__ == "__main__":
    sys.exit(main())
