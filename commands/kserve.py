"""A KServe InferenceService for a published model version (TensorFlow runtime, TF Serving's REST and gRPC APIs).

    python -m commands.kserve --name mnist-mlp --publish-uri gs://my-bucket/models/mnist-mlp [--version V]
        [--namespace team-a] [--service-account kserve-gcs] > inference-service.yaml
    kubectl apply -f inference-service.yaml

The manifest is ``serving.kserve.io/v1beta1`` ``InferenceService`` with
``predictor.model.modelFormat.name: tensorflow`` and ``storageUri`` =
``<publish uri>/<version>/saved_model``: KServe downloads it to ``/mnt/models``
and runs TF Serving with that as its model base path, which must hold numbered
version folders (``saved_model/1/``, the layout every Model artifact has:
``mlp_core.export``). Without ``--version`` it is the champion (``LATEST``).
The version is checked first: published completely (its manifest) and in the
versioned layout. Requests then go to ``<isvc URL>/v1/models/<name>:predict``
(``python -m components.predict --server URL --model-name NAME``, which reads the image shape from
``/v1/models/<name>/metadata`` and prints the class names the served model answers).
"""

from __future__ import annotations

import argparse
import sys

from artifacts.locations import check_location, check_segment, join
from components._cli import exit_on_error
from mlp_core.errors import UserError
from platforms.kubeflow.kserve import KSERVE_STORAGE, NAME_LONGEST, inference_service
from platforms.checks import check_dns1035_label, check_dns1123_label, check_dns1123_subdomain


def storage_uri(publish_uri: str, version: "str | None" = None) -> "tuple[str, str]":
    """``(version, base path)`` of a published version in TF Serving's layout; refuses anything else."""
    from artifacts import storage
    from mlp_core.export import SAVED_MODEL_DIR, SERVING_VERSION
    from components.publish import MANIFEST, read_champion

    if version is None:
        champion = read_champion(publish_uri)
        if champion is None:
            raise UserError(f"no champion at {publish_uri} (nothing published, or LATEST missing): give --version")
        version = champion["version"]
    # A version is one name part inside the publish location (LATEST is input too): never ../x, never a path.
    check_segment(version, "--version", "published version")
    folder = join(publish_uri, version, flag="--version")
    names = storage.list_names(folder)
    if MANIFEST not in names:
        raise UserError(f"{folder} is not a published version (no {MANIFEST}: missing, or its publish never finished)")
    if f"{SAVED_MODEL_DIR}/{SERVING_VERSION}/saved_model.pb" not in names:
        raise UserError(f"{folder} holds its SavedModel outside TF Serving's layout ({SAVED_MODEL_DIR}/"
                         f"{SERVING_VERSION}/): it was published by an older version of this project; publish it again")
    return version, join(folder, SAVED_MODEL_DIR, flag="--version")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m commands.kserve", description=__doc__.split("\n\n")[0])
    p.add_argument("--name", required=True, help="the InferenceService's name (a DNS-1035 label), also the model's "
                   "name in request URLs")
    p.add_argument("--publish-uri", required=True, help="where the pipeline publishes (a folder or gs://)")
    p.add_argument("--version", help="a published version (default: the champion in LATEST)")
    p.add_argument("--namespace", help="the Kubernetes namespace (default: kubectl's)")
    p.add_argument("--service-account", help="the predictor's service account (one that can read the bucket)")
    return p


@exit_on_error
def main(argv: "list[str] | None" = None) -> int:
    import yaml

    args = _parser().parse_args(argv)
    # every name the API constrains, before the publish location is read
    check_dns1035_label(args.name, "--name", NAME_LONGEST, why="; KServe's InferenceService name, with room for "
                        "the Knative names derived from it")
    if args.namespace is not None:
        check_dns1123_label(args.namespace, "--namespace")  # a Namespace's name (Kubernetes "Object Names and IDs")
    if args.service_account is not None:
        check_dns1123_subdomain(args.service_account, "--service-account")  # a ServiceAccount's name
    check_location(args.publish_uri, "--publish-uri")
    version, uri = storage_uri(args.publish_uri, args.version)
    print(f"# version {version} of {args.publish_uri}", file=sys.stderr)
    if not KSERVE_STORAGE.match(uri):
        print(f"warning: storageUri {uri} is a folder on this machine, which KServe cannot read: publish to gs:// or "
              "s3:// (or copy the version to a PVC, pvc://NAME/PATH)", file=sys.stderr)
    sys.stdout.write(yaml.safe_dump(inference_service(args.name, uri, args.namespace, args.service_account),
                                    sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
