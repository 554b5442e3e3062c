"""The kfp v2 pipeline: ingest -> new data? -> validate -> [tune] -> train -> evaluate -> publish (when blessed).

A run whose data and training settings are the champion's stops after ``new_data``; a Dataset with anomalies
stops at ``validate``. The parameters are declared here, as each step declares its own (tests/test_parameters.py
checks they agree); the image and the backend options are compile options, never read from the environment.

    python pipeline.py compile --output pipeline.yaml      # the command lines: commands/cli.py
    python pipeline.py run [--epochs N ...]                 # the whole DAG on this machine (kfp.local)
"""

import functools
import inspect
from typing import NamedTuple

import docstring_parser
from kfp import dsl, kubernetes
from kfp.dsl import Dataset

from components import evaluate, ingest, new_data, publish, track, train, tune, validate
from platforms.kubeflow.trainer import ARTIFACT_STORE_SECRET, SECRET_KEYS, trainer_job
from platforms.options import ClusterOptions, vertex_custom_job
from platforms.options import apply as apply_options

PIPELINE_NAME = "jax-mlp-pipeline"
# The project image; `make image` builds it under this tag.
DEFAULT_IMAGE = "jax-mlp-pipeline:0.1.0"


class Outputs(NamedTuple):
    """What every run makes (kfp returns pipeline outputs from the top level only; the rest is in each task)."""

    dataset: Dataset


def build_pipeline(image: str = DEFAULT_IMAGE, options: "ClusterOptions | None" = None):
    """The pipeline with every step running on ``image``; ``options`` say how it runs on its backend."""
    options = options or ClusterOptions()
    train_op = train.component(image)
    if options.multihost:
        train_op = vertex_custom_job(train_op, options)
    plan_op, tune_op, choose_op, untuned_op = tune.components(image)

    def step(task, policy, store: bool = True):
        """``task`` with its resources and retries; on Kubeflow, the artifact store's keys (a step reads it)."""
        apply_options(task, policy, options)
        if store and options.target == "kfp":
            use_artifact_store_credentials(task)
        return task

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="The JAX docs' MLP on MNIST: tfds -> TFRecords, JAX training, evaluation.")
    def mlp_pipeline(
        dataset_name: str = "mnist",
        tfds_data_dir: str = "",
        train_split: str = "train",
        test_split: str = "test",
        records_per_shard: int = 10000,
        source: str = "",
        span_window: int = 1,
        image_shape: str = "",
        resize: bool = False,
        publish_uri: str = "",
        hidden_sizes: str = "512,512",
        step_size: float = 0.01,
        batch_size: int = 128,
        epochs: int = 10,
        seed: int = 0,
        shuffle: bool = True,
        force: bool = False,
        trials: int = 0,
        schema: str = "",
        baseline_statistics: str = "",
        max_label_linf: float = 0.05,
        max_pixel_js: float = 0.01,
        max_leaked_images: int = 0,
        tune_step_size_range: str = "0.001,0.1",
        tune_batch_sizes: str = "128",
        tune_hidden_sizes: str = "512,512",
        validation_fraction: float = 0.1,
        tune_eta: int = 3,
        search_seed: int = 0,
        placement: str = "auto",
        checkpoint_root: str = "",
        blessing_threshold: float = 0.95,
        blessing_tolerance: float = 0.002,
    ) -> Outputs:
        """The JAX docs' MLP on MNIST.

        Args:
            dataset_name: tfds dataset name (an image classification dataset); read when source is empty
            tfds_data_dir: TFDS data dir, local or gs:// (default: tfds's own, $TFDS_DATA_DIR or
                ~/tensorflow_datasets)
            train_split: tfds split to train on, slicing allowed, e.g. train[:512]; for an image folder source,
                the split folder's name
            test_split: tfds split to test on; for an image folder source, the split folder's name
            records_per_shard: examples per TFRecord shard
            source: a folder of your own images instead of the tfds dataset, local, gs:// or s3://, laid out
                <split>/<class name>/<image>.png|.jpg; may hold {SPAN} or {YYYY}, {MM} and {DD} (e.g.
                gs://bucket/images/span-{SPAN}): the newest span is read (default: "", the tfds dataset)
            span_window: with a span or date source, how many of the newest spans to read together (1: the
                newest only)
            image_shape: HEIGHTxWIDTHxCHANNELS of an image folder's images, e.g. 28x28x1 (default: the first
                train image's)
            resize: convert an image folder's images of another shape (resize, antialiased; channels converted)
                instead of refusing them
            publish_uri: where blessed models are published and the champion is read (folder, gs://, s3://, or a
                Vertex AI Model Registry model); empty, no champion
            hidden_sizes: hidden layer widths, comma-separated
            step_size: SGD step size
            batch_size: examples per SGD step
            epochs: passes over the train split
            seed: PRNG seed for init and shuffling
            shuffle: shuffle each epoch on the device; false keeps the seed's order
            force: train (and replace an incomparable champion) even when nothing is new
            trials: configurations the tune step tries (0: no tuning); a tuned run's data alone decides, with
                the settings tuning does not choose (epochs, shuffle)
            schema: a data schema file (text-format tensorflow_metadata Schema; path, gs:// or s3://); empty,
                the champion's schema at publish_uri, else one inferred from this data
            baseline_statistics: statistics to measure drift against (binary DatasetFeatureStatisticsList; path,
                gs:// or s3://); empty, the champion's at publish_uri, else no drift check
            max_label_linf: largest L-infinity distance allowed between the train split's label distribution and
                the baseline's (TFDV's categorical drift measure)
            max_pixel_js: largest Jensen-Shannon divergence (bits) allowed between the train split's pixel-
                intensity histogram and the baseline's (TFDV's numeric drift measure)
            max_leaked_images: how many images of one split may also be in another (train/test leakage)
            tune_step_size_range: LOW,HIGH of the step sizes tried (drawn log-uniformly)
            tune_batch_sizes: batch sizes tried, comma-separated
            tune_hidden_sizes: hidden sizes tried, ';' between choices, e.g. 512,512;1024
            validation_fraction: share of each class of the train split held out to compare the trials
            tune_eta: successive halving keeps the best 1/tune_eta of the trials after epochs 1, eta, eta**2,
                ...
            search_seed: seed of the draws
            placement: auto, device (whole split on the device) or stream (tf.data batches); auto picks by size
            checkpoint_root: durable per-epoch checkpoints, gs://, s3:// or a folder, under
                checkpoints/<run_id>/train (default: beside the Model artifact in the object store, in a
                pipeline)
            blessing_threshold: minimum test accuracy to bless (and publish) the model
            blessing_tolerance: how far below the champion's test accuracy is still blessed
        """
        ingest_task = step(ingest.component(image)(
            dataset_name=dataset_name, tfds_data_dir=tfds_data_dir, train_split=train_split, test_split=test_split,
            records_per_shard=records_per_shard, source=source, span_window=span_window, image_shape=image_shape,
            resize=resize), ingest.CLUSTER)
        dataset = ingest_task.outputs["dataset"]
        new_data_task = step(new_data.component(image)(
            dataset=dataset, publish_uri=publish_uri, hidden_sizes=hidden_sizes, step_size=step_size, batch_size=batch_size, epochs=epochs,
            seed=seed, shuffle=shuffle, force=force, trials=trials), new_data.CLUSTER)
        # Nothing new (the champion's data and settings): nothing below runs.
        with dsl.If(new_data_task.output == True, name="new-data"):  # noqa: E712 - a kfp condition
            validate_task = step(validate.component(image)(
                dataset=dataset, schema=schema, baseline_statistics=baseline_statistics, publish_uri=publish_uri, max_label_linf=max_label_linf,
                max_pixel_js=max_pixel_js, max_leaked_images=max_leaked_images), validate.CLUSTER)

            with dsl.If(trials > 0, name="tune"):
                search = dict(trials=trials, tune_step_size_range=tune_step_size_range, tune_batch_sizes=tune_batch_sizes,
                              tune_hidden_sizes=tune_hidden_sizes, validation_fraction=validation_fraction,
                              tune_eta=tune_eta)
                plan_task = step(plan_op(**search, search_seed=search_seed), tune.LIGHT, store=False)
                plan_task.after(validate_task)  # only data that passed validation is tuned on
                # One population (batch and hidden sizes) per iteration, each on a device of its own on a cluster.
                with dsl.ParallelFor(plan_task.output, parallelism=tune.PARALLELISM, name="populations") as population:
                    tune_task = step(tune_op(
                        dataset=dataset, population=population, epochs=epochs,
                        validation_fraction=validation_fraction, tune_eta=tune_eta), tune.CLUSTER, store=False)
                choose_task = step(choose_op(populations=dsl.Collected(tune_task.outputs["trials_out"]), **search,
                                             epochs=epochs), tune.LIGHT, store=False)
            with dsl.Else(name="no-tuning"):
                untuned_task = step(untuned_op(), tune.LIGHT, store=False)

            train_task = step(train_op(
                dataset=dataset, hidden_sizes=hidden_sizes, step_size=step_size, batch_size=batch_size, epochs=epochs, seed=seed, shuffle=shuffle,
                placement=placement, checkpoint_root=checkpoint_root,
                best_hyperparameters=dsl.OneOf(choose_task.outputs["Output"], untuned_task.output),
                # A whole value: the Kubeflow backend substitutes a placeholder only then (driver/resolve.go).
                run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, require_gpu=bool(options.accelerator),
                **({"trainer_job": trainer_job(image, options, train.CLUSTER)} if options.trainer_nodes else {})),
                train.CLUSTER)
            train_task.after(validate_task)  # only data that passed validation is trained on
            model = train_task.outputs["model"]
            evaluate_task = step(evaluate.component(image)(
                model=model, dataset=dataset, blessing_threshold=blessing_threshold,
                blessing_tolerance=blessing_tolerance, publish_uri=publish_uri, force=force), evaluate.CLUSTER)

            with dsl.If(publish_uri != "", name="publish-uri-given"):
                with dsl.If(evaluate_task.outputs["blessed"] == True, name="blessed"):  # noqa: E712
                    step(publish.component(image)(
                        model=model,
                        test_metrics=evaluate_task.outputs["metrics"],  # the numbers evaluate blessed it with
                        # kept with the version: the next runs' validation measures drift against them
                        statistics=validate_task.outputs["statistics"],
                        data_schema=validate_task.outputs["output_schema"],
                        # LATEST moves only while it names the champion evaluate scored on this run's test split
                        champion_version=evaluate_task.outputs["champion_version"],
                        publish_uri=publish_uri, blessing_tolerance=blessing_tolerance, image=image,
                        run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER), publish.CLUSTER)
            if options.tracked_experiment:  # Vertex AI Experiments and TensorBoard (compile --experiment)
                step(track.component(image)(
                    train_metrics=train_task.outputs["metrics"], test_metrics=evaluate_task.outputs["metrics"],
                    tensorboard=train_task.outputs["tensorboard"], experiment=options.tracked_experiment,
                    tensorboard_instance=options.tensorboard, job=dsl.PIPELINE_JOB_RESOURCE_NAME_PLACEHOLDER),
                     track.CLUSTER, store=False)
        return Outputs(dataset=dataset)

    return mlp_pipeline


def use_artifact_store_credentials(task) -> None:
    """The artifact store's keys as the standard AWS variables (the ``mlpipeline-minio-artifact`` secret), optional
    so that a pod starts where the secret is absent (docs/design.md, "Credentials")."""
    kubernetes.use_secret_as_env(task, ARTIFACT_STORE_SECRET, {key: env for env, key in SECRET_KEYS.items()},
                                 optional=True)


@functools.cache
def pipeline_parameters() -> "dict[str, inspect.Parameter]":
    """The pipeline's parameters, as declared above."""
    return dict(inspect.signature(build_pipeline().pipeline_func).parameters)


@functools.cache
def parameter_descriptions() -> dict[str, str]:
    """Each pipeline parameter's text, from the pipeline's docstring (kfp shows them in the KFP and Vertex UIs)."""
    doc = docstring_parser.parse(build_pipeline().pipeline_func.__doc__)
    return {p.arg_name: " ".join(p.description.split()) for p in doc.params}


if __name__ == "__main__":
    from commands.cli import cli

    cli()
