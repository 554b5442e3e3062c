"""Kubeflow as teams run it: identity, profile namespaces, TLS, proxies, backend versions.

Every test drives ``python pipeline.py submit/schedule`` (the real ``kfp.Client``
underneath) against RecordingKfpApi configured as that deployment would be:
an auth proxy that wants a bearer token or a session cookie, multi-user
namespaces, HTTPS with a self-signed CA (made here with ``cryptography``), a
backend version. Requests are checked one by one; no secret may appear in what
the command prints.
"""

import datetime
import ipaddress

import pytest

from conftest import run_cli
from kfp_api_stand_in import RecordingKfpApi

IMAGE = "registry.example.com/ml/jax-mlp-pipeline:0.1.0-cuda"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.stand-in-token.c2lnbmF0dXJl"
COOKIE = "oauth2_proxy_kubeflow=c2Vzc2lvbi1jb29raWU"


def _submit(api_url: str, *flags: str, check: bool = True):
    return run_cli("pipeline.py", "submit", "--host", api_url, "--image", IMAGE, "--param", "epochs=3", *flags,
                   check=check)


def _secret_file(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text + "\n")
    path.chmod(0o600)
    return str(path)


def _no_secret_in(result):
    assert TOKEN not in result.stdout + result.stderr and COOKIE.split("=")[1] not in result.stdout + result.stderr


def _refused(result, message: str):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    _no_secret_in(result)


def test_a_bearer_token_from_a_file_goes_with_every_request_and_is_never_printed(tmp_path):
    with RecordingKfpApi(token=TOKEN) as api:
        result = _submit(api.url, "--token-file", _secret_file(tmp_path, "token", TOKEN))
    assert [r["path"] for r in api.requests] == ["/apis/v2beta1/healthz", "/apis/v2beta1/experiments",
                                                 "/apis/v2beta1/experiments", "/apis/v2beta1/runs"]
    assert {r["authorization"] for r in api.requests} == {f"Bearer {TOKEN}"}
    assert result.stdout.strip().splitlines()[-1].startswith("run run-")
    _no_secret_in(result)


def test_without_an_identity_the_proxys_401_says_what_to_supply(tmp_path):
    with RecordingKfpApi(token=TOKEN) as api:
        result = _submit(api.url, check=False)
        wrong = _submit(api.url, "--token-file", _secret_file(tmp_path, "old", "expired"), check=False)
    _refused(result, "401 Unauthorized with no identity: supply an identity (--token-file with a bearer token, "
                     "--cookie-file with the auth proxy's session cookie")
    _refused(wrong, f"401 Unauthorized with the bearer token in {tmp_path / 'old'}")
    assert "expired" not in wrong.stderr
    assert [r["path"] for r in api.requests] == ["/apis/v2beta1/healthz"] * 2  # nothing created


def test_the_auth_proxys_session_cookie_from_a_file(tmp_path):
    with RecordingKfpApi(cookie=COOKIE, namespaces=("team-a",)) as api:
        result = _submit(api.url, "--cookie-file", _secret_file(tmp_path, "cookie", COOKIE), "--namespace", "team-a")
    assert {r["cookie"] for r in api.requests} == {COOKIE}
    [experiment] = api.decoded("POST", "/apis/v2beta1/experiments")
    assert experiment.namespace == "team-a"
    _no_secret_in(result)


def test_in_a_pod_the_projected_service_account_token_is_read_on_each_request(tmp_path):
    token = _secret_file(tmp_path, "token", TOKEN)
    with RecordingKfpApi(token=TOKEN, namespaces=("team-a",)) as api:
        result = run_cli("pipeline.py", "schedule", "--host", api.url, "--cron", "0 3 * * 1", "--image", IMAGE,
                         "--namespace", "team-a", env={"KF_PIPELINES_SA_TOKEN_PATH": token})
        listed = run_cli("pipeline.py", "schedule", "--host", api.url, "--list", "--namespace", "team-a",
                         env={"KF_PIPELINES_SA_TOKEN_PATH": token})
        [schedule_id] = api.recurring_runs
        for action in ("--pause", "--delete"):
            run_cli("pipeline.py", "schedule", "--host", api.url, action, schedule_id, "--namespace", "team-a",
                    env={"KF_PIPELINES_SA_TOKEN_PATH": token})
        left = dict(api.recurring_runs)
        denied = run_cli("pipeline.py", "schedule", "--host", api.url, "--list", "--namespace", "team-a", check=False)
    assert left == {} and [r["path"] for r in api.requests if r["method"] in ("POST", "DELETE")][-2:] == [
        f"/apis/v2beta1/recurringruns/{schedule_id}:disable", f"/apis/v2beta1/recurringruns/{schedule_id}"]
    _refused(denied, "401 Unauthorized with no identity")
    assert {r["authorization"] for r in api.requests[:-1]} == {f"Bearer {TOKEN}"}
    assert "jax-mlp-pipeline-retrain  ENABLED" in listed.stdout
    listing = next(r for r in api.requests if r["method"] == "GET" and r["path"] == "/apis/v2beta1/recurringruns")
    assert "namespace=team-a" in listing["query"]
    _no_secret_in(result)


def test_a_namespace_the_identity_cannot_use_or_none_in_multi_user_mode(tmp_path):
    token = _secret_file(tmp_path, "token", TOKEN)
    with RecordingKfpApi(token=TOKEN, namespaces=("team-a",)) as api:
        other = _submit(api.url, "--token-file", token, "--namespace", "team-b", check=False)
        missing = _submit(api.url, "--token-file", token, check=False)
    _refused(other, f"creating the run failed at {api.url}: 403 Forbidden: the bearer token in {token} may not use "
                    "namespace team-b: PermissionDenied")
    _refused(missing, "a namespace is required (give --namespace, your Kubeflow profile)")
    assert api.decoded("POST", "/apis/v2beta1/runs") == []


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A self-signed CA and a server certificate for 127.0.0.1 signed by it (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.timezone.utc)

    def certificate(subject, issuer, key, signer, extensions):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1)))
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(signer, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stand-in cluster CA")])
    ca = certificate(ca_name, ca_name, ca_key, ca_key, [(x509.BasicConstraints(ca=True, path_length=None), True)])
    server = certificate(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ml-pipeline")]), ca_name, server_key, ca_key,
                         [(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)])
    paths = {name: folder / f"{name}.pem" for name in ("ca", "server", "server-key")}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["server"].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths["server-key"].write_bytes(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption()))
    return {name: str(path) for name, path in paths.items()}


def test_tls_with_the_clusters_own_ca(tls_files):
    with RecordingKfpApi(tls=(tls_files["server"], tls_files["server-key"])) as api:
        unknown = _submit(api.url, check=False)
        trusted = _submit(api.url, "--ca-cert", tls_files["ca"])
        unverified = _submit(api.url, "--no-verify-tls")
    assert api.url.startswith("https://")
    _refused(unknown, "TLS certificate verify failed: give the cluster's CA with --ca-cert FILE")
    assert trusted.stdout.strip().splitlines()[-1].startswith("run run-")
    assert f"warning: not verifying the TLS certificate of {api.url}" in unverified.stderr
    assert len(api.decoded("POST", "/apis/v2beta1/runs")) == 2


def test_an_unreachable_host_and_a_proxy():
    with RecordingKfpApi() as proxy:
        via_proxy = _submit("http://ml-pipeline.kubeflow.example:8888", "--proxy", proxy.url)
    assert {r["via_proxy"] for r in proxy.requests} == {"ml-pipeline.kubeflow.example:8888"}
    assert via_proxy.stdout.strip().splitlines()[-1].startswith("run run-")
    gone = _submit(proxy.url, check=False)  # the server has stopped
    _refused(gone, f"cannot reach it (connection refused; is the port-forward or the proxy running?)")


@pytest.mark.parametrize(("version", "outcome"), [
    ("2.3.0", "runs Kubeflow Pipelines 2.3.0; this pipeline needs 2.5.0 or later (backends before 2.4.1 drop the "
              "train step's retry policy; before 2.4 they reject the resource requests kfp 2.17 writes as strings)"),
    ("2.4.0", "runs Kubeflow Pipelines 2.4.0; this pipeline needs 2.5.0 or later (backends before 2.4.1 drop the "
              "train step's retry policy"),  # backend/src/v2/compiler/argocompiler/container.go: no retryStrategy
    ("2.4.1", "warning: {url} runs Kubeflow Pipelines 2.4.1: before 2.5.0 the backend does not substitute the "
              "run id placeholder"),
    ("unknown", "warning: {url} does not say its Kubeflow Pipelines version (healthz tag_name 'unknown')"),
    ("2.17.0", None),
])
def test_the_backends_version_is_read_before_submitting(version, outcome):
    with RecordingKfpApi(version=version) as api:
        result = _submit(api.url, check=False)
        created = api.decoded("POST", "/apis/v2beta1/runs")
    if version in ("2.3.0", "2.4.0"):
        _refused(result, outcome)
        assert created == []
        return
    assert result.returncode == 0 and len(created) == 1
    if outcome:
        assert outcome.format(url=api.url) in result.stderr
    else:
        assert "warning" not in result.stderr


def test_kubeflow_options_are_refused_for_vertex(tmp_path):
    result = run_cli("pipeline.py", "submit", "--vertex", "--project", "p", "--region", "us-central1", "--namespace",
                     "team-a", "--pipeline-root", "gs://b/r", check=False)
    _refused(result, "--namespace is a Kubeflow option; Vertex AI uses your Google Cloud credentials")


def test_iap_without_google_credentials_says_how_to_get_them(tmp_path):
    """The IAP token exchange itself needs Google's token endpoint; here: the line a user without credentials sees."""
    env = {"GOOGLE_APPLICATION_CREDENTIALS": "", "HOME": str(tmp_path), "CLOUDSDK_CONFIG": str(tmp_path / "gcloud")}
    with RecordingKfpApi() as api:
        result = run_cli("pipeline.py", "submit", "--host", api.url, "--image", IMAGE,
                         "--client-id", "1234567890-abc.apps.googleusercontent.com", env=env, check=False)
    _refused(result, "--client-id needs Google credentials to get an IAP token: run `gcloud auth application-default "
                     "login` or set GOOGLE_APPLICATION_CREDENTIALS")
    assert api.requests == []  # nothing was sent without the token
