"""The kfp v2 pipeline: ingest -> new data? -> validate -> [tune] -> train -> evaluate -> publish (when blessed).

A run whose data and training settings are the champion's stops after ``new_data`` (one
line, nothing trained); a Dataset with anomalies stops at ``validate``, before training.

    python pipeline.py compile --output pipeline.yaml      # the command lines: commands/cli.py
    python pipeline.py run [--epochs N ...]                 # the whole DAG on this machine (kfp.local)

This module only wires the DAG. The pipeline's parameters are not declared
here: they are the steps' own parameters (each declared once, in its component
function), less the inputs the DAG fills itself (``WIRED``). The image is a
compile option, never read from the environment: the same command compiles the
same YAML on every machine.
"""

import inspect
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset

from platforms.kubeflow.trainer import trainer_job
from platforms.options import ClusterOptions, vertex_custom_job
from platforms.options import apply as apply_options
from components import evaluate, ingest, new_data, publish, track, train, tune, validate
from components._step import descriptions, parameters

PIPELINE_NAME = "jax-mlp-pipeline"
# The project image; `make image` builds it under this tag.
DEFAULT_IMAGE = "jax-mlp-pipeline:0.1.0"
STEPS = (ingest.ingest, new_data.new_data, validate.validate, tune.tune_plan, tune.tune, tune.tune_choose, train.train,
         evaluate.evaluate, publish.publish)
# Step inputs the DAG fills itself (another step's output, a placeholder, a compile option): not pipeline parameters.
# No {{$.pipeline_root}}: the Kubeflow backend never substitutes it (backend/src/v2/driver/resolve.go); the train
# step finds its durable location from its own Model artifact's URI instead (training_job.pipeline_checkpoint_dir).
WIRED = ("run_id", "require_gpu", "trainer_job", "image", "champion_version", "population", "best_hyperparameters")


def pipeline_parameters() -> dict[str, inspect.Parameter]:
    """The pipeline's parameters: every step parameter not in ``WIRED``, as its step declares it.

    A name shared by two steps (``publish_uri``, ``blessing_tolerance``) is one
    parameter; the steps must agree on its type and default (the first default wins
    over a step that requires the value).
    """
    found: dict[str, inspect.Parameter] = {}
    for step in STEPS:
        for name, p in parameters(step).items():
            if name in WIRED:
                continue
            if name not in found:
                found[name] = p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD)
            elif p.annotation != found[name].annotation or p.default not in (inspect.Parameter.empty, found[name].default):
                raise TypeError(f"steps disagree on parameter {name}: {found[name]} and {p} ({step.__name__})")
    return found


def parameter_descriptions() -> dict[str, str]:
    """Each pipeline parameter's text, from the docstring of the step that declares it first."""
    texts: dict[str, str] = {}
    for step in STEPS:
        for name, text in descriptions(step).items():
            texts.setdefault(name, text)
    return {name: texts.get(name, "") for name in pipeline_parameters()}


def _store_keys(task, options: ClusterOptions) -> None:
    """On Kubeflow, every step may read or write the artifact store itself (sources, checkpoints, the champion)."""
    if options.target == "kfp":
        use_artifact_store_credentials(task)


def use_artifact_store_credentials(task) -> None:
    """Give ``task`` the artifact store's keys as the standard AWS variables (kfp-kubernetes ``use_secret_as_env``).

    The launcher reads them from the ``mlpipeline-minio-artifact`` secret (``backend/src/v2/config/env.go``),
    the step's own code does not get them: the train step writes its checkpoints (and a TrainJob's pods their
    artifacts) into the store itself. Optional, so a pod starts where the secret is absent (Cloud Storage, or S3
    with the pod's own identity); the backend honours ``optional`` from 2.15 (``driver/k8s.go``), an older one
    needs the secret in the run's namespace (a standard install has it there).
    """
    from kfp import kubernetes

    from platforms.kubeflow.trainer import ARTIFACT_STORE_SECRET, SECRET_KEYS

    kubernetes.use_secret_as_env(task, ARTIFACT_STORE_SECRET, {key: env for env, key in SECRET_KEYS.items()},
                                 optional=True)


def _tune(args, given, image, options, ingest_task, validate_task):
    """With trials > 0: plan -> one tune task per population (ParallelFor) -> choose; else untuned. Returns the
    chosen hyperparameters' JSON ("{}" untuned) as one value for train (a dsl.OneOf of the two branches)."""
    plan_component, tune_component, choose_component, untuned_component = tune.components(image)
    with dsl.If(args["trials"] > 0, name="tune"):
        plan_task = plan_component(**given(tune.tune_plan))
        plan_task.after(validate_task)  # only data that passed validation is tuned on
        apply_options(plan_task, tune.LIGHT, options)
        # One population (batch and hidden sizes) per iteration, each on a device of its own on a cluster.
        with dsl.ParallelFor(plan_task.output, parallelism=tune.PARALLELISM, name="populations") as population:
            tune_task = tune_component(dataset=ingest_task.outputs["dataset"], population=population,
                                       **given(tune.tune))
            apply_options(tune_task, tune.CLUSTER, options)
        choose_task = choose_component(populations=dsl.Collected(tune_task.outputs["trials_out"]),
                                       **given(tune.tune_choose))
        apply_options(choose_task, tune.LIGHT, options)
    with dsl.Else(name="no-tuning"):
        untuned_task = untuned_component()
        apply_options(untuned_task, tune.LIGHT, options)
    return dsl.OneOf(choose_task.outputs["Output"], untuned_task.output)


def _train_and_publish(args, given, image, options, ingest_task, validate_task, train_component, evaluate_component,
                       publish_component) -> None:
    """[tune] -> train -> evaluate -> publish (a location given, the model blessed) -> track: the DAG after validate."""
    best_hyperparameters = _tune(args, given, image, options, ingest_task, validate_task)
    train_task = train_component(
        dataset=ingest_task.outputs["dataset"],
        **given(train.train),
        best_hyperparameters=best_hyperparameters,
        # A whole value: the Kubeflow backend substitutes a placeholder only then (driver/resolve.go).
        run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        require_gpu=bool(options.accelerator),
        **({"trainer_job": trainer_job(image, options, train.CLUSTER)} if options.trainer_nodes else {}),
    )
    train_task.after(validate_task)  # only data that passed validation is trained on
    apply_options(train_task, train.CLUSTER, options)

    _store_keys(train_task, options)
    evaluate_task = evaluate_component(
        model=train_task.outputs["model"], dataset=ingest_task.outputs["dataset"], **given(evaluate.evaluate))
    apply_options(evaluate_task, evaluate.CLUSTER, options)

    _store_keys(evaluate_task, options)
    with dsl.If(args["publish_uri"] != "", name="publish-uri-given"):
        with dsl.If(evaluate_task.outputs["blessed"] == True, name="blessed"):  # noqa: E712 - a kfp condition
            publish_task = publish_component(
                model=train_task.outputs["model"],
                # the numbers evaluate blessed the model with (its Metrics artifact), not typed again
                test_metrics=evaluate_task.outputs["metrics"],
                # kept with the version: the next runs' validation measures drift against them
                statistics=validate_task.outputs["statistics"],
                data_schema=validate_task.outputs["output_schema"],
                # LATEST moves only while it names the champion evaluate scored on this run's test split
                champion_version=evaluate_task.outputs["champion_version"],
                **given(publish.publish),
                image=image,
                run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            )
            apply_options(publish_task, publish.CLUSTER, options)

            _store_keys(publish_task, options)
    if options.tracked_experiment:  # Vertex AI Experiments and TensorBoard (compile --target vertex --experiment)
        track_task = track.component(image)(
            train_metrics=train_task.outputs["metrics"], test_metrics=evaluate_task.outputs["metrics"],
            tensorboard=train_task.outputs["tensorboard"], experiment=options.tracked_experiment,
            tensorboard_instance=options.tensorboard, job=dsl.PIPELINE_JOB_RESOURCE_NAME_PLACEHOLDER)
        apply_options(track_task, track.CLUSTER, options)


def build_pipeline(image: str = DEFAULT_IMAGE, options: "ClusterOptions | None" = None):
    """The pipeline function with every step running on ``image``.

    ``options`` say how it runs on its backend (resources, GPU, retries, caching);
    the default is for kfp.local: no resources and no retries, caching as on a cluster.
    """
    options = options or ClusterOptions()
    ingest_component = ingest.component(image)
    train_component = train.component(image)
    if options.multihost:
        train_component = vertex_custom_job(train_component, options)
    evaluate_component = evaluate.component(image)
    publish_component = publish.component(image)
    names = list(pipeline_parameters())

    # Only what every run makes: kfp allows pipeline outputs from the top level alone, and everything after
    # new_data runs under its condition (compiler_utils: "Pipeline outputs may only be returned from the top
    # level"); dsl.OneOf with a dsl.Else would do, but kfp.local cannot return it (orchestrator_utils.py,
    # "Expected 1 artifact in ArtifactSelectorSpec"). Each task's artifacts are in the run's UI and folder.
    class Outputs(NamedTuple):
        dataset: Dataset

    def mlp_pipeline(*values) -> Outputs:
        # kfp calls a pipeline function with one channel per parameter, in signature order (graph_component.py).
        args = dict(zip(names, values))

        def given(step) -> dict:
            return {name: args[name] for name in parameters(step) if name in args}

        ingest_task = ingest_component(**given(ingest.ingest))
        apply_options(ingest_task, ingest.CLUSTER, options)

        _store_keys(ingest_task, options)
        new_data_task = new_data.component(image)(dataset=ingest_task.outputs["dataset"], **given(new_data.new_data))
        apply_options(new_data_task, new_data.CLUSTER, options)

        _store_keys(new_data_task, options)
        # Nothing new (the champion's data and settings): nothing below runs. CEL on the backends
        # ("... == true"), tests/test_pipeline.py evaluates the compiled condition as they do.
        with dsl.If(new_data_task.output == True, name="new-data"):  # noqa: E712 - a kfp condition
            validate_task = validate.component(image)(dataset=ingest_task.outputs["dataset"],
                                                      **given(validate.validate))
            apply_options(validate_task, validate.CLUSTER, options)

            _store_keys(validate_task, options)
            _train_and_publish(args, given, image, options, ingest_task, validate_task, train_component,
                               evaluate_component, publish_component)
        return Outputs(dataset=ingest_task.outputs["dataset"])

    mlp_pipeline.__signature__ = inspect.Signature(list(pipeline_parameters().values()), return_annotation=Outputs)
    # kfp reads the parameters' descriptions (shown in the KFP and Vertex UIs) from the docstring's Args.
    mlp_pipeline.__doc__ = "The JAX docs' MLP on MNIST.\n\nArgs:\n" + "".join(
        f"    {name}: {text}\n" for name, text in parameter_descriptions().items())
    return dsl.pipeline(
        name=PIPELINE_NAME,
        description="The JAX docs' MLP on MNIST: tfds -> TFRecords, JAX training, evaluation.",
    )(mlp_pipeline)


if __name__ == "__main__":
    from commands.cli import cli

    cli()
