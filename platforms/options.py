"""Compile options per backend: accelerators, resources, retries, caching, the image tag."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from platforms.checks import DNS_1035_LABEL, _shown, check_dns1123_subdomain
from mlp_core.errors import UserError


# Compute Engine resource names, machine types included (https://cloud.google.com/compute/docs/naming-resources):
# 1-63 characters matching [a-z]([-a-z0-9]*[a-z0-9])?. Which machine types Vertex AI offers is Vertex AI's to say.
MACHINE_TYPE = DNS_1035_LABEL

# Image references: the grammar of distribution/reference (reference.go, regexp.go; the OCI distribution spec's
# names, tags and digests): [domain[:port]/]path-component(/path-component)*[:tag][@digest]; a path component is
# [a-z0-9]+ joined by '.', '_', '__' or '-'+; a tag [\w][\w.-]{0,127}; a digest algorithm:hex (32+ hex digits);
# the name (domain and path) at most 255 characters (NameTotalLengthMax).
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REFERENCE = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?")


def check_image_reference(image: str, flag: str = "--image") -> str:
    """An image reference by distribution/reference's grammar, or one line saying what it must look like."""
    match = IMAGE_REFERENCE.fullmatch(image) if isinstance(image, str) else None
    if not match or len(match.group("name")) > 255:
        raise UserError(f"{flag} {_shown(image)} is not an image reference ([REGISTRY[:PORT]/]PATH[:TAG][@DIGEST]: "
                           "path parts of lowercase letters and digits joined by '.', '_' or '-', a tag of at most 128 "
                           "of letters, digits, '_', '.', '-' not starting with '.' or '-', a digest such as "
                           "sha256:<64 hex digits>)")
    return image


# Vertex AI's accelerator enum (google.cloud.aiplatform_v1.types.AcceleratorType) for custom jobs.
VERTEX_ACCELERATORS = (
    "NVIDIA_TESLA_T4",
    "NVIDIA_TESLA_V100",
    "NVIDIA_TESLA_P4",
    "NVIDIA_TESLA_P100",
    "NVIDIA_TESLA_A100",
    "NVIDIA_A100_80GB",
    "NVIDIA_L4",
    "NVIDIA_H100_80GB",
    "NVIDIA_H100_MEGA_80GB",
    "NVIDIA_H200_141GB",
    "NVIDIA_B200",
    "TPU_V5_LITEPOD",
)
# Kubernetes extended resource names of GPU device plugins.
KFP_ACCELERATORS = ("nvidia.com/gpu", "amd.com/gpu", "gpu.intel.com/i915")
DEFAULT_ACCELERATOR = {"kfp": "nvidia.com/gpu", "vertex": "NVIDIA_L4"}

@dataclass(frozen=True)
class StepPolicy:
    """How one step runs on a cluster; each step module declares its own (``components/<step>.py: CLUSTER``).

    Requests and limits are sized from the step's measured peak RSS on full MNIST
    (``/usr/bin/time -v``), with headroom. ``retry``: kfp's ``set_retry`` arguments,
    for steps a preemption or a transient error can fail. ``cacheable``: False for a
    step whose result depends on state that is not one of its inputs (kfp's cache
    key is the component spec plus the inputs: backend/src/v2/cacheutils/cache.go).
    ``accelerated``: the step the GPU request goes to.
    """

    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str
    retry: dict | None = None
    cacheable: bool = True
    accelerated: bool = False


@dataclass(frozen=True)
class Toleration:
    key: str
    operator: str = "Exists"
    value: str | None = None
    effect: str | None = "NoSchedule"


DEFAULT_EXPERIMENT = "jax-mlp-pipeline"


@dataclass(frozen=True)
class ClusterOptions:
    """How the compiled pipeline runs on its backend. ``target=None`` is kfp.local (no resources)."""

    target: str | None = None
    accelerator: str | None = None  # None: no GPU
    accelerator_count: int = 1
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    enable_caching: bool = True
    # The train step as this many replicas (hosts), each a process of one training (mlp_core.multiprocess):
    # on Vertex AI a custom job on this machine type; on Kubeflow a Kubeflow Trainer TrainJob of this runtime.
    replicas: int = 1
    machine_type: str = ""
    trainer_runtime: str = ""
    # Vertex AI: a step after evaluate logs each run to this Vertex AI experiment, and the train step's event files
    # to this Vertex AI TensorBoard instance (components/track.py); a TensorBoard alone uses the experiment
    # jax-mlp-pipeline.
    experiment: str = ""
    tensorboard: str = ""
    # kfp.local only (pipeline.py run): every step cached, whatever its policy. That run's cache is its own (in its
    # run folder, commands/local.py), so a hit is always a resumed run reusing one of its own completed steps.
    cache_every_step: bool = False

    def __post_init__(self) -> None:
        if self.target not in (None, "kfp", "vertex"):
            raise UserError(f"target must be kfp or vertex, got {self.target!r}")
        if self.cache_every_step and self.target is not None:
            raise UserError("cache_every_step is for kfp.local, whose cache is the run's own; a cluster's cache is "
                               "shared by every run")
        if self.accelerator is not None:
            known = VERTEX_ACCELERATORS if self.target == "vertex" else KFP_ACCELERATORS
            if self.accelerator not in known:
                raise UserError(
                    f"unknown accelerator {self.accelerator!r} for {self.target}; known: {', '.join(known)}"
                )
        if self.accelerator_count < 1:
            raise UserError(f"accelerator count must be >= 1, got {self.accelerator_count}")
        if (self.node_selector or self.tolerations) and self.target != "kfp":
            raise UserError("node selectors and tolerations are Kubeflow (kfp-kubernetes) options; use --target kfp")
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int) or self.replicas < 1:
            raise UserError(f"--replicas must be a positive integer, got {self.replicas!r}")
        if self.replicas > 1 and self.target not in ("vertex", "kfp"):
            raise UserError("--replicas runs the train step on several machines of a cluster: use --target kfp "
                               "(Kubeflow Trainer) or --target vertex (a custom job)")
        if self.machine_type and (self.replicas == 1 or self.target != "vertex"):
            raise UserError("--machine-type is the machine of each replica of a multi-host train step on Vertex AI: "
                               "give --target vertex and --replicas too")
        if self.machine_type and not (MACHINE_TYPE.fullmatch(self.machine_type) and len(self.machine_type) <= 63):
            raise UserError(f"--machine-type {_shown(self.machine_type)} is not a Compute Engine machine type name "
                               "(1-63 lowercase letters, digits and '-', a letter first, e.g. g2-standard-8)")
        if self.trainer_runtime:
            # A ClusterTrainingRuntime is a Kubernetes object (DNS-1123 subdomain); Trainer's TrainJob CRD bounds
            # spec.runtimeRef.name to 1-253 characters (trainer.kubeflow.org_trainjobs.yaml, v2.2.0 and v2.3.0).
            check_dns1123_subdomain(self.trainer_runtime, "--trainer-runtime")
        if self.trainer_runtime and (self.replicas == 1 or self.target != "kfp"):
            raise UserError("--trainer-runtime is the Kubeflow Trainer runtime of a multi-host train step: "
                               "give --target kfp and --replicas too")
        if self.replicas > 1 and self.target == "kfp" and (self.node_selector or self.tolerations):
            raise UserError("a Kubeflow Trainer job's pods are placed by its runtime (ClusterTrainingRuntime): set "
                               "node selectors and tolerations there, not with --replicas")

        if (self.experiment or self.tensorboard) and self.target != "vertex":
            flag = "--experiment" if self.experiment else "--tensorboard"
            raise UserError(f"{flag} in the compiled pipeline is a Vertex AI option (Vertex AI Experiments and "
                               "TensorBoard): compile with --target vertex, submit or schedule with --vertex")
        from platforms.vertex.experiments import check_experiment, check_tensorboard

        if self.experiment:
            check_experiment(self.experiment)
        if self.tensorboard:
            check_tensorboard(self.tensorboard)

    @property
    def tracked_experiment(self) -> str:
        """The Vertex AI experiment each run is logged to, or "" (no tracking step)."""
        return self.experiment or (DEFAULT_EXPERIMENT if self.tensorboard else "")

    @property
    def multihost(self) -> bool:
        """The train step runs as a Vertex AI custom job of several replicas."""
        return self.replicas > 1 and self.target == "vertex"

    @property
    def trainer_nodes(self) -> int:
        """How many pods the train step's Kubeflow Trainer TrainJob has (0: none, the step trains itself)."""
        return self.replicas if self.replicas > 1 and self.target == "kfp" else 0


# The project's image: `jax-mlp-pipeline:<version>` is the CPU variant, `<version>-cuda` the CUDA one (Dockerfile).
PROJECT_IMAGE = "jax-mlp-pipeline"
CUDA_SUFFIX = "-cuda"


def _tag(image: str) -> str | None:
    name = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return name.split(":", 1)[1] if ":" in name else None


def check_image_accelerator(image: str, accelerator: str | None, warn=print) -> None:
    """Refuse a GPU request with the project's CPU image; warn when the tag cannot tell.

    A CPU image on a GPU node trains on the CPU (JAX falls back silently) while the
    GPU is paid for; the train step also refuses to start then (``require_gpu``),
    but refusing at compile time saves a scheduled run that was bound to fail.
    """
    if not accelerator:
        return
    repository = image.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
    tag = _tag(image)
    if repository == PROJECT_IMAGE and tag is not None and not tag.endswith(CUDA_SUFFIX):
        raise UserError(
            f"the train step requests a GPU ({accelerator}) but {image} is the project's CPU image: use "
            f"{image}{CUDA_SUFFIX} (docker build --build-arg ACCELERATOR=cuda), or --accelerator none to train on CPUs"
        )
    if repository != PROJECT_IMAGE or tag is None:
        warn(f"warning: cannot tell from {image!r} whether it has JAX with CUDA; the train step requests a GPU "
             f"({accelerator}) and fails at start if JAX sees none")


def check_image(image: str, allow_mutable: bool = False) -> None:
    """Refuse a malformed reference, and an image kfp's cache cannot tell apart from its rebuilds (``:latest``, no tag)."""
    check_image_reference(image)
    if allow_mutable or "@sha256:" in image:
        return
    tag = _tag(image)
    if tag is None or tag == "latest":
        raise UserError(
            f"image {image!r} has {'no tag' if tag is None else 'the tag :latest'}: kfp's cache keys on the tag, so a "
            "rebuilt image would reuse stale results; give a version tag or a digest, or pass --allow-mutable-image"
        )


def parse_node_selector(items: list[str]) -> dict[str, str]:
    selector = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"node selector must be key=value, got {item!r}")
        selector[key] = value
    return selector


def parse_toleration(text: str) -> Toleration:
    """``key[=value][:Effect]``, e.g. ``nvidia.com/gpu:NoSchedule`` or ``pool=gpu:NoExecute``."""
    m = re.fullmatch(r"([^=:]+)(?:=([^:]*))?(?::(NoSchedule|PreferNoSchedule|NoExecute))?", text)
    if not m:
        raise UserError(f"toleration must be key[=value][:NoSchedule|PreferNoSchedule|NoExecute], got {text!r}")
    key, value, effect = m.groups()
    return Toleration(key=key, operator="Equal" if value is not None else "Exists", value=value, effect=effect)


def apply(task, policy: StepPolicy, options: ClusterOptions):
    """Set a step's resources, accelerator, retries and caching (its ``policy``) on its kfp ``task``."""
    task.set_caching_options(options.enable_caching and (policy.cacheable or options.cache_every_step))
    if options.target is None:
        # kfp.local honours retry policies too, but a step that fails on this machine
        # fails on bad input, the same way every time: retrying it only delays the error.
        return task
    if policy.retry:
        task.set_retry(**policy.retry)
    if policy.accelerated and (options.multihost or options.trainer_nodes):
        return task  # the custom job's machine spec, or the TrainJob's resourcesPerNode, holds the machines and GPUs
    task.set_cpu_request(policy.cpu_request).set_cpu_limit(policy.cpu_limit)
    task.set_memory_request(policy.memory_request).set_memory_limit(policy.memory_limit)
    if policy.accelerated and options.accelerator:
        task.set_accelerator_type(options.accelerator).set_accelerator_limit(options.accelerator_count)
        if options.target == "kfp":
            from kfp import kubernetes

            for key, value in options.node_selector.items():
                kubernetes.add_node_selector(task, label_key=key, label_value=value)
            for t in options.tolerations:
                kubernetes.add_toleration(task, key=t.key, operator=t.operator, value=t.value, effect=t.effect)
    return task


# Each replica's machine when none is given: Vertex AI's accelerator types need their own machine families.
DEFAULT_MACHINE = {None: "n1-standard-8", "NVIDIA_L4": "g2-standard-8", "NVIDIA_H100_80GB": "a3-highgpu-1g",
                   "NVIDIA_A100_80GB": "a2-ultragpu-1g", "NVIDIA_TESLA_A100": "a2-highgpu-1g"}


def vertex_custom_job(train_component, options: ClusterOptions):
    """The train step as a Vertex AI custom job of ``options.replicas`` replicas (google-cloud-pipeline-components).

    ``create_custom_training_job_from_component`` (``v1/custom_job/utils.py``) puts one
    replica in worker pool 0 and the others in pool 1, all running the same container
    with the same executor input; Vertex AI tells each its place in ``CLUSTER_SPEC``,
    which the train step reads (``mlp_core.distributed``), and only process 0 writes.
    """
    try:
        from google_cloud_pipeline_components.v1.custom_job import create_custom_training_job_from_component
    except ImportError:
        raise UserError("--replicas needs google-cloud-pipeline-components: pip install -e '.[vertex]'") from None
    machine = options.machine_type or DEFAULT_MACHINE.get(options.accelerator)
    if machine is None:
        raise UserError(f"give --machine-type for {options.accelerator} replicas (no default machine is known for it)")
    return create_custom_training_job_from_component(
        train_component, display_name="train", replica_count=options.replicas, machine_type=machine,
        accelerator_type=options.accelerator or "", accelerator_count=options.accelerator_count if options.accelerator else 0,
        restart_job_on_worker_restart=True)
