"""The trust boundary for Vertex AI names, Google credentials and model-server answers, with generated cases.

Hypothesis generates Model Registry names, Vertex AI experiment names, TensorBoard
resource names, served model names and model-server answers around their
documented boundaries (3/4 and 89/90/121/128/129 characters, 62/63/64-character
model ids, leading digits and hyphens, empty parts). Each generated case is
judged by an oracle written here from the documentation (not from the code under
test): a valid one must be accepted and reach the stand-in; an invalid one must
end in one ``error:`` line and exit 2 (or the library's one-line error) with no
request recorded by the stand-in (tests/vertex_api_stand_in.py,
tests/vertex_experiments_stand_in.py, tests/tf_serving_stand_in.py).

The rules (each cited where the code enforces it):
- Model Registry model id: at most 63 of ``[a-z0-9_-]``, the first neither a digit nor
  '-' (aiplatform_v1 ``UploadModelRequest.model_id``); project: an id (6-30 of
  ``[a-z0-9-]``, a letter first, no '-' last) or a number; region like ``us-central1``.
- Experiment: Metadata context and artifact ids are 4-128 of ``[a-z0-9-]``
  (aiplatform_v1 ``CreateContextRequest.context_id``, ``CreateArtifactRequest.artifact_id``),
  TensorBoard experiment ids ``[a-z0-9][a-z0-9-]{0,127}``; the SDK derives the run
  context ``<experiment>-<job id>`` (at most 121: ``metadata/constants.py``
  ``_EXPERIMENT_RUN_MAX_LENGTH``) and the TensorBoard link artifact
  ``<experiment>-<job id>-tb-run`` (at most 128); job ids the SDK makes are
  ``jax-mlp-pipeline-YYYYMMDDHHMMSS`` (31 characters, ``pipeline_jobs.py``).
- Served model name: one path segment (TF Serving's REST handler takes ``[^/:]+``).
- A served answer: one prediction per image, each ``probabilities`` of one length, finite, in
  [0, 1], summing to 1, and ``classes`` an integer index of the largest probability.

``TRUST_SURVEY=FILE pytest tests/test_trust_vertex.py -k generated`` records each generated case
and its outcome in FILE (JSON lines) instead of stopping at the first failure: how the defects
found before the fix were counted. Before it (150 cases of each kind, 2026-11-30): registry names
130 of 150 failed on the code before the publish location was checked first (7 rules: model ids starting
with a digit or '-', over 63, empty or of other characters; bad projects, regions, shapes: published to a
local folder projects/... or sent to the registry), and 5 of 150 after it (valid ids starting with '_'
not taken for registry names); experiment names 32-36 of 150 (under 4 characters reached Vertex AI,
over 89 failed in the SDK after requests); TensorBoard names 15-43 of 150 (bad project ids sent);
served model names 79-85 of 150 (put into the URL unchecked: '..', '', '%2e', unicode); server answers
41-77 of 150 (8 rules: NaN, inf, negative or > 1 probabilities, classes out of range or not integers,
ragged or missing outputs accepted or a traceback).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import string
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from uploads import upload_tree

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))

LOWER, DIGITS = set(string.ascii_lowercase), set(string.digits)
PROJECT, REGION = "stand-in-project", "us-central1"
JOB_ID = "jax-mlp-pipeline-20261127103000"  # what aiplatform.PipelineJob makes of our pipeline's name
JOB = f"projects/{PROJECT}/locations/{REGION}/pipelineJobs/{JOB_ID}"
STORE = f"projects/{PROJECT}/locations/{REGION}/metadataStores/default"
TENSORBOARD = f"projects/{PROJECT}/locations/{REGION}/tensorboards/4242"
MODEL_URI = "gs://trust-vertex-models/run-1/train/model"
NO_HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
FEW = settings(max_examples=4, deadline=None, suppress_health_check=NO_HEALTH)  # a subprocess each
MANY = settings(max_examples=int(os.environ.get("TRUST_EXAMPLES", "150")), deadline=None,
                suppress_health_check=NO_HEALTH)


# ---- oracles, from the documentation

def _project_ok(p: str) -> bool:
    if p and set(p) <= DIGITS:
        return len(p) <= 20
    return 6 <= len(p) <= 30 and p[0] in LOWER and p[-1] != "-" and set(p) <= LOWER | DIGITS | {"-"}


def _region_ok(r: str) -> bool:
    return re.fullmatch(r"[a-z]+-[a-z]+[0-9]+", r) is not None


def registry_broken_rule(name: str) -> "str | None":
    """The first documented rule ``name`` breaks as a Model Registry model name, or None."""
    parts = name.split("/")
    if len(parts) != 6 or parts[0::2] != ["projects", "locations", "models"]:
        return "shape projects/P/locations/L/models/M"
    project, region, model = parts[1::2]
    if not _project_ok(project):
        return "project id or number"
    if not _region_ok(region):
        return "region"
    if not model:
        return "model id empty"
    if len(model) > 63:
        return "model id over 63"
    if not set(model) <= LOWER | DIGITS | {"_", "-"}:
        return "model id characters"
    if model[0] in DIGITS | {"-"}:
        return "model id starts with a digit or '-'"
    return None


def experiment_broken_rule(name: str, job_id: str = JOB_ID) -> "str | None":
    if len(name) < 4:
        return "under 4 characters"
    if not set(name) <= LOWER | DIGITS | {"-"}:
        return "characters"
    if name[0] == "-":
        return "starts with '-'"
    if len(f"{name}-{job_id}") > 121 or len(f"{name}-{job_id}-tb-run") > 128:
        return "derived run ids over 121/128"
    return None


def tensorboard_broken_rule(name: str) -> "str | None":
    parts = name.split("/")
    if len(parts) != 6 or parts[0::2] != ["projects", "locations", "tensorboards"]:
        return "shape"
    project, region, number = parts[1::2]
    if not _project_ok(project):
        return "project"
    if not _region_ok(region):
        return "region"
    if not number or not set(number) <= DIGITS:
        return "tensorboard id"
    return None


def served_name_broken_rule(name: str) -> "str | None":
    if not name or len(name) > 128:
        return "length"
    if not set(name) <= LOWER | set(string.ascii_uppercase) | DIGITS | set("._-"):
        return "characters"
    if name[0] in ".-":
        return "starts with '.' or '-'"
    return None


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def answer_broken_rule(answer, count: int) -> "str | None":
    predictions = answer.get("predictions") if isinstance(answer, dict) else None
    if not isinstance(predictions, list) or len(predictions) != count:
        return "not one prediction per image"
    widths = set()
    for p in predictions:
        if not isinstance(p, dict) or not isinstance(p.get("probabilities"), list):
            return "no probabilities"
        probs, cls = p["probabilities"], p.get("classes")
        if not probs or not all(_number(v) for v in probs):
            return "probabilities not numbers"
        widths.add(len(probs))
        if not all(math.isfinite(v) for v in probs):
            return "probabilities not finite"
        if not all(0 <= v <= 1 for v in probs):
            return "probabilities outside [0, 1]"
        if abs(math.fsum(probs) - 1) > 1e-3:
            return "probabilities do not sum to 1"
        if not isinstance(cls, int) or isinstance(cls, bool):
            return "class not an integer"
        if not 0 <= cls < len(probs):
            return "class out of range"
        if probs[cls] < max(probs):
            return "class not the most probable"
    return "probabilities of different lengths" if len(widths) > 1 else None


# ---- generators

def _of_length(alphabet: str, sizes) -> st.SearchStrategy:
    return st.sampled_from(sizes).flatmap(lambda n: st.text(alphabet=alphabet, min_size=n, max_size=n))


ID_CHARS = string.ascii_lowercase + string.digits + "_-"
model_ids = st.one_of(
    st.text(alphabet=ID_CHARS, max_size=70),
    _of_length(ID_CHARS, [0, 1, 62, 63, 64, 65, 128]),
    st.builds(lambda c, rest: c + rest, st.sampled_from("0123456789-_a"), st.text(alphabet=ID_CHARS, max_size=62)),
    st.text(max_size=12),  # anything at all: capitals, '.', '/', '@', unicode
)
projects = st.one_of(
    st.sampled_from(["my-project", PROJECT, "123456789012", "", "p", "My-Project", "project-", "1project", "a" * 30,
                     "a" * 31, "abcde", "abcdef"]),
    st.from_regex(r"[a-z][a-z0-9-]{3,31}", fullmatch=True),
    st.from_regex(r"[0-9]{1,22}", fullmatch=True),
)
regions = st.sampled_from(["us-central1", "europe-west4", "asia-northeast1", "", "US-central1", "us_central1",
                           "global", "uscentral1", "us-central"])
registry_names = st.one_of(
    st.builds(lambda p, r, m: f"projects/{p}/locations/{r}/models/{m}", projects, regions, model_ids),
    st.builds(lambda m: f"projects/{PROJECT}/locations/{REGION}/models/{m}", model_ids),
    st.sampled_from(["projects/P/locations//models/M", "projects/my-project/locations/us-central1/models/",
                     "projects/my-project/locations/us-central1/models/mnist/versions/1", "projects//locations/x",
                     "projects/my-project/locations/us-central1/models/mnist@champion", "projects/"]),
)

EXPERIMENT_CHARS = string.ascii_lowercase + string.digits + "-"
experiment_names = st.one_of(
    _of_length(EXPERIMENT_CHARS, [0, 1, 3, 4, 5, 88, 89, 90, 121, 128, 129]),
    st.text(alphabet=EXPERIMENT_CHARS, max_size=130),
    st.builds(lambda c, rest: c + rest, st.sampled_from("-0a"), st.text(alphabet=EXPERIMENT_CHARS, min_size=3,
                                                                          max_size=88)),
    st.text(alphabet=EXPERIMENT_CHARS + "_A.", min_size=4, max_size=20),
)
tensorboard_names = st.one_of(
    st.builds(lambda p, r, n: f"projects/{p}/locations/{r}/tensorboards/{n}", projects, regions,
              st.one_of(st.from_regex(r"[0-9]{1,19}", fullmatch=True), st.sampled_from(["", "abc", "12a", "-1"]))),
    st.sampled_from(["projects/P/locations//tensorboards/1", f"{TENSORBOARD}/experiments/x", TENSORBOARD + "/"]),
)
served_names = st.one_of(
    st.sampled_from(["mnist-mlp", "../../admin", "..", ".", "a/b", "x:predict", "%2e%2e", "", "-x", ".hidden",
                     "mnist-mlp?x=1", "a#b", "a b", "A" * 128, "A" * 129, "é"]),
    st.text(alphabet=string.ascii_letters + string.digits + "._-", min_size=1, max_size=130),
    st.text(max_size=10),
)


def _softmax(logits):
    top = max(logits)
    e = [math.exp(x - top) for x in logits]
    return [v / sum(e) for v in e]


@st.composite
def server_answers(draw, count: int = 2):
    """A served answer for ``count`` images: a correct one, then possibly poisoned in one way."""
    width = 10
    predictions = []
    for _ in range(count):
        probs = _softmax(draw(st.lists(st.floats(-20, 20), min_size=width, max_size=width)))
        predictions.append({"probabilities": probs, "classes": max(range(width), key=probs.__getitem__)})
    poison = draw(st.sampled_from(["none", "none", "class", "probability", "width", "count", "type", "shape"]))
    i = draw(st.integers(0, count - 1))
    p = predictions[i]
    if poison == "class":
        p["classes"] = draw(st.one_of(st.sampled_from([width, -1, 10 ** 12, 3.5, True, "3", None]),
                                      st.integers(-5, 15)))
    elif poison == "probability":
        j = draw(st.integers(0, width - 1))
        p["probabilities"][j] = draw(st.sampled_from([float("nan"), float("inf"), -float("inf"), -0.5, 1.5, 2.0,
                                                      "0.1", None]))
    elif poison == "width":
        p["probabilities"] = p["probabilities"][: draw(st.integers(0, width - 1))]
    elif poison == "count":
        predictions = predictions[:-1] if draw(st.booleans()) else predictions + [predictions[0]]
    elif poison == "type":
        return draw(st.sampled_from([{"predictions": None}, {"predictions": {}}, [], {"outputs": []}, {},
                                     {"predictions": [[0.1] * 10] * count}]))
    elif poison == "shape":
        p.pop(draw(st.sampled_from(["probabilities", "classes"])))
    return {"predictions": predictions}


# ---- fixtures

def cli(*args: str, cwd: Path, env: "dict | None" = None) -> subprocess.CompletedProcess:
    """``python <args>`` run in ``cwd`` (a scratch folder: a name taken for a local path lands there)."""
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get(
                              "PYTHONPATH")])), **(env or {})})


def assert_one_line_refusal(result: subprocess.CompletedProcess, *needles: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def trained(small_model):
    """A real model (1 epoch), its train metrics, event files and test metrics (conftest's small_model)."""
    return small_model


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """The working directory of in-process calls: a name wrongly taken for a local folder lands here."""
    folder = tmp_path_factory.mktemp("cwd")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        yield folder


@pytest.fixture(scope="module")
def registry(gcs_emulator, trained, scratch):
    from vertex_api_stand_in import VertexModelRegistryStandIn

    from artifacts import storage

    if not gcs_emulator.bucket("trust-vertex-models").exists():
        gcs_emulator.create_bucket("trust-vertex-models")
    upload_tree(trained / "model", MODEL_URI)
    with VertexModelRegistryStandIn() as stand_in, pytest.MonkeyPatch.context() as mp:
        mp.setenv("JAX_MLP_VERTEX_ENDPOINT", stand_in.url)
        yield stand_in


@pytest.fixture(scope="module")
def experiments(gcs_emulator, scratch):
    from vertex_experiments_stand_in import VertexExperimentsStandIn

    with VertexExperimentsStandIn(tensorboards=(TENSORBOARD,)) as stand_in, pytest.MonkeyPatch.context() as mp:
        mp.setenv("JAX_MLP_VERTEX_ENDPOINT", stand_in.url)
        yield stand_in


@pytest.fixture(scope="module")
def serving(trained):
    from tf_serving_stand_in import TfServingStandIn

    with TfServingStandIn({"mnist-mlp": trained / "model" / "saved_model"}) as stand_in:
        yield stand_in


def _images(count: int = 2):
    import numpy as np

    return np.zeros((count, 28, 28, 1), np.uint8)


# ---- the properties (plain functions: the tests and the survey share them)

SURVEY = os.environ.get("TRUST_SURVEY")


def judged(kind: str, rule: "str | None", check, value, *args) -> None:
    """``check(value, *args)``; under ``TRUST_SURVEY``, its outcome is recorded instead of raised."""
    if not SURVEY:
        return check(value, *args)
    try:
        check(value, *args)
        failure = None
    except (Exception, pytest.fail.Exception) as e:  # noqa: BLE001 - recorded, not raised ("DID NOT RAISE" too)
        failure = f"{type(e).__name__}: {str(e)[:300]}"
    with open(SURVEY, "a") as f:
        f.write(json.dumps({"kind": kind, "rule": rule, "value": repr(value)[:300], "failure": failure}) + "\n")

def check_registry_name(name: str, registry, trained, scratch) -> None:
    from components.publish import publish_model, read_champion

    before = len(registry.requests)
    broken = registry_broken_rule(name)
    try:
        if broken is None:
            read_champion(name)  # reaches the registry: its champion, if any
            sent = registry.requests[before:]
            assert sent and sent[0]["path"] == f"/v1/{name}@champion", sent
            return
        with pytest.raises(Exception) as refused:
            publish_model(trained / "model", name, 0.9, 0.1, model_uri=MODEL_URI)
        from mlp_core.errors import UserError

        assert isinstance(refused.value, UserError), f"{broken}: {type(refused.value).__name__}: {refused.value}"
        assert len(str(refused.value).splitlines()) == 1 and "--publish-uri" in str(refused.value)
        assert registry.requests[before:] == [], f"{broken}: a request reached the registry"
    finally:
        made = scratch / "projects"
        leaked = made.exists()
        shutil.rmtree(made, ignore_errors=True)  # what the code under test wrongly wrote, in our scratch folder
    assert not leaked, f"{name!r} ({broken}) was published to a local folder projects/..."


def check_experiment_name(name: str, experiments) -> None:
    from platforms.vertex.experiments import track_run
    from mlp_core.errors import UserError

    before = len(experiments.requests)
    broken = experiment_broken_rule(name)
    if broken is None:
        assert track_run(JOB, name, {"epochs": 1}, {"test_accuracy": 0.9}) == JOB_ID
        assert f"{STORE}/contexts/{name}-{JOB_ID}" in experiments.resources
        return
    try:
        track_run(JOB, name, {"epochs": 1}, {"test_accuracy": 0.9})
        raise AssertionError(f"{name!r} ({broken}) accepted")
    except UserError as e:
        assert len(str(e).splitlines()) == 1
    except AssertionError:
        raise
    except Exception as e:  # noqa: BLE001 - what the code did instead of one line
        raise AssertionError(f"{name!r} ({broken}): {type(e).__name__}: {str(e)[:200]}") from None
    assert experiments.requests[before:] == [], f"{name!r} ({broken}): a request reached Vertex AI"


def check_tensorboard_name(name: str, experiments, trained) -> None:
    from platforms.vertex.experiments import check_tensorboard, track_run
    from mlp_core.errors import UserError

    broken = tensorboard_broken_rule(name)
    if broken is None:
        assert check_tensorboard(name) == name
        return
    before = len(experiments.requests)
    with pytest.raises(UserError):
        track_run(JOB, "mnist-mlp", {"epochs": 1}, {"test_accuracy": 0.9}, trained / "tensorboard", name)
    assert experiments.requests[before:] == [], f"{name!r} ({broken}): a request reached Vertex AI"


def predict_served(server: str, model_name: str, images, timeout: float = 60):
    """``(probabilities, classes)`` from a served model: ``served_predictions`` without the names."""
    from components.predict import served_predictions

    return served_predictions(server, model_name, images, timeout=timeout)[:2]


def check_served_name(name: str, serving) -> None:
    from mlp_core.errors import UserError

    before = len(serving.requests)
    broken = served_name_broken_rule(name)
    if broken is None:
        try:
            predict_served(serving.url, name, _images())
        except UserError as e:  # not served: answered 404, which is one line
            assert name != "mnist-mlp" and "404" in str(e)
        (request,) = serving.requests[before:]
        assert request["path"] == f"/v1/models/{name}:predict"
        return
    with pytest.raises(UserError) as refused:
        predict_served(serving.url, name, _images())
    assert "--model-name" in str(refused.value), f"{name!r} ({broken}): {refused.value}"
    assert serving.requests[before:] == [], f"{name!r} ({broken}): the request reached the server"


def check_server_answer(answer, serving) -> None:
    import numpy as np

    from mlp_core.errors import UserError

    broken = answer_broken_rule(answer, 2)
    serving.tamper = lambda status, reply: (200, answer)
    try:
        if broken is None:
            probabilities, classes = predict_served(serving.url, "mnist-mlp", _images())
            assert probabilities.shape == (2, 10) and np.isfinite(probabilities).all()
            assert [int(c) for c in classes] == [p["classes"] for p in answer["predictions"]]
            return
        try:
            probabilities, classes = predict_served(serving.url, "mnist-mlp", _images())
        except UserError as e:
            assert len(str(e).splitlines()) == 1
            return
        except Exception as e:  # noqa: BLE001 - what the code did instead of one line
            raise AssertionError(f"{broken}: {type(e).__name__}: {str(e)[:200]}") from None
        raise AssertionError(f"{broken}: accepted ({json.dumps(answer, default=str)[:200]})")
    finally:
        serving.tamper = None


# ---- Model Registry names

@given(name=registry_names)
@MANY
def test_generated_registry_names_are_refused_before_any_request_or_reach_the_registry(name, registry, trained, scratch):
    judged("registry name", registry_broken_rule(name), check_registry_name, name, registry, trained, scratch)


@given(name=registry_names.filter(lambda n: registry_broken_rule(n) is not None))
@FEW
def test_publish_refuses_a_generated_bad_registry_name_in_one_line(name, registry, trained, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("publish-cwd")
    before = len(registry.requests)
    result = cli("-m", "components.publish", "--model", str(trained / "model"), "--model-uri", MODEL_URI,
                 f"--publish-uri={name}", "--metrics-by-hand", "--test-accuracy", "0.9", "--test-loss", "0.1", cwd=cwd,
                 env={"JAX_MLP_VERTEX_ENDPOINT": registry.url})
    assert_one_line_refusal(result, "--publish-uri")
    assert not any(cwd.iterdir()), "written to a local folder"
    assert registry.requests[before:] == []


@pytest.mark.parametrize("name, rule", [
    ("projects/my-project/locations/us-central1/models/1mnist", "not starting with a digit"),
    ("projects/my-project/locations/us-central1/models/" + "m" * 64, "at most 63"),
    ("projects/P/locations//models/M", "projects/PROJECT/locations/REGION/models/MODEL"),
])
def test_evaluate_refuses_a_bad_registry_name_before_evaluating(name, rule, trained, small_dataset, tmp_path):
    result = cli("-m", "components.evaluate", "--model", str(trained / "model"), "--dataset", str(small_dataset),
                 "--publish-uri", name, cwd=tmp_path)
    assert_one_line_refusal(result, "--publish-uri", rule)
    assert "test accuracy" not in result.stdout  # refused before the evaluation ran
    assert not any(tmp_path.iterdir())


def test_a_63_character_model_id_is_published_and_the_stand_in_refuses_64(registry, trained):
    """The boundary itself, end to end: the stand-in (the registry's rule) takes 63 and refuses 64."""
    from components.publish import publish_model

    name = f"projects/{PROJECT}/locations/{REGION}/models/m{'x' * 62}"
    published = publish_model(trained / "model", name, 0.9, 0.1, model_uri=MODEL_URI)
    assert published.promoted and published.version == "1"
    assert [r for r in registry.requests if r["path"].endswith(":upload") and r["body"].get("modelId") == name[-63:]]
    status, reply = registry.handle("POST", f"/v1/projects/{PROJECT}/locations/{REGION}/models:upload",
                                    {"modelId": "m" * 64, "model": {}})
    assert status == 400 and "63" in reply["error"]["message"]


# ---- experiment and TensorBoard names

@given(name=experiment_names)
@MANY
def test_generated_experiment_names_are_refused_before_any_request_or_tracked(name, experiments):
    judged("experiment name", experiment_broken_rule(name), check_experiment_name, name, experiments)


@given(name=tensorboard_names)
@MANY
def test_generated_tensorboard_names_are_refused_before_any_request(name, experiments, trained):
    judged("tensorboard name", tensorboard_broken_rule(name), check_tensorboard_name, name, experiments, trained)


@given(name=experiment_names.filter(lambda n: experiment_broken_rule(n) is not None))
@FEW
def test_track_refuses_a_generated_bad_experiment_name_in_one_line(name, experiments, trained, tmp_path_factory):
    before = len(experiments.requests)
    result = cli("-m", "components.track", "--job", JOB, f"--experiment={name}", "--train-metrics",
                 str(trained / "train_metrics.json"), "--test-metrics", str(trained / "test_metrics.json"),
                 cwd=tmp_path_factory.mktemp("track-cwd"), env={"JAX_MLP_VERTEX_ENDPOINT": experiments.url})
    assert_one_line_refusal(result, "experiment")
    assert experiments.requests[before:] == []


def test_the_longest_accepted_experiment_name_is_tracked_with_its_tensorboard(experiments, trained):
    """89 characters: the run context '<experiment>-<job id>' is 121, the link artifact '...-tb-run' 128."""
    from platforms.vertex.experiments import check_experiment, track_run

    name = "e" * 89
    assert track_run(JOB, name, {"epochs": 1}, {"test_accuracy": 0.9}, trained / "tensorboard", TENSORBOARD) == JOB_ID
    link = f"{STORE}/artifacts/{name}-{JOB_ID}-tb-run"
    assert len(link.rsplit("/", 1)[1]) == 128 and link in experiments.resources
    with pytest.raises(Exception, match="4-89"):
        check_experiment(name + "e")


def test_the_longest_job_id_is_what_the_sdk_makes_of_our_pipeline_name():
    from datetime import datetime

    from platforms.vertex.experiments import LONGEST_JOB_ID
    from pipeline import PIPELINE_NAME

    # google/cloud/aiplatform/pipeline_jobs.py: job_id = "{pipeline_name}-{timestamp:%Y%m%d%H%M%S}"
    assert LONGEST_JOB_ID == len(f"{PIPELINE_NAME}-{datetime(2026, 12, 31, 23, 59, 59):%Y%m%d%H%M%S}") == len(JOB_ID)


@pytest.mark.parametrize("name", ["abc", "e" * 90])
def test_compile_refuses_an_experiment_name_vertex_ai_would_refuse_at_run_time(name, tmp_path):
    result = cli(str(ROOT / "pipeline.py"), "compile", "--target", "vertex", "--accelerator", "none", "--experiment",
                 name, "--output", str(tmp_path / "p.yaml"), cwd=tmp_path)
    assert_one_line_refusal(result, "4-89")
    assert not (tmp_path / "p.yaml").exists()


# ---- the model server: its name and its answers

@given(name=served_names)
@MANY
def test_generated_served_model_names_are_refused_or_go_into_the_url_as_one_segment(name, serving):
    judged("served model name", served_name_broken_rule(name), check_served_name, name, serving)


@given(answer=server_answers())
@MANY
def test_generated_server_answers_are_checked_before_they_are_printed(answer, serving):
    judged("server answer", answer_broken_rule(answer, 2), check_server_answer, answer, serving)


@given(answer=server_answers(count=1).filter(lambda a: answer_broken_rule(a, 1) is not None))
@FEW
def test_predict_refuses_a_poisoned_answer_in_one_line(answer, serving, trained, tmp_path_factory):
    import numpy as np

    cwd = tmp_path_factory.mktemp("predict-cwd")
    np.save(cwd / "one.npy", _images(1))
    serving.tamper = lambda status, reply: (200, answer)
    try:
        result = cli("-m", "components.predict", "--server", serving.url, "--model-name", "mnist-mlp", "one.npy",
                     cwd=cwd)
    finally:
        serving.tamper = None
    assert_one_line_refusal(result)
    assert "p=nan" not in result.stdout


def test_predict_refuses_a_model_name_that_leaves_the_url_path(serving, tmp_path):
    import numpy as np

    np.save(tmp_path / "one.npy", _images(1))
    before = len(serving.requests)
    result = cli("-m", "components.predict", "--server", serving.url, "--model-name=../../admin", "one.npy",
                 cwd=tmp_path)
    assert_one_line_refusal(result, "--model-name")
    assert serving.requests[before:] == []


# ---- missing Google credentials: one line saying how to provide them

NO_CREDENTIALS = {"GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent/trust-vertex-key.json", "NO_GCE_CHECK": "True",
                  "GCE_METADATA_HOST": "127.0.0.1:9", "GCE_METADATA_IP": "127.0.0.1:9",
                  "CLOUDSDK_CONFIG": "/nonexistent/gcloud", "STORAGE_EMULATOR_HOST": "", "JAX_MLP_VERTEX_ENDPOINT": ""}
REGISTRY_NAME = f"projects/my-project/locations/{REGION}/models/mnist-mlp"


def _without_credentials(args, cwd, unset: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in {**os.environ, **NO_CREDENTIALS}.items() if v != ""}
    if unset:
        env.pop("GOOGLE_APPLICATION_CREDENTIALS")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("unset", [False, True], ids=["key-file-missing", "nothing-set"])
@pytest.mark.parametrize("command", ["publish-registry", "publish-gcs", "evaluate", "validate-registry", "train", "kserve",
                                     "track", "submit-vertex"])
def test_missing_google_credentials_are_one_line_saying_how_to_provide_them(command, unset, trained, small_dataset,
                                                                            tmp_path):
    model, dataset = str(trained / "model"), str(small_dataset)
    args = {
        "publish-registry": ["-m", "components.publish", "--model", model, "--model-uri", "gs://my-bucket/m",
                             "--publish-uri", REGISTRY_NAME, "--metrics-by-hand", "--test-accuracy", "0.9", "--test-loss", "0.1"],
        "publish-gcs": ["-m", "components.publish", "--model", model, "--publish-uri", "gs://my-bucket/mnist",
                        "--metrics-by-hand", "--test-accuracy", "0.9", "--test-loss", "0.1"],
        "evaluate": ["-m", "components.evaluate", "--model", model, "--dataset", dataset, "--publish-uri",
                     "gs://my-bucket/mnist"],
        # validate reads the registry champion's baseline (the URIs its version recorded)
        "validate-registry": ["-m", "components.validate", "--dataset", dataset, "--statistics", str(tmp_path / "s.pb"),
                              "--anomalies", str(tmp_path / "a.pbtxt"), "--publish-uri", REGISTRY_NAME],
        "train": ["-m", "components.train", "--dataset", dataset, "--model", str(tmp_path / "m"), "--epochs", "1",
                  "--checkpoint-dir", "gs://my-bucket/checkpoints"],
        "kserve": ["-m", "commands.kserve", "--name", "mnist-mlp", "--publish-uri", "gs://my-bucket/mnist"],
        "track": ["-m", "components.track", "--job", JOB, "--experiment", "mnist-mlp", "--train-metrics",
                  str(trained / "train_metrics.json"), "--test-metrics", str(trained / "test_metrics.json")],
        "submit-vertex": [str(ROOT / "pipeline.py"), "submit", "--vertex", "--project", "my-project", "--region",
                          REGION, "--pipeline-root", "gs://my-bucket/root", "--accelerator", "none"],
    }[command]
    result = _without_credentials(args, tmp_path, unset)
    assert_one_line_refusal(result, "gcloud auth application-default login", "GOOGLE_APPLICATION_CREDENTIALS")


def test_a_bad_location_is_refused_before_credentials_are_looked_for(trained, tmp_path):
    result = _without_credentials(["-m", "components.publish", "--model", str(trained / "model"), "--model-uri",
                                   "gs://my-bucket/m", "--publish-uri", REGISTRY_NAME.replace("mnist-mlp", "1mnist"),
                                   "--metrics-by-hand", "--test-accuracy", "0.9", "--test-loss", "0.1"], tmp_path, unset=False)
    assert_one_line_refusal(result, "--publish-uri", "not starting with a digit")
