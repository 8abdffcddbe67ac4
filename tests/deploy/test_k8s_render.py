"""The Kubernetes manifests: `sluice k8s render` (and `helm template`, where helm is installed) make
objects that validate against the Kubernetes schemas (kubernetes-validate, strict: an unknown field
is an error) and KEDA's ScaledObject schema (vendored under deploy/helm/schemas/), one worker
Deployment per account of the config, and nothing secret."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import msgspec
import pytest
import yaml

from shared import k8s
from shared.config import parse_config
from shared.tenants.secrets import ADMIN_TOKEN_ENV, KEY_SECRET_ENV, read_secret
from tests.conftest import ROOT

CHART = ROOT / "deploy" / "helm" / "sluice"
EXAMPLE = CHART / "ci" / "example-values.yaml"
KEDA_SCHEMA = json.loads((ROOT / "deploy" / "helm" / "schemas" / "keda-scaledobject-v1alpha1.json").read_text())
SECRET_VARS = ("REDIS_URL", "SLUICE_KEY_TEAM_A", "SLUICE_KEY_TEAM_B_HMAC", "SLUICE_KEY_TEAM_B2", "OPENAI_KEY_1",
               "ANTHROPIC_KEY", "GEMINI_KEY")
ADMIN_TOKEN, KEY_SECRET = "admin-token-" + "a" * 20, "key-secret-" + "k" * 20
# The oldest Kubernetes the chart supports (policy/v1 PDBs, apps/v1) and the newest the package knows.
K8S_VERSIONS = ("1.27", kubernetes_validate.utils.latest_version())

CONFIG = """\
redis_url: ${REDIS_URL}
client_keys:
  - {name: team-a, key: "${SLUICE_KEY_TEAM_A}"}
  - {name: team-b, key_hmac: "${SLUICE_KEY_TEAM_B_HMAC}", weight: 2}
  - {name: team-b, key: "${SLUICE_KEY_TEAM_B2}"}
tenants:
  - {name: team-b, models: [flash], rpm: 60, concurrency: 4, budget: {period: day, tokens: 1000000}}
security: {metrics_token: false}
accounts:
  - {name: openai-1, provider: openai, api_key: "${OPENAI_KEY_1}", limits: {rpm: 500, concurrency: 50}}
  - {name: Claude_Main, provider: anthropic, api_key: "${ANTHROPIC_KEY}"}
  - {name: gemini.eu, provider: gemini, api_key: "${GEMINI_KEY}", ca_file: /etc/sluice-ca/ca.pem}
models:
  - name: chat
    route: [{account: openai-1, model: gpt-4o-mini}, {account: Claude_Main, model: claude-haiku}]
  - name: flash
    route: [{account: gemini.eu, model: gemini-2.0-flash}]
    price: {input: 0.1, output: 0.4}
queue: {lease_seconds: 20}
batches: {data_dir: /var/lib/sluice}
"""


def chart_values() -> dict[str, Any]:
    return dict(yaml.safe_load((CHART / "values.yaml").read_text()))


def full_values(**overrides: Any) -> k8s.ChartValues:
    """Every optional part on: KEDA, the batcher with its claim, a chart-made Secret, overrides."""
    raw = chart_values()
    raw.update({"extraVolumes": [{"name": "corp-ca", "secret": {"secretName": "corp-ca"}}],
                "extraVolumeMounts": [{"name": "corp-ca", "mountPath": "/etc/sluice-ca", "readOnly": True}],
                "extraEnv": [{"name": "SLUICE_LOG_LEVEL", "value": "INFO"}]})
    raw.update({"configFile": CONFIG, "drainSeconds": 45, "secrets": {"create": True, "values": {"OPENAI_KEY_1": "x"}},
                "apiSecrets": {**raw["apiSecrets"], "create": True, "adminToken": ADMIN_TOKEN, "keySecret": KEY_SECRET},
                "keda": {**raw["keda"], "enabled": True}, "batcher": {**raw["batcher"], "enabled": True},
                "workers": {**raw["workers"], "perAccount": {"Claude_Main": {"maxReplicas": 3, "resources": {
                    "requests": {"cpu": "250m", "memory": "256Mi"}}}}}})
    raw.update(overrides)
    return msgspec.convert(raw, k8s.ChartValues)


def validate(obj: dict[str, Any]) -> None:
    if obj["apiVersion"].startswith("keda.sh/"):
        jsonschema.validate(obj, KEDA_SCHEMA)
        return
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def rendered_by_cli(*args: str) -> list[dict[str, Any]]:
    done = subprocess.run([sys.executable, "-m", "shared.cli", "k8s", "render", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [o for o in yaml.safe_load_all(done.stdout) if o]


def example_values() -> k8s.ChartValues:
    return msgspec.convert(yaml.safe_load(EXAMPLE.read_text()), k8s.ChartValues)


def test_the_example_renders_valid_objects_from_the_command() -> None:
    objects = rendered_by_cli("--values", str(EXAMPLE))
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objects) == sorted([
        ("ConfigMap", "sluice-config"), ("Deployment", "sluice-api"), ("Service", "sluice-api"),
        ("PodDisruptionBudget", "sluice-api"), ("Deployment", "sluice-worker-openai-1"),
        ("PodDisruptionBudget", "sluice-worker-openai-1")])
    for obj in objects:
        validate(obj)


def test_every_part_on_validates_with_one_worker_deployment_per_account(tmp_path: Path) -> None:
    objects = k8s.render(full_values(), release="prod")
    for obj in objects:
        validate(obj)
    # What the pods load: their environment (the Secret, the chart's REDIS_URL) fills the ${VAR}s.
    env = {v: f"value-of-{v}" for v in SECRET_VARS} | {"REDIS_URL": "redis://redis:6379/0",
                                                        "SLUICE_KEY_TEAM_B_HMAC": "ab" * 32}
    config = parse_config(by_kind(objects, "ConfigMap")["prod-config"]["data"]["sluice.yaml"], env=env,
                          check_files=False)
    assert [a.name for a in config.accounts] == ["openai-1", "Claude_Main", "gemini.eu"]
    assert [t.name for t in config.tenants] == ["team-b"]
    deployments = by_kind(objects, "Deployment")
    slugs = {"openai-1": "openai-1", "Claude_Main": "claude-main", "gemini.eu": "gemini-eu"}
    scaled = by_kind(objects, "ScaledObject")
    pdbs = by_kind(objects, "PodDisruptionBudget")
    assert set(deployments) == {"prod-api", "prod-batcher", *(f"prod-worker-{s}" for s in slugs.values())}
    for account, slug in slugs.items():
        name = f"prod-worker-{slug}"
        spec = deployments[name]["spec"]
        pod = spec["template"]["spec"]
        container = pod["containers"][0]
        # The pod runs the worker CLI for exactly this account, probed on its health endpoint.
        assert container["command"] == ["sluice"]
        assert container["args"] == ["worker", "--account", account, "--host", "0.0.0.0", "--health-port", "8081",
                                     "--redis-url", "$(REDIS_URL)"]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
        assert container["envFrom"] == [{"secretRef": {"name": "prod-secrets"}}]
        assert pod["terminationGracePeriodSeconds"] == 45 + 10  # drainSeconds + margin
        assert "replicas" not in spec  # KEDA owns the count
        assert spec["selector"]["matchLabels"]["sluice/account"] == slug
        assert pdbs[name]["spec"]["selector"] == spec["selector"]
        trigger = scaled[name]["spec"]["triggers"][0]
        assert scaled[name]["spec"]["scaleTargetRef"] == {"name": name}
        assert trigger["type"] == "prometheus"
        assert f'sluice_queue_depth{{account="{account}"}}' in trigger["metadata"]["query"]
        assert "{account}" not in trigger["metadata"]["query"]
    assert scaled["prod-worker-claude-main"]["spec"]["maxReplicaCount"] == 3
    assert scaled["prod-worker-openai-1"]["spec"]["maxReplicaCount"] == 8
    claude = deployments["prod-worker-claude-main"]["spec"]["template"]["spec"]["containers"][0]
    assert claude["resources"] == {"requests": {"cpu": "250m", "memory": "256Mi"}}
    # The CA the gemini account names (a path in the pods, not here) is mounted into every pod.
    for deployment in deployments.values():
        pod = deployment["spec"]["template"]["spec"]
        assert {"name": "corp-ca", "secret": {"secretName": "corp-ca"}} in pod["volumes"]
        assert {"name": "corp-ca", "mountPath": "/etc/sluice-ca", "readOnly": True} in \
            pod["containers"][0]["volumeMounts"]
        assert pod["containers"][0]["env"][-1] == {"name": "SLUICE_LOG_LEVEL", "value": "INFO"}
    api = deployments["prod-api"]["spec"]["template"]["spec"]
    assert api["terminationGracePeriodSeconds"] == 45 + 10 + 5  # + the preStop pause
    # API and batcher share the ReadWriteMany store at the config's data_dir.
    claim = by_kind(objects, "PersistentVolumeClaim")["prod-data"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for name in ("prod-api", "prod-batcher"):
        pod = deployments[name]["spec"]["template"]["spec"]
        assert {"name": "data", "persistentVolumeClaim": {"claimName": "prod-data"}} in pod["volumes"]
        assert {"name": "data", "mountPath": "/var/lib/sluice"} in pod["containers"][0]["volumeMounts"]


def test_without_keda_the_replicas_come_from_the_values() -> None:
    values = full_values()
    values.keda.enabled = False
    values.workers.per_account = {"gemini.eu": k8s.AccountOverride(replicas=3)}
    deployments = by_kind(k8s.render(values), "Deployment")
    assert deployments["sluice-worker-gemini-eu"]["spec"]["replicas"] == 3
    assert deployments["sluice-worker-openai-1"]["spec"]["replicas"] == 1
    assert not by_kind(k8s.render(values), "ScaledObject")


def test_the_drain_time_defaults_to_the_configs_then_to_30() -> None:
    values = full_values(drainSeconds=None)
    pod = by_kind(k8s.render(values), "Deployment")["sluice-worker-openai-1"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 30 + 10
    values.workers.termination_grace_period_seconds = 120
    pod = by_kind(k8s.render(values), "Deployment")["sluice-worker-openai-1"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 120


def config_drain_values() -> k8s.ChartValues:
    return full_values(drainSeconds=None, configFile=CONFIG.replace("queue: {lease_seconds: 20}",
                                                                    "queue: {lease_seconds: 20, drain_seconds: 50.5}"))


def test_the_grace_period_follows_the_configs_drain_seconds() -> None:
    objects = by_kind(k8s.render(config_drain_values()), "Deployment")
    assert objects["sluice-worker-openai-1"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 51 + 10
    assert objects["sluice-api"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 51 + 10 + 5


def test_no_secret_reaches_the_manifests(monkeypatch: pytest.MonkeyPatch) -> None:
    # Rendering needs the accounts, not the keys: even with the keys in the environment, the
    # manifests carry only the ${VAR}s the pods fill from their Secret.
    for var in SECRET_VARS:
        monkeypatch.setenv(var, f"sk-secret-{var}")
    monkeypatch.setenv("SLUICE_ADMIN_TOKEN", "sk-secret-admin-token")
    monkeypatch.setenv("SLUICE_KEY_SECRET", "sk-secret-key-secret")
    values = full_values(secrets={"existingSecret": "llm-keys"},
                         apiSecrets={"existingSecret": "llm-api", "adminToken": "", "keySecret": ""})
    text = k8s.dump(k8s.render(values))
    assert "sk-secret" not in text
    assert "${OPENAI_KEY_1}" in text and "${SLUICE_KEY_TEAM_B_HMAC}" in text
    assert "kind: Secret" not in text


def test_the_api_reads_its_admin_token_and_key_secret_from_mounted_files() -> None:
    """`sluice api --host 0.0.0.0` refuses to start without an admin token: the chart supplies it,
    and the key secret every replica shares, as files from a Secret, to the API pods only."""
    objects = k8s.render(full_values())
    secret = by_kind(objects, "Secret")["sluice-api-secrets"]
    assert secret["stringData"] == {"admin-token": ADMIN_TOKEN, "key-secret": KEY_SECRET}
    config_map = k8s.dump([by_kind(objects, "ConfigMap")["sluice-config"]])
    assert ADMIN_TOKEN not in config_map and KEY_SECRET not in config_map
    deployments = by_kind(objects, "Deployment")
    api = deployments["sluice-api"]["spec"]["template"]["spec"]
    container = api["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env[f"{ADMIN_TOKEN_ENV}_FILE"] == "/etc/sluice-secrets/admin-token"
    assert env[f"{KEY_SECRET_ENV}_FILE"] == "/etc/sluice-secrets/key-secret"
    assert ADMIN_TOKEN_ENV not in env and KEY_SECRET_ENV not in env  # the values never travel as variables
    assert {"name": "api-secrets", "mountPath": "/etc/sluice-secrets", "readOnly": True} in container["volumeMounts"]
    assert {"name": "api-secrets", "secret": {
        "secretName": "sluice-api-secrets", "defaultMode": 0o440,
        "items": [{"key": "admin-token", "path": "admin-token"}, {"key": "key-secret", "path": "key-secret"}]},
    } in api["volumes"]
    for name, deployment in deployments.items():
        if name != "sluice-api":  # workers and the batcher never see them
            pod = deployment["spec"]["template"]["spec"]
            assert "api-secrets" not in k8s.dump([pod])
            assert not any(e["name"].startswith(("SLUICE_ADMIN", "SLUICE_KEY_SECRET"))
                           for e in pod["containers"][0]["env"])


def test_the_api_reads_the_files_the_chart_mounts(tmp_path: Path) -> None:
    """The mounted files, laid out as the pod sees them, are what `sluice api` reads."""
    values = full_values(apiSecrets={"existingSecret": "ops-made", "adminTokenKey": "token", "keySecretKey": "hmac"})
    objects = k8s.render(values)
    api = by_kind(objects, "Deployment")["sluice-api"]["spec"]["template"]["spec"]
    (volume,) = [v for v in api["volumes"] if v["name"] == "api-secrets"]
    assert volume["secret"]["secretName"] == "ops-made"
    the_secret = {"token": ADMIN_TOKEN, "hmac": KEY_SECRET}  # what `kubectl create secret` put in it
    mount = next(m["mountPath"] for m in api["containers"][0]["volumeMounts"] if m["name"] == "api-secrets")
    for item in volume["secret"]["items"]:
        path = tmp_path / mount.lstrip("/") / item["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(the_secret[item["key"]] + "\n")
    env = {e["name"]: str(tmp_path) + e["value"] for e in api["containers"][0]["env"]
           if e["name"].endswith("_FILE")}
    assert read_secret(ADMIN_TOKEN_ENV, env=env) == ADMIN_TOKEN
    assert read_secret(KEY_SECRET_ENV, env=env) == KEY_SECRET


@pytest.mark.parametrize(("api_secrets", "message"), [
    ({}, "the API needs an admin token and a client-key secret: set apiSecrets.existingSecret"),
    ({"create": True, "adminToken": "short", "keySecret": KEY_SECRET}, "apiSecrets.adminToken must be at least 16"),
    ({"create": True, "adminToken": ADMIN_TOKEN, "keySecret": ""}, "apiSecrets.keySecret must be at least 16"),
])
def test_the_api_secrets_are_required(api_secrets: dict[str, Any], message: str) -> None:
    with pytest.raises(k8s.RenderError, match=message.replace(".", r"\.")) as raised:
        k8s.render(full_values(apiSecrets=api_secrets))
    assert KEY_SECRET not in str(raised.value)


def test_each_variable_gets_a_placeholder_of_its_fields_shape() -> None:
    """Rendering checks the config as the pods will, without the secrets: a whole-field ${VAR} stands
    for a value of that field's shape, and two variables never stand for the same key."""
    env = k8s.placeholders(CONFIG + 'accounts_proxy_example: {proxy: "${PROXY}"}\n')
    assert env["REDIS_URL"].startswith("redis://")
    assert len(env["SLUICE_KEY_TEAM_B_HMAC"]) == 64 and set(env["SLUICE_KEY_TEAM_B_HMAC"]) <= set("0123456789abcdef")
    assert env["SLUICE_KEY_TEAM_A"] != env["SLUICE_KEY_TEAM_B2"]
    assert env["PROXY"].startswith("http://")
    # Two client keys from one variable are one key twice: refused, as the pods would refuse it.
    with pytest.raises(k8s.RenderError, match="duplicate client key"):
        k8s.render(full_values(configFile=CONFIG.replace("${SLUICE_KEY_TEAM_B2}", "${SLUICE_KEY_TEAM_A}")))


def test_redis_comes_from_a_url_a_secret_or_the_subchart() -> None:
    def env(**redis: Any) -> list[dict[str, Any]]:
        values = full_values(redis={"url": "", **redis})
        pod = by_kind(k8s.render(values), "Deployment")["sluice-api"]["spec"]["template"]["spec"]
        return list(pod["containers"][0]["env"])

    assert env(url="redis+cluster://r-0:6379,r-1:6379,r-2:6379")[0] == {
        "name": "REDIS_URL", "value": "redis+cluster://r-0:6379,r-1:6379,r-2:6379"}
    assert env(url="redis://x:6379", urlSecret={"name": "redis", "key": "url"})[0] == {
        "name": "REDIS_URL", "valueFrom": {"secretKeyRef": {"name": "redis", "key": "url"}}}
    bundled = env(enabled=True)
    assert bundled[1] == {"name": "REDIS_URL", "value": "redis://:$(REDIS_PASSWORD)@sluice-redis-master:6379/0"}
    with pytest.raises(k8s.RenderError, match="no Redis"):
        env()


@pytest.mark.parametrize(("change", "message"), [
    ({"configFile": CONFIG.replace("gemini.eu", "openai.1").replace("openai-1", "openai_1")},
     "both become 'openai-1'"),
    ({"configFile": CONFIG.replace("/var/lib/sluice", "./data")}, "must be an absolute path"),
    ({"workers": {"perAccount": {"nope": {"replicas": 2}}}}, "workers.perAccount.nope: no account named 'nope'"),
    ({"configFile": CONFIG.replace("gemini.eu", "g" * 41)}, "at most 40 characters"),
    ({"configFile": CONFIG.replace("route: [{account: openai-1", "route: [{account: openai-9")},
     "no account named 'openai-9'"),
])
def test_bad_input_is_refused_naming_what(change: dict[str, Any], message: str) -> None:
    with pytest.raises(k8s.RenderError, match=message.replace(".", r"\.").replace("[", r"\[")):
        k8s.render(full_values(**change))


def test_the_command_says_what_is_wrong_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "sluice.yaml"
    bad.write_text(CONFIG.replace("provider: anthropic", "provider: nobody"))
    done = subprocess.run([sys.executable, "-m", "shared.cli", "k8s", "render", "--config", str(bad), "--values",
                           str(CHART / "values.yaml")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    line = next(i for i, text in enumerate(CONFIG.splitlines(), 1) if "provider: anthropic" in text)
    assert f"{bad}:{line}:" in done.stderr and "accounts[1].provider" in done.stderr
    assert not done.stdout


def test_the_config_file_wins_and_is_kept_verbatim(tmp_path: Path) -> None:
    path = tmp_path / "sluice.yaml"
    path.write_text("# our accounts\n" + CONFIG)
    out = tmp_path / "manifests.yaml"
    objects = rendered_by_cli("--config", str(path), "--values", str(EXAMPLE), "--release", "llm", "-o", str(out))
    assert objects == []  # written to the file instead
    objects = [o for o in yaml.safe_load_all(out.read_text()) if o]
    assert by_kind(objects, "ConfigMap")["llm-config"]["data"]["sluice.yaml"] == path.read_text()
    assert {n for n in by_kind(objects, "Deployment")} == {
        "llm-api", "llm-worker-openai-1", "llm-worker-claude-main", "llm-worker-gemini-eu"}


def test_the_schemas_catch_mistakes() -> None:
    """The validation is not vacuous: the faults a template slip makes are refused."""
    objects = k8s.render(full_values())
    deployment = by_kind(objects, "Deployment")["sluice-api"]
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/x"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    scaled = by_kind(objects, "ScaledObject")["sluice-worker-openai-1"]
    scaled["spec"]["triggers"][0]["metadata"]["threshold"] = 100  # KEDA's metadata is strings only
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled)
    del scaled["spec"]["scaleTargetRef"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, KEDA_SCHEMA)


def test_the_values_file_and_the_typed_defaults_agree() -> None:
    values = msgspec.convert(chart_values(), k8s.ChartValues)  # every key known: forbid_unknown_fields
    assert msgspec.to_builtins(values) == msgspec.to_builtins(k8s.ChartValues())


def test_without_a_config_nothing_renders() -> None:
    # The chart's own values carry no config (helm would deep-merge an example into the user's).
    with pytest.raises(k8s.RenderError, match="no Sluice config: pass --config FILE"):
        k8s.render(msgspec.convert(chart_values(), k8s.ChartValues))


# --- Helm's own template engine -------------------------------------------------------------
# The chart's Go templates are checked by Helm itself: the `helm` binary where it is installed,
# else Helm's Go SDK through helm-python-sdk (a dev dependency: no helm package exists on this
# machine's registries). Either renders the chart, and the objects must equal the command's.

HELM = shutil.which("helm")
try:
    import helm_python
except (ImportError, OSError):  # OSError: its native library does not load on this platform
    helm_python = None


def helm_chart(tmp_path: Path) -> Path:
    """A copy of the chart without its optional subchart, which would need a download to build."""
    chart = tmp_path / "sluice"
    shutil.copytree(CHART, chart)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    meta.pop("dependencies")
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta))
    return chart


def helm_render(chart: Path, values: dict[str, Any], release: str, tmp_path: Path) -> str:
    if HELM is not None:
        values_file = tmp_path / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        done = subprocess.run([HELM, "template", release, str(chart), "-f", str(values_file)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout
    assert helm_python is not None
    rendered = helm_python.Chart.load(str(chart)).render(values, name=release, namespace="default")
    return "\n---\n".join(text for path, text in sorted(rendered.items()) if not path.endswith("NOTES.txt"))


needs_helm = pytest.mark.skipif(HELM is None and helm_python is None,
                                reason="neither helm nor helm-python-sdk is installed: the chart's templates are "
                                       "not rendered; `sluice k8s render` is still checked")


@needs_helm
def test_helm_lint(tmp_path: Path) -> None:
    chart = helm_chart(tmp_path)
    if HELM is not None:
        done = subprocess.run([HELM, "lint", "--strict", str(chart), "-f", str(EXAMPLE)], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return
    assert helm_python is not None
    report = helm_python.lint(str(chart), yaml.safe_load(EXAMPLE.read_text()))
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # warnings and errors; 1 is info
    assert report["errors"] == [] and problems == []


@needs_helm
@pytest.mark.parametrize("full", [False, True])
def test_helm_renders_what_the_command_renders(tmp_path: Path, full: bool) -> None:
    values = full_values() if full else example_values()
    text = helm_render(helm_chart(tmp_path), msgspec.to_builtins(values), "rel", tmp_path)
    from_helm = [o for o in yaml.safe_load_all(text) if o]
    for obj in from_helm:
        validate(obj)
    assert normalized(from_helm) == normalized(k8s.render(values, release="rel"))


@needs_helm
def test_helm_reads_the_configs_drain_seconds_too(tmp_path: Path) -> None:
    values = config_drain_values()
    text = helm_render(helm_chart(tmp_path), msgspec.to_builtins(values), "rel", tmp_path)
    assert normalized([o for o in yaml.safe_load_all(text) if o]) == normalized(k8s.render(values, release="rel"))


@needs_helm
@pytest.mark.parametrize(("change", "message"), [
    ({"configFile": CONFIG.replace("gemini.eu", "openai.1").replace("openai-1", "openai_1")},
     "both become"),
    ({"configFile": CONFIG.replace("/var/lib/sluice", "./data")}, "must be an absolute path"),
    ({"workers": {"perAccount": {"nope": {"replicas": 2}}}}, "workers.perAccount.nope: no account named"),
    ({"redis": {"url": ""}}, "no Redis"),
    ({"configFile": ""}, "no Sluice config"),
    ({"apiSecrets": {"create": False}}, "the API needs an admin token"),
    ({"apiSecrets": {"create": True, "adminToken": "short", "keySecret": KEY_SECRET}},
     "apiSecrets.adminToken must be at least 16"),
])
def test_helm_refuses_what_the_command_refuses(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    values = msgspec.to_builtins(full_values())
    values.update(change)
    with pytest.raises(Exception, match=message.replace(".", r"\.")):
        helm_render(helm_chart(tmp_path), values, "rel", tmp_path)


def normalized(objects: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
    """Objects by (kind, name), with the config compared as data and the config checksum dropped
    (helm writes the config mapping with its own YAML emitter)."""
    out = {}
    for obj in objects:
        obj = json.loads(json.dumps(obj))
        if obj["kind"] == "ConfigMap":
            obj["data"]["sluice.yaml"] = yaml.safe_load(obj["data"]["sluice.yaml"])
        annotations = obj.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations", {})
        annotations.pop("checksum/config", None)
        out[(obj["kind"], obj["metadata"]["name"])] = obj
    return out


def test_the_pods_run_as_the_images_user() -> None:
    """runAsNonRoot needs a numeric USER in the image, and fsGroup must match it for the store."""
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    user = dockerfile.strip().splitlines()
    uid = next(line.split()[1] for line in user if line.startswith("USER "))
    assert f"--uid {uid} " in dockerfile
    context = k8s.ChartValues().pod_security_context
    assert str(context["runAsUser"]) == str(context["fsGroup"]) == uid and context["runAsNonRoot"] is True
    pod = by_kind(k8s.render(full_values()), "Deployment")["sluice-batcher"]["spec"]["template"]["spec"]
    assert pod["securityContext"] == context
