"""Trust boundaries of the cluster commands, with generated cases (Hypothesis).

Secrets: generated bearer tokens, session cookies and URL passwords are planted
where a careless deployment puts them (a proxy's error body that quotes the
credentials it refused, a cookie file in the wrong format or with CR/LF, a
``--host`` or ``--proxy`` URL with a password) and no generated secret may
appear in anything the command prints.

Values: generated namespaces, names, cron expressions, image references,
runtime and machine names, ``--param`` locations and flag combinations, with the
boundary values, are refused with exit 2 and exactly one ``error:`` line, and
no request reaches the stand-in API (``tests/kfp_api_stand_in.py``).

Most cases call the CLI's own ``main`` in this process (the same code as
``python pipeline.py``; a subprocess each would cost seconds); a few run the
real command line in a subprocess.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import string
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, Phase, assume, example, given, settings
from hypothesis import strategies as st

from conftest import run_cli
from kfp_api_stand_in import RecordingKfpApi

IMAGE = "registry.example.com/ml/jax-mlp-pipeline:0.1.0-cuda"
# Each case runs a command (a compile, a client): no shrinking, whose reruns would cost minutes; the failing case is
# reported as generated. derandomize: the same cases on every run (CI included).
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
                derandomize=True, phases=(Phase.explicit, Phase.reuse, Phase.generate))
DNS_1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def printed(self) -> str:
        return self.stdout + self.stderr


@contextlib.contextmanager
def _environment(env: "dict | None"):
    saved = {name: os.environ.get(name) for name in (env or {})}
    os.environ.update(env or {})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


_runs = 0  # CLI runs so far (the tally's case number)


def _main(capfd, module_main, argv: list[str], env: "dict | None" = None) -> Result:
    """Run a CLI's ``main(argv)`` here; what it printed (file descriptors included), its exit status."""
    global _runs
    _runs += 1
    capfd.readouterr()
    with _environment(env):
        try:
            code = module_main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except Exception:  # a traceback is a failure of the property, not of the test harness
            print(traceback.format_exc(), file=__import__("sys").stderr)
            code = 1
    out, err = capfd.readouterr()
    return Result(code, out, err)


def _pipeline(capfd, *argv: str, env: "dict | None" = None) -> Result:
    from commands.cli import main

    return _main(capfd, main, list(argv), env)


# TRUST_TALLY=FILE: each failed expectation is appended to FILE (test, message) instead of failing the test, so
# that every generated case runs: how the defects were counted on the code before the fixes.
TALLY = os.environ.get("TRUST_TALLY")


def _expect(condition: bool, message: str) -> None:
    if condition:
        return
    if not TALLY:
        raise AssertionError(message)
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
    with open(TALLY, "a") as tally:
        tally.write(f"{test}\t{_runs}\t{' '.join(message.split())[:300]}\n")


def _refused(result: Result, *secrets: str, naming: str = "") -> None:
    """Exit 2, exactly one line, an ``error:`` line (naming the rule), no secret."""
    lines = result.stderr.strip().splitlines()
    leaked = [s for s in secrets if s in result.printed]
    _expect(not leaked, f"secret printed: {result.printed[-1500:]}")
    if leaked:
        return
    _expect(result.returncode == 2, f"exit {result.returncode}, not 2: {result.printed[-1500:]}")
    _expect(len(lines) == 1 and lines[0].startswith("error: "), f"not one error line: {result.stderr[-1500:]}")
    _expect(naming in (lines or [""])[0], f"the line does not name {naming!r}: {(lines or [''])[0]}")


def _nothing_sent(api) -> None:
    _expect(api.requests == [], f"{len(api.requests)} request(s) reached the API: "
                                f"{[r['method'] + ' ' + r['path'] for r in api.requests][:4]}")


def _accepted(result: Result) -> None:
    _expect(result.returncode == 0, f"a valid value was refused: {result.stderr[-1500:]}")


def _secret_file(folder: Path, name: str, text: str, newline: str = "\n") -> str:
    path = folder / name
    path.write_bytes((text + newline).encode())
    path.chmod(0o600)
    return str(path)


# --- generated secrets ------------------------------------------------------------------------------------------
# A bearer token is RFC 6750's b64token; a cookie RFC 6265's cookie-name (a token) and cookie-octets; a URL password
# RFC 3986's userinfo characters. Each starts with a marker so that it can never occur in our output by chance.
B64TOKEN = string.ascii_letters + string.digits + "-._~+/"
TCHAR = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
COOKIE_OCTETS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '",;\\')
USERINFO = string.ascii_letters + string.digits + "-._~!$&'()*+,;="

tokens = st.text(B64TOKEN, min_size=12, max_size=80).map(lambda s: "Tk" + s)
cookie_names = st.text(TCHAR, min_size=1, max_size=20)
cookie_values = st.text(COOKIE_OCTETS, min_size=12, max_size=80).map(lambda s: "Ck" + s)
passwords = st.text(USERINFO, min_size=8, max_size=40).map(lambda s: "Pw" + s)
commands = st.sampled_from(["submit", "schedule", "list", "pause", "delete"])
statuses = st.sampled_from([400, 401, 403, 404, 409, 500, 502, 503])


def _command(api_url: str, command: str) -> list[str]:
    if command == "submit":
        return ["submit", "--host", api_url, "--image", IMAGE]
    if command == "schedule":
        return ["schedule", "--host", api_url, "--image", IMAGE, "--cron", "0 3 * * 1"]
    if command == "list":
        return ["schedule", "--host", api_url, "--list"]
    return ["schedule", "--host", api_url, f"--{command}", "rr-1"]


@settings(max_examples=60, **SETTINGS)
@given(token=tokens, cookie_name=cookie_names, cookie_value=cookie_values, command=commands, status=statuses,
       identity=st.sampled_from(["token", "cookie", "both", "service-account"]))
def test_credentials_a_server_echoes_are_never_printed(tmp_path, capfd, token, cookie_name, cookie_value, command,
                                                         status, identity):
    flags, env = [], {}
    if identity in ("token", "both"):
        flags += ["--token-file", _secret_file(tmp_path, "token", token)]
    if identity in ("cookie", "both"):
        flags += ["--cookie-file", _secret_file(tmp_path, "cookie", f"{cookie_name}={cookie_value}")]
    if identity == "service-account":
        env["KF_PIPELINES_SA_TOKEN_PATH"] = _secret_file(tmp_path, "sa-token", token)
    with RecordingKfpApi(echo=status) as api:
        result = _pipeline(capfd, *_command(api.url, command), *flags, env=env)
    sent = any(token in (r["authorization"] or "") or cookie_value in (r["cookie"] or "") for r in api.requests)
    _expect(sent or result.returncode == 2, "the credentials were never sent: the case tests nothing")
    _refused(result, token, cookie_value)


netscape_lines = st.tuples(cookie_names, cookie_values).map(
    lambda nv: f".kubeflow.example.com\tTRUE\t/\tTRUE\t0\t{nv[0]}\t{nv[1]}")


@settings(max_examples=40, **SETTINGS)
@given(value=cookie_values, name=cookie_names, shape=st.sampled_from(["netscape", "httponly", "crlf", "cr", "lf-inside",
                                                                        "two-lines", "header-name", "space-in-value"]),
       lines=st.lists(netscape_lines, min_size=0, max_size=3))
def test_a_malformed_cookie_file_is_refused_without_printing_it(tmp_path, capfd, value, name, shape, lines):
    text = {
        "netscape": "\n".join(["# Netscape HTTP Cookie File", f".example.com\tTRUE\t/\tTRUE\t0\t{name}\t{value}", *lines]),
        "httponly": "\n".join([f"#HttpOnly_.example.com\tFALSE\t/\tTRUE\t0\t{name}\t{value}", *lines]),
        "crlf": f"{name}={value}\r\nother=1",
        "cr": f"{name}={value}\rother=1",
        "lf-inside": f"{name}={value[:6]}\n{value[6:]}",
        "two-lines": f"{name}={value}\n{name}2={value}",
        "header-name": f"Cookie: {name}={value}; x=\"1\"\x7f",
        "space-in-value": f"{name}={value[:6]} {value[6:]}",
    }[shape]
    cookie = _secret_file(tmp_path, "cookies.txt", text)
    with RecordingKfpApi() as api:
        result = _pipeline(capfd, "schedule", "--host", api.url, "--list", "--cookie-file", cookie)
    _refused(result, value, value[6:], naming="--cookie-file")
    _nothing_sent(api)


@settings(max_examples=25, **SETTINGS)
@given(token=tokens, shape=st.sampled_from(["crlf", "lf-inside", "space", "bearer-prefix", "control"]))
def test_a_malformed_token_file_is_refused_without_printing_it(tmp_path, capfd, token, shape):
    text = {"crlf": f"{token}\r\nX-Other: 1", "lf-inside": f"{token[:6]}\n{token[6:]}", "space": f"{token[:6]} {token[6:]}",
            "bearer-prefix": f"Bearer {token} {token}", "control": f"{token}\x00"}[shape]
    with RecordingKfpApi() as api:
        result = _pipeline(capfd, "schedule", "--host", api.url, "--list", "--token-file",
                           _secret_file(tmp_path, "token", text))
    _refused(result, token, token[6:], naming="--token-file")
    _nothing_sent(api)


@settings(max_examples=30, **SETTINGS)
@given(user=st.text(string.ascii_lowercase, min_size=1, max_size=8), password=passwords,
       where=st.sampled_from(["host", "proxy"]), command=commands)
def test_a_password_in_a_url_is_refused_and_never_printed(capfd, user, password, where, command):
    with RecordingKfpApi() as api:
        url = api.url.replace("http://", f"http://{user}:{password}@")
        argv = _command(url if where == "host" else "http://ml-pipeline.kubeflow:8888", command)
        if where == "proxy":
            argv += [f"--proxy={url}"]
        result = _pipeline(capfd, *argv)
    _refused(result, password, naming=f"--{where}")
    _nothing_sent(api)


def test_the_real_command_line_prints_no_secret(tmp_path):
    """The same vectors through ``python pipeline.py`` (a subprocess), all at once: a proxy quoting them back."""
    token, cookie = "TkRealCliToken0123456789abcdef", "CkRealCliCookie0123456789abcdef"
    files = ["--token-file", _secret_file(tmp_path, "token", token),
             "--cookie-file", _secret_file(tmp_path, "cookie", f"session={cookie}")]
    with RecordingKfpApi(echo=502) as api:
        results = [run_cli("pipeline.py", *_command(api.url, command), *files, check=False)
                   for command in ("submit", "list")]
        netscape = _secret_file(tmp_path, "jar", f"# Netscape HTTP Cookie File\n.x\tTRUE\t/\tTRUE\t0\tsession\t{cookie}")
        results.append(run_cli("pipeline.py", "schedule", "--host", api.url, "--list", "--cookie-file", netscape,
                               check=False))
        results.append(run_cli("pipeline.py", "schedule", "--host", api.url.replace("//", "//me:PwRealCli0123@"),
                               "--list", check=False))
    for result in results:
        _refused(Result(result.returncode, result.stdout, result.stderr), token, cookie, "PwRealCli0123")
    _expect("Netscape" in results[2].stderr, results[2].stderr)


# --- the redaction function itself -------------------------------------------------------------------------------

@settings(max_examples=100, **SETTINGS)
@given(token=tokens, cookie_name=cookie_names, cookie_value=cookie_values, password=passwords,
       other_cookie=cookie_values, header=st.sampled_from(["Authorization", "authorization", "Cookie", "Set-Cookie",
                                                           "Proxy-Authorization", "set-cookie"]),
       form=st.sampled_from(["line", "dict", "json", "url", "bare-bearer"]))
def test_the_redaction_removes_every_form_of_a_secret(token, cookie_name, cookie_value, password, other_cookie, header,
                                                      form):
    from artifacts import redaction

    value = {"Authorization": f"Bearer {token}", "authorization": f"Bearer {token}",
             "Proxy-Authorization": f"Basic {token}"}.get(header, f"{cookie_name}={other_cookie}; Path=/; HttpOnly")
    text = {
        "line": f"(403)\nReason: Forbidden\n{header}: {value}\nbody",
        "dict": f"HTTP response headers: HTTPHeaderDict({ {header: value, 'Content-Length': '3'} !r})",
        "json": json.dumps({"headers": {header: value}, "url": f"https://u:{password}@h/x"}),
        "url": f"cannot reach https://admin:{password}@kubeflow.example.com:8443/pipeline",
        "bare-bearer": f"token Bearer {token} refused",
    }[form]
    with redaction.holding(cookie=f"{cookie_name}={cookie_value}", token=token, password=password):
        cleaned = redaction.redact(text + f" and {cookie_value} again")
    for secret in (token, cookie_value, password, other_cookie):
        _expect(secret not in cleaned, cleaned)
    _expect("\n" not in redaction.one_line(text), "one_line kept a line break")


# --- names, namespaces and schedules checked before anything is sent ----------------------------------------------

namespace_texts = st.one_of(
    st.text(string.ascii_letters + string.digits + "-_.", min_size=1, max_size=70),
    st.from_regex(DNS_1123_LABEL, fullmatch=True).filter(lambda s: len(s) > 63),
    st.sampled_from(["Team_A", "team.a", "a" * 64, "-team", "team-", "", "team a", "tëam"]),
)


@settings(max_examples=60, **SETTINGS)
@given(namespace=namespace_texts, command=st.sampled_from(["submit", "list", "schedule"]))
@example(namespace="a" * 63, command="list")
@example(namespace="a", command="list")
def test_kubeflow_namespaces_are_dns_1123_labels(capfd, namespace, command):
    with RecordingKfpApi() as api:
        result = _pipeline(capfd, *_command(api.url, command), f"--namespace={namespace}")
    if DNS_1123_LABEL.fullmatch(namespace) and len(namespace) <= 63:
        _accepted(result)
        return
    _refused(result, naming="DNS-1123 label")
    _nothing_sent(api)


never = st.one_of(
    st.tuples(st.sampled_from(["30", "31", "30,31"]), st.just("2")),
    st.tuples(st.just("31"), st.sampled_from(["4", "6", "9", "11", "4,6", "2,4", "feb", "4-6/2"])),
)


@settings(max_examples=30, **SETTINGS)
@given(day_month=never, minute=st.integers(0, 59), hour=st.integers(0, 23), tz=st.sampled_from(["", "TZ=Europe/Berlin "]))
@example(day_month=("31", "2"), minute=0, hour=3, tz="")
def test_a_cron_that_never_fires_is_refused_before_anything_is_sent(capfd, day_month, minute, hour, tz):
    day, month = day_month
    cron = f"{tz}{minute} {hour} {day} {month} *"
    with RecordingKfpApi() as api:
        kubeflow = _pipeline(capfd, "schedule", "--host", api.url, "--image", IMAGE, f"--cron={cron}")
    _refused(kubeflow, naming="never fires")
    _nothing_sent(api)
    vertex = _pipeline(capfd, "schedule", "--vertex", "--project", "my-project", "--region", "us-central1",
                       "--pipeline-root", "gs://bucket/root", "--accelerator", "none", f"--cron={cron}")
    _refused(vertex, naming="never fires")


@settings(max_examples=20, **SETTINGS)
@given(day=st.integers(1, 29), month=st.integers(1, 12))
def test_a_cron_that_fires_is_accepted(day, month):
    from platforms import cron

    _expect(len(cron.next_runs(cron.validate(f"0 3 {day} {month} *"))) == 3, "no next runs")


actions = st.lists(st.sampled_from(["list", "pause", "delete", "cron"]), min_size=2, max_size=4, unique=True)


@settings(max_examples=20, **SETTINGS)
@given(chosen=actions)
def test_conflicting_schedule_actions_are_refused(capfd, chosen):
    flags = {"list": ["--list"], "pause": ["--pause", "rr-1"], "delete": ["--delete", "rr-1"],
             "cron": ["--cron", "0 3 * * 1"]}
    with RecordingKfpApi() as api:
        result = _pipeline(capfd, "schedule", "--host", api.url, *[f for a in chosen for f in flags[a]])
    _refused(result, naming="one of")
    _nothing_sent(api)


@pytest.mark.parametrize(("flags", "naming"), [
    (["--project", "p"], "--project is a Vertex AI option"),
    (["--region", "us-central1"], "--region is a Vertex AI option"),
    (["--service-account", "sa@p.iam.gserviceaccount.com"], "--service-account is a Vertex AI option"),
    (["--cache", "--no-cache"], "--cache and --no-cache"),
    (["--accelerator-count", "-1"], "accelerator count"),
])
def test_flags_of_the_other_backend_or_in_conflict_are_refused(capfd, flags, naming):
    with RecordingKfpApi() as api:
        result = _pipeline(capfd, "submit", "--host", api.url, "--image", IMAGE, *flags)
    _refused(result, naming=naming)
    _nothing_sent(api)


def test_kubeflow_only_flags_are_refused_with_vertex(capfd):
    result = _pipeline(capfd, "schedule", "--vertex", "--project", "my-project", "--region", "us-central1",
                       "--pipeline-root", "gs://bucket/root", "--cron", "0 3 * * 1", "--catchup")
    _refused(result, naming="--catchup is a Kubeflow option")


@settings(max_examples=20, **SETTINGS)
@given(port=st.one_of(st.integers(65536, 10**6), st.just(0)), where=st.sampled_from(["host", "proxy"]))
def test_ports_out_of_range_are_refused(capfd, port, where):
    with RecordingKfpApi() as api:
        url = f"http://127.0.0.1:{port}"
        argv = ["schedule", "--list"] + (["--host", url] if where == "host" else ["--host", api.url, "--proxy", url])
        result = _pipeline(capfd, *argv)
    _refused(result, naming="port")
    _nothing_sent(api)


bad_locations = st.one_of(
    st.sampled_from(["gs://", "s3://", "gs:///x", "gs://AB/x", "gs://bucket/../x", "gs://bucket/a//b", "s3://ab",
                     "minio://mlpipeline/x", "http://example.com/x", "file:///tmp/x", "gcs://bucket/x",
                     "gs://goog-bucket/x", "s3://bucket/x\ny"]),
    st.from_regex(r"gs://[a-z0-9._-]{0,70}/(\.\.|\.)/[a-z]{1,5}", fullmatch=True),
    st.from_regex(r"[a-z]{2,6}://[a-z]{1,8}/[a-z]{1,8}", fullmatch=True).filter(lambda s: not s.startswith(("gs:", "s3:"))),
)
bad_registry = st.sampled_from(["projects/p/locations//models/m", "projects/my-project/locations/us-central1/models/1mnist",
                                "projects/my-project/locations/us-central1/models/" + "m" * 64, "projects/P/x"])


@settings(max_examples=40, **SETTINGS)
@given(name=st.sampled_from(["checkpoint_root", "publish_uri", "tfds_data_dir"]), location=st.one_of(bad_locations, bad_registry))
def test_location_valued_params_are_checked_before_anything_is_sent(capfd, name, location):
    assume(name == "publish_uri" or not location.startswith("projects/"))
    with RecordingKfpApi() as api:
        result = _pipeline(capfd, "submit", "--host", api.url, "--image", IMAGE, "--param", f"{name}={location}")
    _refused(result, naming=name if name != "publish_uri" else "")
    _nothing_sent(api)


def test_a_parameter_given_twice_is_refused(capfd):
    with RecordingKfpApi() as api:
        result = _pipeline(capfd, "submit", "--host", api.url, "--image", IMAGE, "--param", "epochs=3",
                           "--param", "epochs=4")
    _refused(result, naming="epochs")
    _nothing_sent(api)


image_texts = st.one_of(
    st.sampled_from(["Registry.example.com/ML/img:1", "reg/img:", "reg//img:1", "reg/img:1:2", "reg/img:-1",
                     "reg/img:" + "a" * 129, "reg/img@sha256:abc", "reg/img@sha256:" + "A" * 10, "reg/ img:1",
                     "reg/img:1\n", "-reg/img:1", "reg/img_:1", "reg/.img:1", "/img:1", "reg:99999999999999/img:1x y"]),
    st.text(string.ascii_letters + string.digits + ":/@._- ", min_size=1, max_size=40),
)
IMAGE_REFERENCE = re.compile(  # distribution/reference's grammar (reference.go, regexp.go): domain, path, tag, digest
    r"(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*"
    r"(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?")


@settings(max_examples=40, **SETTINGS)
@given(image=image_texts)
@example(image="reg/img:" + "a" * 128)
def test_image_references_follow_the_reference_grammar(tmp_path, capfd, image):
    out = tmp_path / "p.yaml"
    out.unlink(missing_ok=True)
    result = _pipeline(capfd, "compile", f"--image={image}", "--allow-mutable-image", "--accelerator", "none",
                       "--output", str(out))
    name = image.partition("@")[0].rpartition(":")[0] if ":" in image.rsplit("/", 1)[-1] else image.partition("@")[0]
    if IMAGE_REFERENCE.fullmatch(image) and len(name) <= 255:
        _accepted(result)
        return
    _refused(result, naming="--image")
    _expect(not out.exists(), "the YAML was written")


runtime_texts = st.one_of(
    st.text(string.ascii_letters + string.digits + "-_.", min_size=1, max_size=40),
    st.sampled_from(["JAX", "jax_distributed", "-jax", "jax-", "jax..x", ".jax", "a" * 254]),
)
DNS_1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


@settings(max_examples=30, **SETTINGS)
@given(runtime=runtime_texts)
@example(runtime="a" * 253)
@example(runtime="jax.distributed")
def test_trainer_runtimes_are_dns_1123_subdomains(tmp_path, capfd, runtime):
    out = tmp_path / "p.yaml"
    out.unlink(missing_ok=True)
    result = _pipeline(capfd, "compile", "--image", IMAGE, "--replicas", "2", f"--trainer-runtime={runtime}",
                       "--output", str(out))
    if DNS_1123_SUBDOMAIN.fullmatch(runtime) and len(runtime) <= 253:
        _accepted(result)
        return
    _refused(result, naming="DNS-1123 subdomain")
    _expect(not out.exists(), "the YAML was written")


@settings(max_examples=30, **SETTINGS)
@given(machine=st.one_of(st.text(string.ascii_letters + string.digits + "-_. ", min_size=1, max_size=30),
                         st.sampled_from(["G2-standard-8", "g2_standard_8", "g2-standard-8-", "8-standard", "a" * 64])))
def test_machine_types_are_compute_engine_names(tmp_path, capfd, machine):
    assume(not (re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", machine) and len(machine) <= 63))
    out = tmp_path / "p.yaml"
    out.unlink(missing_ok=True)
    result = _pipeline(capfd, "compile", "--image", IMAGE, "--target", "vertex", "--replicas", "2", f"--machine-type={machine}",
                       "--output", str(out))
    _refused(result, naming="--machine-type")
    _expect(not out.exists(), "the YAML was written")


# --- KServe -------------------------------------------------------------------------------------------------------

@pytest.fixture
def published(tmp_path):
    """A publish location with version v1, and a published-looking version beside it (outside it)."""
    from mlp_core.export import SAVED_MODEL_DIR, SERVING_VERSION
    from components.publish import MANIFEST

    for folder in (tmp_path / "publish" / "v1", tmp_path / "outside"):
        (folder / SAVED_MODEL_DIR / SERVING_VERSION).mkdir(parents=True)
        (folder / SAVED_MODEL_DIR / SERVING_VERSION / "saved_model.pb").write_bytes(b"pb")
        (folder / MANIFEST).write_text("{}")
    return tmp_path / "publish"


def _kserve(capfd, *argv: str) -> Result:
    from commands.kserve import main

    return _main(capfd, main, list(argv))


@settings(max_examples=40, **SETTINGS)
@given(namespace=namespace_texts)
@example(namespace="a" * 63)
def test_kserve_namespaces_are_dns_1123_labels(capfd, published, namespace):
    result = _kserve(capfd, "--name", "mnist", "--publish-uri", str(published), "--version", "v1",
                     f"--namespace={namespace}")
    if DNS_1123_LABEL.fullmatch(namespace) and len(namespace) <= 63:
        _accepted(result)
        _expect(result.returncode or yaml.safe_load(result.stdout)["metadata"]["namespace"] == namespace, result.stdout)
        return
    _refused(result, naming="DNS-1123 label")
    _expect(result.stdout == "", "a manifest was written")


@settings(max_examples=40, **SETTINGS)
@given(account=st.one_of(runtime_texts, st.sampled_from(["Bad_SA", "", "sa.", "a" * 254])))
@example(account="a" * 253)
def test_kserve_service_accounts_are_dns_1123_subdomains(capfd, published, account):
    result = _kserve(capfd, "--name", "mnist", "--publish-uri", str(published), "--version", "v1",
                     f"--service-account={account}")
    if DNS_1123_SUBDOMAIN.fullmatch(account) and len(account) <= 253:
        _accepted(result)
        return
    _refused(result, naming="DNS-1123 subdomain")
    _expect(result.stdout == "", "a manifest was written")


@settings(max_examples=40, **SETTINGS)
@given(version=st.one_of(st.sampled_from(["../outside", "..", ".", "v1/..", "/abs", "v1/../../outside", "", " v1",
                                          "../publish/v1", "-v1"]),
                         st.text(string.ascii_letters + string.digits + "./-_ ", min_size=1, max_size=20)))
def test_kserve_versions_stay_inside_the_publish_location(capfd, published, version):
    assume(version != "v1")
    result = _kserve(capfd, "--name", "mnist", "--publish-uri", str(published), f"--version={version}")
    _refused(result)
    _expect(result.stdout == "", f"a manifest was written: {result.stdout}")


@settings(max_examples=40, **SETTINGS)
@given(name=st.one_of(st.text(string.ascii_letters + string.digits + "-_.", min_size=1, max_size=50),
                      st.sampled_from(["1mnist", "mnist-", "Mnist", "mn_ist", "a" * 46])))
@example(name="a" * 45)
def test_kserve_names_are_dns_1035_labels(capfd, published, name):
    result = _kserve(capfd, f"--name={name}", "--publish-uri", str(published), "--version", "v1")
    if DNS_1035_LABEL.fullmatch(name) and len(name) <= 45:
        _accepted(result)
        return
    _refused(result, naming="--name")
    _expect(result.stdout == "", "a manifest was written")


# --- names we derive ----------------------------------------------------------------------------------------------

@settings(max_examples=200, **SETTINGS)
@given(run_id=st.text(min_size=0, max_size=300))
def test_trainjob_names_are_dns_1035_labels_with_room_for_pod_names(run_id):
    """Trainer names the pods ``{name}-node-0-0`` (jax_plugin_facts.json): a DNS-1123 label too, so at most 63."""
    from platforms.kubeflow.trainer import job_name

    name = job_name(run_id)
    _expect(bool(DNS_1035_LABEL.fullmatch(name)) and len(name) <= 63, name)
    _expect(bool(DNS_1123_LABEL.fullmatch(f"{name}-node-0-0")) and len(f"{name}-node-0-0") <= 63, name)
