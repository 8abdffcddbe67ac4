"""`sluice k8s render`: the Kubernetes manifests for a Sluice config, as the Helm chart renders them.

The chart in deploy/helm/sluice/ and this module make the same objects from the same two inputs:
the Sluice config (accounts, models, limits) and the chart's values (image, replicas, probes,
autoscaling, secrets, Redis). Helm cannot run Python, so the chart's templates repeat this
module's rules in Go templates, thinly; tests/deploy/test_k8s_render.py validates what this module
renders against the Kubernetes and KEDA schemas, and compares it with `helm template` where helm
is installed. Keep the two in step: a rule changed here is changed in templates/ too.

Rules both follow:
- one worker Deployment (+ PodDisruptionBudget, + KEDA ScaledObject when enabled) per account of
  the config, named `<release>-worker-<account>` with the account name lower-cased and `_`/`.`
  turned into `-`;
- the config goes into a ConfigMap verbatim, `${VAR}`s and all; the pods fill them from their
  environment, which comes from a Secret (`envFrom`), so no secret is ever in a rendered manifest
  unless `secrets.create` is asked for;
- Redis is external: its URL (or a Secret holding it) goes to every process as `--redis-url`;
- the API's own secrets (the admin token, without which it refuses to listen on a pod address, and
  the client-key HMAC secret every API replica must share) come from a Secret mounted as files into
  the API pods only, named by `SLUICE_ADMIN_TOKEN_FILE` / `SLUICE_KEY_SECRET_FILE`: never an
  environment variable's value (a child process or a crash report would carry it), never the
  ConfigMap;
- terminationGracePeriodSeconds is, unless set, the drain time (`drainSeconds`, else the config's
  `queue.drain_seconds`, else 30) plus `gracePeriodMarginSeconds`, plus the API's preStop pause.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Any

import msgspec
import yaml

from shared.config import Config, ConfigError, parse_config
from shared.k8s_values import (  # the chart's values, typed (re-exported for the CLI and tests)
    ADMIN_TOKEN_FILE,
    KEY_SECRET_FILE,
    AccountOverride,
    ChartValues,
    Pdb,
)
from shared.tenants.secrets import ADMIN_TOKEN_ENV, KEY_SECRET_ENV, MIN_SECRET_CHARS

MAX_ACCOUNT_LABEL = 40  # leaves room for `<release>-worker-` and the pod suffixes in a 63-char name
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")
SERVER_SECRETS_DIR = "/etc/sluice-secrets"  # the API pods' mount of apiSecrets


class RenderError(Exception):
    pass


def load_values(path: str | Path | None) -> ChartValues:
    if path is None:
        return ChartValues()
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
        return msgspec.convert(raw, ChartValues)
    except OSError as exc:
        raise RenderError(f"{path}: cannot read values: {exc.strerror}") from None
    except (yaml.YAMLError, msgspec.ValidationError) as exc:
        raise RenderError(f"{path}: {exc}") from None


def config_text(values: ChartValues) -> str:
    """The sluice.yaml the pods read: `configFile` verbatim, else the `config` mapping as YAML."""
    if values.config_file:
        return values.config_file
    return yaml.safe_dump(values.config, sort_keys=False)


def parse_for_render(text: str, source: str) -> Config:
    """The config checked as the pods will load it, with every `${VAR}` set to a placeholder:
    rendering needs the accounts, never the secrets. Files it names (`ca_file`) are paths in the
    pods (mounted with `extraVolumes`), not on this machine."""
    return parse_config(text, source, placeholders(text), check_files=False)


# A `${VAR}` that is a whole field's value stands for a value of that field's shape: the checks the
# pods run on the real value (a redis_url's scheme, a key_hmac's 64 hex digits) must pass on it.
_SHAPED = {"redis_url": "redis://placeholder:6379/0", "proxy": "http://placeholder:3128",
           "base_url": "https://placeholder.invalid"}


def placeholders(text: str) -> dict[str, str]:
    """A stand-in for every `${VAR}` of the config, distinct per variable (two client keys from two
    variables are not duplicates) and shaped like the field it fills."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError:
        raw = None  # parse_config reports it, with its position
    env: dict[str, str] = {}

    def walk(value: Any, field: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, str(key))
        elif isinstance(value, list):
            for item in value:
                walk(item, field)
        elif isinstance(value, str):
            whole = _VAR.fullmatch(value)
            if whole and whole.group(1) not in env:
                name = whole.group(1)
                if field == "key_hmac":
                    env[name] = hashlib.sha256(name.encode()).hexdigest()
                elif field in _SHAPED:
                    env[name] = _SHAPED[field]
    walk(raw, "")
    for name in _VAR.findall(text):
        env.setdefault(name, f"placeholder-{name}")
    return env


def account_slug(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def drain_seconds(values: ChartValues, config: Config) -> float:
    return values.drain_seconds if values.drain_seconds is not None else config.queue.drain_seconds


def render(values: ChartValues, release: str = "sluice", source: str = "<values>") -> list[dict[str, Any]]:
    if not values.config_file and not values.config:
        raise RenderError("no Sluice config: pass --config FILE (helm: --set-file configFile=FILE) "
                          "or set config in the values")
    text = config_text(values)
    try:
        config = parse_for_render(text, source)
    except ConfigError as exc:
        raise RenderError(str(exc)) from None
    return _Renderer(values, release, config, text).objects()


class _Dumper(yaml.SafeDumper):
    """Plain manifests: no YAML anchors (labels repeat on purpose), multi-line text as a block."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value and not any(line != line.rstrip() for line in value.splitlines()) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def dump(objects: list[dict[str, Any]]) -> str:
    return "".join("---\n" + yaml.dump(obj, Dumper=_Dumper, sort_keys=False) for obj in objects)


class _Renderer:
    def __init__(self, values: ChartValues, release: str, config: Config, text: str) -> None:
        self.v = values
        self.release = release
        self.config = config
        self.text = text
        self.data_dir = config.batches.data_dir
        if not self.data_dir.startswith("/"):
            raise RenderError(f"batches.data_dir must be an absolute path in a pod, not {self.data_dir!r}")
        self.grace = math.ceil(drain_seconds(values, config)) + values.grace_period_margin_seconds
        self.checksum = hashlib.sha256(text.encode()).hexdigest()

    # --- shared pieces ---------------------------------------------------------------------

    def labels(self, component: str, account: str | None = None) -> dict[str, str]:
        labels = {"app.kubernetes.io/name": "sluice", "app.kubernetes.io/instance": self.release,
                  "app.kubernetes.io/component": component}
        if account is not None:
            labels["sluice/account"] = account
        return labels

    def meta(self, name: str, component: str, account: str | None = None) -> dict[str, Any]:
        return {"name": name, "labels": self.labels(component, account)}

    def env(self) -> list[dict[str, Any]]:
        redis = self.v.redis
        if redis.url_secret.name:
            return [{"name": "REDIS_URL", "valueFrom": {"secretKeyRef": {"name": redis.url_secret.name,
                                                                         "key": redis.url_secret.key}}}]
        if redis.url:
            return [{"name": "REDIS_URL", "value": redis.url}]
        if redis.enabled:  # the subchart's standalone primary and the password Secret it creates
            return [{"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": f"{self.release}-redis",
                                                                              "key": "redis-password"}}},
                    {"name": "REDIS_URL", "value": f"redis://:$(REDIS_PASSWORD)@{self.release}-redis-master:6379/0"}]
        raise RenderError("no Redis: set redis.url, redis.urlSecret or redis.enabled")

    def env_from(self) -> list[dict[str, Any]]:
        name = self.v.secrets.existing_secret or (f"{self.release}-secrets" if self.v.secrets.create else "")
        return [{"secretRef": {"name": name}}] if name else []

    def container(self, name: str, args: list[str], resources: dict[str, Any],
                  server_secrets: bool = False) -> dict[str, Any]:
        image = self.v.image
        # Paths, not values: the API reads each file at start-up (shared/tenants/secrets.py).
        secret_files = [{"name": f"{ADMIN_TOKEN_ENV}_FILE", "value": f"{SERVER_SECRETS_DIR}/{ADMIN_TOKEN_FILE}"},
                        {"name": f"{KEY_SECRET_ENV}_FILE", "value": f"{SERVER_SECRETS_DIR}/{KEY_SECRET_FILE}"}]
        container: dict[str, Any] = {
            "name": name, "image": f"{image.repository}:{image.tag}", "imagePullPolicy": image.pull_policy,
            "command": ["sluice"], "args": [*args, "--redis-url", "$(REDIS_URL)"],
            "env": [*self.env(), {"name": "SLUICE_CONFIG", "value": "/etc/sluice/sluice.yaml"},
                    *(secret_files if server_secrets else []), *self.v.extra_env],
        }
        if self.env_from():
            container["envFrom"] = self.env_from()
        container["volumeMounts"] = [{"name": "config", "mountPath": "/etc/sluice", "readOnly": True},
                                     {"name": "tmp", "mountPath": "/tmp"}, *self.v.extra_volume_mounts]
        container["resources"] = resources
        container["securityContext"] = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"]}}
        return container

    def pod(self, labels: dict[str, str], container: dict[str, Any], grace: int,
            extra_volumes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return {
            "metadata": {"labels": labels, "annotations": {"checksum/config": self.checksum}},
            "spec": {
                "securityContext": self.v.pod_security_context,
                "terminationGracePeriodSeconds": grace,
                "containers": [container],
                "volumes": [{"name": "config", "configMap": {"name": f"{self.release}-config"}},
                            {"name": "tmp", "emptyDir": {}}, *self.v.extra_volumes, *(extra_volumes or [])],
            },
        }

    def deployment(self, name: str, labels: dict[str, str], replicas: int | None,
                   pod: dict[str, Any]) -> dict[str, Any]:
        spec: dict[str, Any] = {}
        if replicas is not None:  # left out when KEDA owns the count, so an upgrade does not reset it
            spec["replicas"] = replicas
        spec["selector"] = {"matchLabels": labels}
        # A replacement must be ready before an old pod goes: capacity never dips during a rollout.
        spec["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
        spec["template"] = pod
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
                "spec": spec}

    def pdb(self, name: str, labels: dict[str, str], pdb: Pdb) -> dict[str, Any]:
        return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name, "labels": labels},
                "spec": {"maxUnavailable": pdb.max_unavailable, "selector": {"matchLabels": labels}}}

    # --- objects ---------------------------------------------------------------------------

    def objects(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": self.meta(f"{self.release}-config", "config"),
            "data": {"sluice.yaml": self.text},
        }]
        if self.v.secrets.create:
            out.append({"apiVersion": "v1", "kind": "Secret",
                        "metadata": self.meta(f"{self.release}-secrets", "secrets"), "type": "Opaque",
                        "stringData": dict(self.v.secrets.values)})
        if self.v.api_secrets.create:
            out.append(self.api_secret())
        out += self.api()
        slugs: dict[str, str] = {}
        for account in self.config.accounts:
            slug = account_slug(account.name)
            if slug in slugs:
                raise RenderError(f"accounts {slugs[slug]!r} and {account.name!r} both become {slug!r} in "
                                  f"Kubernetes names; rename one")
            if len(slug) > MAX_ACCOUNT_LABEL or not re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", slug):
                raise RenderError(f"account {account.name!r}: as a Kubernetes name ({slug!r}) it must be at most "
                                  f"{MAX_ACCOUNT_LABEL} characters and start and end with a letter or digit")
            slugs[slug] = account.name
            out += self.worker(account.name, slug)
        for name in self.v.workers.per_account:
            if name not in slugs.values():
                raise RenderError(f"workers.perAccount.{name}: no account named {name!r} in the config")
        if self.v.batcher.enabled:
            out += self.batcher()
        return out

    def api(self) -> list[dict[str, Any]]:
        api, name = self.v.api, f"{self.release}-api"
        labels = self.labels("api")
        container = self.container("api", ["api", "--host", "0.0.0.0", "--port", str(api.port),
                                           "--workers", str(api.processes)], api.resources, server_secrets=True)
        container["ports"] = [{"name": "http", "containerPort": api.port}]
        container["volumeMounts"] += [{"name": "data", "mountPath": self.data_dir},
                                      {"name": "api-secrets", "mountPath": SERVER_SECRETS_DIR, "readOnly": True}]
        container["livenessProbe"] = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10,
                                      "timeoutSeconds": 2, "failureThreshold": 3}
        container["readinessProbe"] = {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5,
                                       "timeoutSeconds": 2, "failureThreshold": 2}
        # The pause lets the Service drop this pod's endpoint before uvicorn stops listening.
        container["lifecycle"] = {"preStop": {"exec": {"command": ["sleep", str(api.pre_stop_sleep_seconds)]}}}
        grace = api.termination_grace_period_seconds
        if grace is None:
            grace = self.grace + api.pre_stop_sleep_seconds
        pod = self.pod(labels, container, grace, [self.data_volume(), self.api_secrets_volume()])
        pod["metadata"]["annotations"].update({"prometheus.io/scrape": "true", "prometheus.io/port": str(api.port),
                                               "prometheus.io/path": "/metrics"})
        service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": labels},
                   "spec": {"type": api.service.type, "selector": labels,
                            "ports": [{"name": "http", "port": api.service.port, "targetPort": "http"}]}}
        return [self.deployment(name, labels, api.replicas, pod), service, self.pdb(name, labels, api.pdb)]

    def api_secrets_name(self) -> str:
        secrets = self.v.api_secrets
        if secrets.existing_secret:
            return secrets.existing_secret
        if secrets.create:
            return f"{self.release}-api-secrets"
        # `sluice api` refuses to listen on the pod's address without an admin token; a chart that
        # rendered anyway would make API pods that never start.
        raise RenderError("the API needs an admin token and a client-key secret: set apiSecrets.existingSecret "
                          f"(a Secret with keys {secrets.admin_token_key!r} and {secrets.key_secret_key!r}) "
                          "or apiSecrets.create with apiSecrets.adminToken and apiSecrets.keySecret")

    def api_secret(self) -> dict[str, Any]:
        secrets = self.v.api_secrets
        for field, value in (("adminToken", secrets.admin_token), ("keySecret", secrets.key_secret)):
            if len(value) < MIN_SECRET_CHARS:  # the API would refuse it at start-up
                raise RenderError(f"apiSecrets.{field} must be at least {MIN_SECRET_CHARS} characters")
        return {"apiVersion": "v1", "kind": "Secret", "metadata": self.meta(f"{self.release}-api-secrets", "secrets"),
                "type": "Opaque", "stringData": {secrets.admin_token_key: secrets.admin_token,
                                                 secrets.key_secret_key: secrets.key_secret}}

    def api_secrets_volume(self) -> dict[str, Any]:
        secrets = self.v.api_secrets
        # 0440 with the pod's fsGroup: readable by the Sluice user's group only.
        return {"name": "api-secrets", "secret": {
            "secretName": self.api_secrets_name(), "defaultMode": 0o440,
            "items": [{"key": secrets.admin_token_key, "path": ADMIN_TOKEN_FILE},
                      {"key": secrets.key_secret_key, "path": KEY_SECRET_FILE}]}}

    def data_volume(self) -> dict[str, Any]:
        if self.v.batcher.enabled:
            claim = self.v.batcher.persistence.existing_claim or f"{self.release}-data"
            return {"name": "data", "persistentVolumeClaim": {"claimName": claim}}
        return {"name": "data", "emptyDir": {}}

    def worker(self, account: str, slug: str) -> list[dict[str, Any]]:
        workers, keda = self.v.workers, self.v.keda
        override = workers.per_account.get(account, AccountOverride())
        name = f"{self.release}-worker-{slug}"
        labels = self.labels("worker", slug)
        resources = override.resources if override.resources is not None else workers.resources
        container = self.container("worker", ["worker", "--account", account, "--host", "0.0.0.0",
                                              "--health-port", str(workers.health_port)], resources)
        container["ports"] = [{"name": "health", "containerPort": workers.health_port}]
        container["livenessProbe"] = {"httpGet": {"path": "/healthz", "port": "health"}, "periodSeconds": 10,
                                      "timeoutSeconds": 2, "failureThreshold": 3}
        container["readinessProbe"] = {"httpGet": {"path": "/readyz", "port": "health"}, "periodSeconds": 5,
                                       "timeoutSeconds": 2, "failureThreshold": 2}
        grace = workers.termination_grace_period_seconds
        pod = self.pod(labels, container, self.grace if grace is None else grace)
        replicas = None if keda.enabled else (override.replicas if override.replicas is not None
                                              else workers.replicas)
        out = [self.deployment(name, labels, replicas, pod), self.pdb(name, labels, workers.pdb)]
        if keda.enabled:
            out.append({
                "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": name, "labels": labels},
                "spec": {
                    "scaleTargetRef": {"name": name},
                    "minReplicaCount": keda.min_replicas if override.min_replicas is None else override.min_replicas,
                    "maxReplicaCount": keda.max_replicas if override.max_replicas is None else override.max_replicas,
                    "pollingInterval": keda.polling_interval,
                    "cooldownPeriod": keda.cooldown_period,
                    "triggers": [{"type": "prometheus", "metadata": {
                        "serverAddress": keda.prometheus.server_address,
                        "query": keda.query.replace("{account}", account),
                        "threshold": str(keda.target_per_replica),
                    }}],
                },
            })
        return out

    def batcher(self) -> list[dict[str, Any]]:
        batcher, name = self.v.batcher, f"{self.release}-batcher"
        labels = self.labels("batcher")
        container = self.container("batcher", ["batcher"], batcher.resources)
        container["volumeMounts"].append({"name": "data", "mountPath": self.data_dir})
        pod = self.pod(labels, container, self.grace, [self.data_volume()])
        out = [self.deployment(name, labels, batcher.replicas, pod)]
        persistence = batcher.persistence
        if not persistence.existing_claim:
            # The API writes uploads and the batcher writes results into the same store, from
            # different pods: the claim must be ReadWriteMany.
            spec: dict[str, Any] = {"accessModes": ["ReadWriteMany"],
                                    "resources": {"requests": {"storage": persistence.size}}}
            if persistence.storage_class:
                spec["storageClassName"] = persistence.storage_class
            out.insert(0, {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                           "metadata": self.meta(f"{self.release}-data", "data"), "spec": spec})
        return out
