"""Publishing to a local folder and to Cloud Storage (gcp-storage-emulator on loopback)."""

import json
import os
from datetime import datetime, timezone
from unittest import mock

import pytest

from artifacts import storage
from components.publish import LATEST, publish_model, read_champion
from conftest import run_cli, run_main
from uploads import upload_tree


@pytest.fixture(scope="module")
def model(small_model):
    return small_model / "model"  # one epoch on small_dataset (conftest)


def _check_publish_location(uri: str, model) -> None:
    assert read_champion(uri) is None
    with mock.patch.dict(os.environ, {"JAX_MLP_LOCK_SHA256": "ab" * 32}):  # as the project image sets it
        published = publish_model(model, uri, 0.9, 0.1, image="reg/img:1", run_id="run-1",
                                  now=datetime(2026, 1, 1, tzinfo=timezone.utc))
    first = published.version
    assert published.promoted and "no champion yet" in published.reason
    assert first.startswith("20260101T000000Z-") and len(first) == len("20260101T000000Z-") + 12
    champion = read_champion(uri)
    assert champion["version"] == first and champion["metrics"]["test_accuracy"] == 0.9
    assert champion["image"] == "reg/img:1" and champion["pipeline_run_id"] == "run-1"
    assert champion["image_lock_sha256"] == "ab" * 32
    assert champion["dataset"]["name"] == "mnist" and len(champion["dataset"]["shards_sha256"]["train"]) == 3
    assert {"params.npz", "config.json", "dataset.json", "history.json"} <= set(champion["files"])
    assert any(f.startswith("saved_model/") for f in champion["files"])
    assert storage.read_bytes(storage.join(uri, LATEST)).decode().strip() == first


def test_publish_to_a_local_folder(model, tmp_path):
    _check_publish_location(str(tmp_path / "published"), model)


def test_publish_to_cloud_storage(model, gcs_emulator):
    gcs_emulator.create_bucket("models")
    _check_publish_location("gs://models/mnist-mlp", model)
    names = sorted(b.name for b in gcs_emulator.list_blobs("models"))
    assert "mnist-mlp/LATEST" in names and any(n.endswith("/manifest.json") for n in names)


def test_missing_bucket_and_object_are_clear_errors(gcs_emulator, tmp_path):
    with pytest.raises(storage.StorageError, match="bucket gs://no-such-bucket does not exist"):
        storage.read_bytes("gs://no-such-bucket/x")
    gcs_emulator.create_bucket("empty")
    with pytest.raises(storage.StorageError, match="object not found: gs://empty/nothing"):
        storage.read_bytes("gs://empty/nothing")
    storage.write_bytes("gs://empty/a/b.txt", b"hello")
    assert storage.list_names("gs://empty/a") == ["b.txt"] and storage.read_bytes("gs://empty/a/b.txt") == b"hello"


def test_interrupted_publish_leaves_the_champion_in_force(model, tmp_path, monkeypatch):
    uri = str(tmp_path / "published")
    champion = publish_model(model, uri, 0.97, now=datetime(2026, 1, 1, tzinfo=timezone.utc)).version
    real_write = storage.write_bytes

    def dies_at_the_pointer(target, data):
        if target.endswith(LATEST):
            raise KeyboardInterrupt("killed before LATEST moved")
        real_write(target, data)

    monkeypatch.setattr(storage, "write_bytes", dies_at_the_pointer)
    with pytest.raises(KeyboardInterrupt):
        publish_model(model, uri, 0.99, now=datetime(2026, 2, 1, tzinfo=timezone.utc))
    monkeypatch.undo()
    assert read_champion(uri)["version"] == champion
    assert read_champion(uri)["metrics"]["test_accuracy"] == 0.97


def test_version_is_complete_before_latest_moves(model, tmp_path, monkeypatch):
    uri = str(tmp_path / "published")
    order = []
    real_write = storage.write_bytes
    monkeypatch.setattr(storage, "write_bytes", lambda t, d: (order.append(t.rsplit("/", 1)[-1]), real_write(t, d)))
    publish_model(model, uri, 0.97)
    assert order[-2:] == ["manifest.json", LATEST]
    assert set(order[:-2]) >= {"params.npz", "config.json"}


@pytest.fixture(scope="module")
def evaluation(model, small_dataset, tmp_path_factory):
    """What ``components.evaluate --metrics FILE`` wrote for ``model`` (blessed: no threshold, no champion)."""
    out = tmp_path_factory.mktemp("evaluation") / "test_metrics.json"
    run_cli("-m", "components.evaluate", "--model", str(model), "--dataset", str(small_dataset), "--metrics", str(out),
            "--blessing-threshold", "0")
    return out


def test_publish_cli_publishes_the_numbers_evaluate_wrote(model, evaluation, tmp_path):
    """Before: --test-accuracy 0.9470 typed from evaluate's output, where a typo moved the champion."""
    tested = json.loads(evaluation.read_text())
    out = run_cli("-m", "components.publish", "--model", str(model), "--publish-uri", str(tmp_path / "p"),
                  "--test-metrics", str(evaluation)).stdout.splitlines()
    # what was published with, the loss said once for what it is, then the outcome
    assert out[0] == (f"test accuracy {tested['test_accuracy']:.4f}, test loss {tested['test_loss']:.4f} (the notebook's "
                      f"loss: cross-entropy averaged over the 10 classes too), from {evaluation}")
    version = out[1].split()[1]
    assert out[1] == f"published {version} to {tmp_path / 'p'}; LATEST moved to it (no champion yet)"
    manifest = json.loads((tmp_path / "p" / version / "manifest.json").read_text())
    assert manifest["version"] == version
    assert (manifest["metrics"]["test_accuracy"], manifest["metrics"]["test_loss"]) == (tested["test_accuracy"],
                                                                                        tested["test_loss"])
    assert manifest["metrics"]["test_set_sha256"] == tested["test_set_sha256"]


def test_numbers_typed_by_hand_only_with_metrics_by_hand(model, tmp_path):
    out = run_cli("-m", "components.publish", "--model", str(model), "--publish-uri", str(tmp_path / "p"),
                  "--metrics-by-hand", "--test-accuracy", "0.95", "--test-loss", "0.2").stdout.splitlines()
    assert out[0] == ("test accuracy 0.9500, test loss 0.2000 (the notebook's loss: cross-entropy averaged over the "
                      "classes too), typed by hand")
    assert read_champion(str(tmp_path / "p"))["metrics"]["test_accuracy"] == 0.95


def _evaluation_file(evaluation, path, **changes):
    """evaluate's file with ``changes``, at ``path``."""
    path.write_text(json.dumps({**json.loads(evaluation.read_text()), **changes}))
    return str(path)


@pytest.mark.parametrize(("flags", "message"), [
    (["--test-accuracy", "0.9470", "--test-loss", "0.0185"],
     "--test-accuracy is typed by hand: give --test-metrics FILE (what evaluate --metrics wrote), or add "
     "--metrics-by-hand to publish numbers typed by hand"),
    (["--test-loss", "0.0185"], "--test-loss is typed by hand: give --test-metrics FILE"),
    ([], "--test-metrics FILE is required: the JSON evaluate --metrics wrote (or --metrics-by-hand with "
         "--test-accuracy and --test-loss)"),
    (["--metrics-by-hand", "--test-accuracy", "0.9"], "--metrics-by-hand needs --test-loss"),
    (["--metrics-by-hand"], "--metrics-by-hand needs --test-accuracy and --test-loss"),
    (["--metrics-by-hand", "--test-accuracy", "nan", "--test-loss", "0.1"],
     "--test-accuracy must be a number from 0 to 1, got nan"),
    (["--metrics-by-hand", "--test-accuracy", "0.9", "--test-loss", "-1"], "--test-loss must be a finite number >= 0, got -1.0"),
    (["--metrics-by-hand", "--test-accuracy", "0.9", "--test-loss", "0.1", "--blessing-tolerance", "2"],
     "--blessing-tolerance must be a number from 0 to 1, got 2.0"),
    (["--test-metrics", "{evaluation}", "--test-accuracy", "0.9"],
     "--test-metrics gives evaluate's numbers, --test-accuracy types them again: give one or the other"),
    (["--test-metrics", "{evaluation}", "--metrics-by-hand"],
     "--test-metrics gives evaluate's numbers, --metrics-by-hand types them again: give one or the other"),
    (["--test-metrics", "{evaluation}", "--champion-version", "20260101T000000Z-0123456789ab"],
     "--champion-version 20260101T000000Z-0123456789ab, but {evaluation} says evaluate compared the model with no "
     "champion: leave --champion-version out"),
    (["--test-metrics", "{missing}"], "not found: {missing}"),
    (["--test-metrics", "/dev/zero"], "/dev/zero is a character device, not a regular file"),
    (["--metrics-by-hand", "--test-accuracy", "0.9", "--test-loss", "0.1", "--champion-version", "../x"],
     "--champion-version '../x' is not a published version's name"),
    (["--test-metrics", "{not_blessed}"], "{not_blessed}: evaluate did not bless this model (below the threshold); "
                                          "nothing is published"),
    (["--test-metrics", "{typo}"], "{typo}: test_accuracy: 9.47 is greater than the maximum of 1"),
    (["--test-metrics", "{other_split}"], "the test metrics are from another test split (000000000000) than the "
                                          "model's"),
    (["--test-metrics", "{not_evaluates}"], "{not_evaluates}: (top level): 'blessed' is a required property"),
])
def test_publish_refuses_numbers_it_cannot_trust_in_one_line(model, evaluation, tmp_path, capsys, flags, message):
    from components import publish

    files = {"evaluation": str(evaluation), "missing": str(tmp_path / "nope.json"),
             "not_blessed": _evaluation_file(evaluation, tmp_path / "not_blessed.json", blessed=False,
                                             reason="below the threshold"),
             "typo": _evaluation_file(evaluation, tmp_path / "typo.json", test_accuracy=9.47),
             "other_split": _evaluation_file(evaluation, tmp_path / "other_split.json", test_set_sha256="0" * 64)}
    if "{not_evaluates}" in flags:
        files["not_evaluates"] = str(tmp_path / "hand.json")
        (tmp_path / "hand.json").write_text(json.dumps({"test_accuracy": 0.9, "test_loss": 0.1}))
    flags = [f.format(**files) for f in flags]
    assert publish.main(["--model", str(model), "--publish-uri", str(tmp_path / "p"), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: " + message.format(**files)), err
    assert not (tmp_path / "p").exists()


def test_the_pipelines_publish_reads_evaluates_metrics_artifact():
    """In the pipeline, publish takes evaluate's Metrics artifact: the numbers evaluate logged in its metadata."""
    import pipeline
    from components import publish
    from components.publish import metrics_from_artifact
    from mlp_core.errors import UserError

    inputs = publish.component("registry.example/img:1").component_spec.inputs
    assert inputs["test_metrics"].type == "system.Metrics@0.0.1"
    assert "test_accuracy" not in inputs and "test_loss" not in inputs
    assert {"test_accuracy", "test_loss"}.isdisjoint(pipeline.pipeline_parameters())
    # what components.evaluate logs: the numbers, macro F1, each class's F1, the champion's accuracy
    logged = {"test_accuracy": 0.947, "test_loss": 0.0185, "macro_f1": 0.9464, "f1_class_0": 0.97,
              "champion_test_accuracy": 0.95}
    logged.update({f"f1_class_{c}": 0.9 for c in range(10)})
    tested = metrics_from_artifact(logged, "the evaluate step's metrics")
    assert (tested.test_accuracy, tested.test_loss, tested.num_classes) == (0.947, 0.0185, 10)
    assert publish.metrics_line(tested, "from the evaluate step's metrics") == (
        "test accuracy 0.9470, test loss 0.0185 (the notebook's loss: cross-entropy averaged over the 10 classes too), "
        "from the evaluate step's metrics")
    with pytest.raises(UserError, match="^the evaluate step's metrics: \\(top level\\): 'test_loss' is a required"):
        metrics_from_artifact({"test_accuracy": 0.9}, "the evaluate step's metrics")


@pytest.fixture(scope="module")
def other_model(small_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "model"
    run_main("-m", "components.train", "--dataset", str(small_dataset), "--model", str(out), "--epochs", "1", "--seed", "1")
    return out


def _publisher(model, accuracy, uris, barrier, results, emulator_host):
    """One publishing process: for each location, wait for the other, then publish at the same moment."""
    import os

    if emulator_host:
        os.environ["STORAGE_EMULATOR_HOST"] = emulator_host
    from components.publish import publish_model

    for uri in uris:
        barrier.wait(timeout=120)
        published = publish_model(model, uri, accuracy, tolerance=0.0)
        results.put((uri, accuracy, published.version, published.promoted))


def _race(model, other_model, uris, emulator_host=""):
    """Two processes publish models of test accuracy 0.99 and 0.98 to each of ``uris`` at once."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # JAX must not be forked
    barrier, results = ctx.Barrier(2), ctx.Queue()
    workers = [ctx.Process(target=_publisher, args=(str(m), acc, uris, barrier, results, emulator_host))
               for m, acc in ((model, 0.99), (other_model, 0.98))]
    for w in workers:
        w.start()
    outcomes = [results.get(timeout=120) for _ in range(2 * len(uris))]
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    return outcomes


def _check_race(uris, outcomes):
    for uri in uris:
        champion = read_champion(uri)
        assert champion["metrics"]["test_accuracy"] == 0.99, f"{uri}: the worse model won the race"
        winner = next(v for u, acc, v, _ in outcomes if u == uri and acc == 0.99)
        assert champion["version"] == winner


def test_two_concurrent_publishers_never_roll_the_better_champion_back_locally(model, other_model, tmp_path):
    uris = [str(tmp_path / f"published-{i}") for i in range(25)]
    outcomes = _race(model, other_model, uris)
    _check_race(uris, outcomes)
    # Both decided against what they found: the worse one either saw the better champion and published
    # nothing, or was promoted first and then replaced.
    assert {(acc, promoted) for _, acc, _, promoted in outcomes} <= {(0.99, True), (0.98, True), (0.98, False)}


def test_two_concurrent_publishers_never_roll_the_better_champion_back_on_cloud_storage(model, other_model, gcs_emulator):
    import os

    gcs_emulator.create_bucket("race")
    uris = [f"gs://race/mnist-{i}" for i in range(15)]
    outcomes = _race(model, other_model, uris, os.environ["STORAGE_EMULATOR_HOST"])
    _check_race(uris, outcomes)


def test_publish_rereads_the_champion_and_keeps_a_better_one(model, other_model, tmp_path):
    """evaluate blessed against an older champion (or a cached result): publish decides again."""
    uri = str(tmp_path / "published")
    best = publish_model(model, uri, 0.99).version
    late = publish_model(other_model, uri, 0.95, tolerance=0.002)
    assert late.version == "" and not late.promoted
    assert "below the champion's 0.9900" in late.reason
    assert read_champion(uri)["version"] == best
    assert {p.name for p in (tmp_path / "published").iterdir() if not p.name.startswith(".")} == {LATEST, best}


# ---- Vertex AI Model Registry (stand-in) as the publish target

REGISTRY = "projects/my-project/locations/us-central1/models/mnist-mlp"


def test_model_registry_versions_and_the_champion_alias(model, gcs_emulator, monkeypatch, tmp_path):
    """Request by request: the champion read by alias, a version per blessed model, the alias moved only to a winner."""
    from vertex_api_stand_in import VertexModelRegistryStandIn

    gcs_emulator.create_bucket("registry-models")
    model_uri = "gs://registry-models/run-1/train/model"
    upload_tree(model, model_uri)  # where a Vertex AI pipeline run keeps its Model artifact
    with VertexModelRegistryStandIn() as vertex:
        monkeypatch.setenv("JAX_MLP_VERTEX_ENDPOINT", vertex.url)
        assert read_champion(REGISTRY) is None
        first = publish_model(model, REGISTRY, 0.90, 0.10, image="reg/img:1", run_id="run-1", model_uri=model_uri)
        assert (first.version, first.promoted) == ("1", True) and "no champion yet" in first.reason
        champion = read_champion(REGISTRY)
        assert champion["version"] == "1" and champion["metrics"]["test_accuracy"] == 0.90
        assert champion["model_uri"] == model_uri and champion["pipeline_run_id"] == "run-1"

        worse = publish_model(model, REGISTRY, 0.80, 0.20, model_uri=model_uri)
        assert (worse.version, worse.promoted) == ("", False) and worse.reason.startswith("not published: ")
        better = run_cli("-m", "components.publish", "--model", str(model), "--model-uri", model_uri, "--publish-uri",
                         REGISTRY, "--metrics-by-hand", "--test-accuracy", "0.95", "--test-loss", "0.05", "--champion-version", "1",
                         env={"JAX_MLP_VERTEX_ENDPOINT": vertex.url}).stdout.strip().splitlines()[-1]
        assert better.startswith(f"published version 2 to {REGISTRY}; alias champion moved to it")
        assert read_champion(REGISTRY)["version"] == "2"
        aliases = vertex.aliases(REGISTRY)
    assert aliases == {"1": ["default"], "2": ["champion"]}  # the alias left version 1 when version 2 took it
    calls = [(r["method"], r["path"].split("/models", 1)[1]) for r in vertex.requests]
    assert calls == [
        ("GET", "/mnist-mlp@champion"),                                         # read_champion: none yet
        ("GET", "/mnist-mlp@champion"), ("GET", "/mnist-mlp"), (("POST", ":upload")),  # creates the model
        ("GET", "/mnist-mlp@champion"), ("POST", "/mnist-mlp@1:mergeVersionAliases"),
        ("GET", "/mnist-mlp@champion"),                                         # read_champion
        ("GET", "/mnist-mlp@champion"),                                         # the worse model: nothing sent
        ("GET", "/mnist-mlp@champion"), ("GET", "/mnist-mlp"), ("POST", ":upload"),  # a new version
        ("GET", "/mnist-mlp@champion"), ("POST", "/mnist-mlp@2:mergeVersionAliases"),
        ("GET", "/mnist-mlp@champion"),
    ]
    uploads = [r["body"] for r in vertex.requests if r["path"].endswith(":upload")]
    assert uploads[0]["modelId"] == "mnist-mlp" and uploads[1]["parentModel"] == REGISTRY
    version = uploads[1]["model"]
    assert version["artifactUri"] == f"{model_uri}/saved_model/1"
    assert version["containerSpec"]["imageUri"].startswith("us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.")
    record = json.loads(version["versionDescription"])
    assert record["metrics"] == {"test_accuracy": 0.95, "test_loss": 0.05, "epochs": 1,
                                 "test_set_sha256": record["dataset"]["splits_sha256"]["test"]}
    assert record["compared_with"] == "1" and record["validation"] == {}  # none given: nothing recorded
    assert {"splits_sha256", "num_classes", "image_shape", "version"} <= record["dataset"].keys()
    assert record["dataset"]["splits_sha256"]["test"] == record["metrics"]["test_set_sha256"]
    assert record["config"]["epochs"] == 1 and record["config"]["layer_sizes"][0] == 784
    assert len(version["versionDescription"]) < 1500


def test_a_model_registry_champion_records_its_data_for_the_next_run(model, small_dataset, gcs_emulator, monkeypatch,
                                                                      tmp_path):
    """A registry version records its test and training data and the URIs of validate's files: the next run's
    validation reads them as its baseline, and a champion promoted meanwhile is compared on the same test split."""
    from components.validate import validate_dataset
    from components.publish import champion_baseline
    from mlp_core.errors import UserError
    from mlp_core.data.validation import SCHEMA_FILE, STATISTICS_FILE
    from vertex_api_stand_in import VertexModelRegistryStandIn

    gcs_emulator.create_bucket("registry-data")
    model_uri = "gs://registry-data/run-1/train/model"
    upload_tree(model, model_uri)
    first = validate_dataset(small_dataset, tmp_path / "statistics.pb", tmp_path / "anomalies.pbtxt", tmp_path / "schema.pbtxt")
    uris = {STATISTICS_FILE: "gs://registry-data/run-1/validate/statistics",
            SCHEMA_FILE: "gs://registry-data/run-1/validate/output_schema"}
    for name, local in ((STATISTICS_FILE, "statistics.pb"), (SCHEMA_FILE, "schema.pbtxt")):
        storage.write_bytes(uris[name], (tmp_path / local).read_bytes())
    with VertexModelRegistryStandIn() as vertex:
        monkeypatch.setenv("JAX_MLP_VERTEX_ENDPOINT", vertex.url)
        assert champion_baseline(REGISTRY) == (None, None)  # no champion yet
        published = publish_model(model, REGISTRY, 0.90, 0.10, model_uri=model_uri, validation=uris)
        assert published.promoted and read_champion(REGISTRY)["validation"] == uris
        assert champion_baseline(REGISTRY) == (uris[STATISTICS_FILE], uris[SCHEMA_FILE])
        second = validate_dataset(small_dataset, tmp_path / "s2.pb", tmp_path / "a2.pbtxt", publish_uri=REGISTRY)
        # evaluate compared the next model with no champion; version 1 took the alias since, on the same test
        # split: its numbers are compared (before, a registry champion had no test split recorded: never promoted)
        storage.delete(uris[SCHEMA_FILE])  # the run's pipeline root, cleaned up since
        gone = champion_baseline(REGISTRY)
        raced = publish_model(model, REGISTRY, 0.95, 0.05, model_uri=model_uri, champion_version="")
        # a record naming a local file is not ours: one line, nothing read
        version = publish_model(model, REGISTRY, 0.99, 0.01, model_uri=model_uri, champion_version="2",
                                validation={STATISTICS_FILE: uris[STATISTICS_FILE]})
        stored = vertex.models[REGISTRY][int(version.version) - 1]  # as someone else might have written it
        stored["versionDescription"] = json.dumps({**json.loads(stored["versionDescription"]),
                                                   "validation": {STATISTICS_FILE: "/etc/passwd"}})
        with pytest.raises(UserError, match="not in an object store: '/etc/passwd'"):
            champion_baseline(REGISTRY)
    assert first["baseline_source"] is None and second["baseline_source"] == uris[STATISTICS_FILE]
    assert second["schema_source"] == f"from {uris[SCHEMA_FILE]}" and second["anomalies"] == []
    assert raced.promoted and "0.9000" in raced.reason, raced.reason
    assert gone == (uris[STATISTICS_FILE], None)  # a deleted file is no baseline


def test_model_registry_refusals_are_one_line(model, gcs_emulator, monkeypatch):
    from vertex_api_stand_in import VertexModelRegistryStandIn

    with VertexModelRegistryStandIn() as vertex:
        env = {"JAX_MLP_VERTEX_ENDPOINT": vertex.url}
        local = run_cli("-m", "components.publish", "--model", str(model), "--publish-uri", REGISTRY,
                        "--metrics-by-hand", "--test-accuracy", "0.9", "--test-loss", "0.1", env=env, check=False)
        gcs_emulator.create_bucket("registry-empty")
        missing = run_cli("-m", "components.publish", "--model", str(model), "--model-uri", "gs://registry-empty/model",
                          "--publish-uri", REGISTRY, "--metrics-by-hand", "--test-accuracy", "0.9", "--test-loss", "0.1",
                          env=env, check=False)
    assert local.returncode == 2 and "a Model Registry version points at its model in Cloud Storage" in local.stderr
    assert missing.returncode == 2 and "the Model Registry refused the upload" in missing.stderr
    assert "is expected to contain exactly one of: [saved_model.pb" in missing.stderr
    assert [r["path"] for r in vertex.requests if r["method"] == "POST"] == [
        f"/v1/{REGISTRY.rsplit('/models/', 1)[0]}/models:upload"]
