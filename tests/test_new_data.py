"""Nothing new, nothing to do: the new_data step against a real published champion."""

import pytest

from conftest import run_cli
from uploads import upload_tree


@pytest.fixture(scope="module")
def champion(small_dataset, tmp_path_factory):
    """A 1-epoch model of the small dataset, published: the champion."""
    root = tmp_path_factory.mktemp("champion")
    run_cli("-m", "components.train", "--dataset", str(small_dataset), "--model", str(root / "model"), "--epochs", "1")
    run_cli("-m", "components.publish", "--model", str(root / "model"), "--publish-uri", str(root / "published"),
            "--metrics-by-hand", "--test-accuracy", "0.5", "--test-loss", "0.1")
    return root / "published"


def _new_data(dataset, published, *flags):
    return run_cli("-m", "components.new_data", "--dataset", str(dataset), "--publish-uri", str(published),
                   "--epochs", "1", *flags, check=False)


def test_the_same_data_and_settings_are_nothing_new(small_dataset, champion):
    result = _new_data(small_dataset, champion)
    version = (champion / "LATEST").read_text().strip()
    assert result.returncode == 3, result.stderr[-2000:]
    assert result.stdout.strip() == f"no new data since champion {version}: the same data and settings trained it"


def test_other_settings_or_force_train(small_dataset, champion):
    other = _new_data(small_dataset, champion, "--seed", "1")
    assert other.returncode == 0 and "training settings differ" in other.stdout and "seed" in other.stdout
    forced = _new_data(small_dataset, champion, "--force")
    assert forced.returncode == 0 and forced.stdout.startswith("forced")


def test_new_data_trains(mnist_data_dir, champion, tmp_path):
    from components.ingest import ingest_dataset

    dataset = tmp_path / "dataset"
    ingest_dataset(dataset, tfds_data_dir=mnist_data_dir, train_split="train[512:1024]", test_split="test[:256]",
                   records_per_shard=200, progress=False)
    result = _new_data(dataset, champion)
    assert result.returncode == 0 and "new data since champion" in result.stdout and "split train" in result.stdout


def test_no_champion_and_bad_locations(small_dataset, tmp_path):
    assert "no champion yet" in _new_data(small_dataset, tmp_path / "nothing").stdout
    bad = _new_data(small_dataset, "gs://")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == ["error: --publish-uri: 'gs://' names no bucket (gs://BUCKET/PATH)"]
    (tmp_path / "a-file").write_text("not a publish location")
    a_file = _new_data(small_dataset, tmp_path / "a-file")  # before: "no champion yet", exit 0
    assert a_file.returncode == 2 and a_file.stderr.strip().splitlines() == [
        f"error: publish location {tmp_path / 'a-file'} is a file, not a folder"]


def test_a_broken_champion_record_is_refused_in_a_short_line(small_dataset, champion, tmp_path):
    """LATEST linked to /dev/zero (before: read until memory ran out); a candidate record that is a FIFO is skipped."""
    import os
    import shutil

    published = tmp_path / "published"
    shutil.copytree(champion, published, symlinks=True)
    (published / "candidates").mkdir(exist_ok=True)
    os.mkfifo(published / "candidates" / ("0" * 64 + ".json"))
    assert _new_data(small_dataset, published).returncode == 3  # a record it does not look for is never opened
    (published / "LATEST").unlink()
    (published / "LATEST").symlink_to("/dev/zero")
    result = _new_data(small_dataset, published)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"error: publish location {published}: member 'LATEST' resolves outside it, to '/dev/zero'"]


def test_a_model_registry_champion_of_the_same_data_and_settings_is_nothing_new(small_dataset, champion, gcs_emulator,
                                                                               tmp_path):
    """A registry version records one fingerprint per split and its settings: a schedule publishing to the
    registry stops after ingest when nothing arrived (before, it always trained)."""
    from artifacts import storage
    from components.publish import publish_model
    from vertex_api_stand_in import VertexModelRegistryStandIn

    registry = "projects/my-project/locations/us-central1/models/mnist-mlp"
    model = champion.parent / "model"
    gcs_emulator.create_bucket("registry-novelty")
    upload_tree(model, "gs://registry-novelty/run-1/train/model")
    with VertexModelRegistryStandIn() as vertex:
        import os
        from unittest import mock

        env = {"JAX_MLP_VERTEX_ENDPOINT": vertex.url}
        with mock.patch.dict(os.environ, env):
            assert publish_model(model, registry, 0.5, 0.1, model_uri="gs://registry-novelty/run-1/train/model").promoted
        same = run_cli("-m", "components.new_data", "--dataset", str(small_dataset), "--publish-uri", registry,
                       "--epochs", "1", env=env, check=False)
        other = run_cli("-m", "components.new_data", "--dataset", str(small_dataset), "--publish-uri", registry,
                        "--epochs", "2", env=env, check=False)
    assert same.returncode == 3, same.stderr[-2000:]
    assert same.stdout.strip() == "no new data since champion 1: the same data and settings trained it"
    assert other.returncode == 0 and "training settings differ from champion 1's (epochs)" in other.stdout
