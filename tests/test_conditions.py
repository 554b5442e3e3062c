"""The compiled pipeline's conditions, evaluated as the backends evaluate them: CEL, type-strict.

kfp.local evaluates a ``dsl.If`` by substituting text and returns False on any
error (so a broken condition silently skips its branch); the Kubeflow driver and
Vertex AI evaluate ``triggerPolicy.condition`` as CEL over the task's inputs
(kubeflow/pipelines ``backend/src/v2/expression/expression.go``, cel-go;
``inputs.parameter_values`` holds the resolved parameters as protobuf Values).
Here the same expressions run through cel-python (a CEL implementation in
Python) with those inputs: a condition that errors, or a value of the wrong type
(false by CEL's equality), fails this test instead of skipping a branch on a cluster.
"""

import celpy
import pytest
import yaml

import pipeline
from commands.cli import compile_pipeline
from platforms.options import ClusterOptions


def _conditions(spec: dict) -> dict[str, str]:
    """task name -> its trigger condition, over every DAG of the compiled spec."""
    found = {}
    dags = [spec["root"]["dag"], *(c["dag"] for c in spec["components"].values() if "dag" in c)]
    for dag in dags:
        for name, task in dag["tasks"].items():
            condition = task.get("triggerPolicy", {}).get("condition")
            if condition:
                found[name] = condition
    return found


def _evaluate(condition: str, values: dict):
    env = celpy.Environment()
    program = env.program(env.compile(condition))
    return program.evaluate({"inputs": celpy.json_to_cel({"parameter_values": values})})


@pytest.fixture(scope="module", params=["kfp", "vertex"])
def compiled(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("compiled") / "pipeline.yaml"
    compile_pipeline(path, options=ClusterOptions(target=request.param))
    return next(yaml.safe_load_all(path.read_text()))


def test_nothing_new_skips_everything_after_ingest(compiled):
    conditions = _conditions(compiled)
    (task, condition), = [(t, c) for t, c in conditions.items() if "new-data-Output" in c]
    key = "pipelinechannel--new-data-Output"
    assert _evaluate(condition, {key: True})
    assert not _evaluate(condition, {key: False})
    # CEL's equality across types is false, not an error (the CEL spec's heterogeneous equality, as cel-go): a
    # string "true" would silently skip the branch, so the step's output must be a BOOLEAN in the spec.
    assert not _evaluate(condition, {key: "true"})
    outputs = compiled["components"]["comp-new-data"]["outputDefinitions"]["parameters"]
    assert outputs["Output"]["parameterType"] == "BOOLEAN"
    # Everything after ingest and new_data lies inside that condition's group.
    group = compiled["components"][compiled["root"]["dag"]["tasks"][task]["componentRef"]["name"]]["dag"]["tasks"]
    assert "validate" in group and any("train" in name or "condition" in name for name in group)


def test_publish_conditions_hold_on_their_values(compiled):
    conditions = _conditions(compiled)
    publish_uri = next(c for c in conditions.values() if "publish_uri" in c)
    blessed = next(c for c in conditions.values() if "blessed" in c)
    key = next(k for k in ("pipelinechannel--publish_uri",) if k in publish_uri)
    assert _evaluate(publish_uri, {key: "gs://bucket/published"})
    assert not _evaluate(publish_uri, {key: ""})
    blessed_key = "pipelinechannel--evaluate-blessed"
    assert _evaluate(blessed, {blessed_key: True}) and not _evaluate(blessed, {blessed_key: False})
