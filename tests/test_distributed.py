"""Which process of how many: CLUSTER_SPEC (Vertex AI), Kubeflow Trainer v1 and v2, explicit flags."""

import json

import pytest

from mlp_core.errors import UserError
from mlp_core.distributed import SINGLE, detect, from_cluster_spec


def _spec(task_type: str, index: int, workers: int = 2) -> str:
    """CLUSTER_SPEC as Vertex AI writes it in every replica of a custom job with two worker pools."""
    return json.dumps({
        "cluster": {"workerpool0": ["cmle-training-workerpool0-1a2b-0:2222"],
                    "workerpool1": [f"cmle-training-workerpool1-1a2b-{i}:2222" for i in range(workers)]},
        "environment": "cloud",
        "task": {"type": task_type, "index": index, "trial": ""},
        "job": '{"python_module":"","package_uris":[]}',
    })


def test_vertex_replicas_number_pool_0_first_then_pool_1():
    groups = [from_cluster_spec(_spec("workerpool0", 0)), from_cluster_spec(_spec("workerpool1", 0)),
              from_cluster_spec(_spec("workerpool1", 1))]
    assert [g.process_id for g in groups] == [0, 1, 2]
    assert {g.num_processes for g in groups} == {3}
    assert {g.coordinator for g in groups} == {"cmle-training-workerpool0-1a2b-0:2222"}
    assert groups[0].is_primary and not groups[1].is_primary
    assert "from Vertex AI CLUSTER_SPEC" in groups[2].describe()


def test_kubeflow_trainer_v1_and_v2_variables():
    v1 = detect({"COORDINATOR_ADDRESS": "mnist-worker-0.mnist", "COORDINATOR_PORT": "6666",
                 "NUM_PROCESSES": "4", "PROCESS_ID": "3"})
    assert (v1.coordinator, v1.num_processes, v1.process_id) == ("mnist-worker-0.mnist:6666", 4, 3)
    assert "JAXJob" in v1.source
    v2 = detect({"JAX_COORDINATOR_ADDRESS": "train-node-0-0.train:6666", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"})
    assert (v2.coordinator, v2.num_processes, v2.process_id) == ("train-node-0-0.train:6666", 2, 0)
    assert "TrainJob" in v2.source


def test_explicit_values_must_agree_with_the_environment_and_nothing_found_is_one_process():
    assert detect({}, "127.0.0.1:1234", 2, 1).source == "the command line"
    agreeing = {"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1234", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}
    assert detect(agreeing, "127.0.0.1:1234", 2, 1).source == "the command line"
    with pytest.raises(UserError, match=r"the command line says process 0 of 2, coordinator 127.0.0.1:1234; "
                                          r"Kubeflow Trainer \(TrainJob, jax-distributed runtime\) says process 1 of 2"):
        detect(agreeing, "127.0.0.1:1234", 2, 0)
    with pytest.raises(UserError, match="Vertex AI CLUSTER_SPEC is not JSON"):  # an environment that cannot be read
        detect({"CLUSTER_SPEC": "not json"}, "127.0.0.1:1234", 2, 1)
    assert detect({}) == SINGLE and SINGLE.num_processes == 1 and SINGLE.is_primary


@pytest.mark.parametrize(("environ", "message"), [
    ({"CLUSTER_SPEC": "{cluster"}, "Vertex AI CLUSTER_SPEC is not JSON"),
    ({"CLUSTER_SPEC": "[]"}, "has no 'cluster' and 'task' objects"),
    ({"CLUSTER_SPEC": _spec("workerpool2", 0)}, "this task ('workerpool2', index 0) is not a replica of workerpool0 or workerpool1"),
    ({"CLUSTER_SPEC": _spec("workerpool1", 5)}, "task index 5 is not among the 2 replicas of workerpool1"),
    ({"CLUSTER_SPEC": json.dumps({"cluster": {"workerpool0": []}, "task": {"type": "workerpool0", "index": 0}})},
     "workerpool0 must list exactly one replica"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"},
     "JAX_NUM_PROCESSES must be an integer, got 'two'"),
    ({"COORDINATOR_ADDRESS": "h", "NUM_PROCESSES": "2", "PROCESS_ID": "2"}, "the coordinator address must be host:port"),
    ({"COORDINATOR_ADDRESS": "h:1", "NUM_PROCESSES": "2", "PROCESS_ID": "2"}, "process id 2 is not in 0 .. 1"),
    ({"COORDINATOR_ADDRESS": "h:0", "NUM_PROCESSES": "2", "PROCESS_ID": "1"}, "the coordinator port must be 1 .. 65535"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "5000", "JAX_PROCESS_ID": "1"},
     "the number of processes must be 1 .. 4096"),
])
def test_a_bad_environment_is_one_clear_line(environ, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        detect(environ)


def test_partial_explicit_values_are_refused():
    with pytest.raises(UserError, match="go together"):
        detect({}, "127.0.0.1:1", 0, -1)
