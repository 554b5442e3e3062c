"""Nothing new, nothing to do: has the champion already been trained on exactly this data and these settings?

A scheduled run ingests whatever its source holds today. When that is, byte for
byte, the data the current champion was trained on (the same shards: ingest is
deterministic, so the same files give the same shard sha256s) and the training
settings are the champion's (the same ``TrainConfig``: layer sizes, step size,
batch size, epochs, seed, shuffling), training again can only reproduce the
champion. The run then stops after ingest (``components.new_data`` feeds a
``dsl.If``), so a frequent schedule costs an ingest and a small read when
nothing arrived, and trains as soon as something did.

The champion's record is its publish manifest (``jobs.publishing``): ``config``
and ``dataset.shards_sha256`` are written there at publish time. A Model Registry
champion's record is its version's description: ``config`` and one fingerprint per
split (``dataset.splits_sha256``, ``mlp_core.blessing.test_set_sha256`` of the split's
shard hashes), compared the same way.

A model that was trained and then *lost* to the champion (not blessed) would be
trained again by every later run on the same data, and lose again. So evaluate
leaves a small record of it at the publish location
(``<publish_uri>/candidates/<key>.json``, ``record_candidate``), and the same
data and settings against the same champion are nothing new either. A Model
Registry has no place for such a record: there, a loser is trained again.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

from jobs.publishing import CANDIDATES
from mlp_core.errors import UserError

if TYPE_CHECKING:
    from mlp_core.config import TrainConfig


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
    from jobs.publishing import read_champion

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
