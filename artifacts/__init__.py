"""Artifact and storage I/O: where things are and how they are written so that readers never see half of them.

``locations`` (the one door for every location a user names: folders, gs://, s3://, minio://, Model Registry
names), ``storage`` (the object stores: Cloud Storage, S3 and Kubeflow's bundled store, through their own clients),
``outputs`` (commit markers with sizes and sha256s, one writer per output), ``schemas`` (every JSON file a step
reads), ``remote`` (artifacts copied to and from a store), ``redaction`` (no secret in any printed line).

Imports: nothing of this project's other packages; the storage clients (google-cloud-storage, boto3) only here.
"""
