"""The Helm chart's values (deploy/helm/sluice/values.yaml), typed, for `sluice k8s render`
(shared/k8s.py). Field names are the file's camelCase; the defaults are the file's (a test in
tests/deploy holds them equal)."""

from __future__ import annotations

from typing import Any

import msgspec

# The KEDA trigger: queued + in flight for one account, `max` over API pods (each reports the same
# Redis-wide figure; docs/kubernetes.md).
DEFAULT_QUERY = ('max(sum by (instance) (sluice_queue_depth{account="{account}"})) + '
                 'max(sluice_in_flight{account="{account}"})')
ADMIN_TOKEN_FILE = "admin-token"  # file names inside the API pods' secrets mount
KEY_SECRET_FILE = "key-secret"


class _Values(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    pass


class Image(_Values):
    repository: str = "sluice"
    tag: str = "0.1.0"
    pull_policy: str = "IfNotPresent"


class SecretRef(_Values):
    name: str = ""
    key: str = ""


class Secrets(_Values):
    existing_secret: str = ""
    create: bool = False
    values: dict[str, str] = msgspec.field(default_factory=dict)


class ApiSecrets(_Values):
    """The API's admin token and client-key HMAC secret: a Secret of the operator's, or one the
    chart makes from the two values (test clusters: the values end up in the release history)."""

    existing_secret: str = ""
    admin_token_key: str = ADMIN_TOKEN_FILE
    key_secret_key: str = KEY_SECRET_FILE
    create: bool = False
    admin_token: str = ""
    key_secret: str = ""

    def __repr__(self) -> str:  # never let a token reach a log line or traceback
        return f"ApiSecrets(existing_secret={self.existing_secret!r}, create={self.create!r})"


class RedisValues(_Values):
    url: str = "redis://redis:6379/0"
    url_secret: SecretRef = msgspec.field(default_factory=SecretRef)
    enabled: bool = False  # the Bitnami-style subchart (Chart.yaml dependency `redis`)


class Pdb(_Values):
    max_unavailable: int = 1


class Service(_Values):
    type: str = "ClusterIP"
    port: int = 80


class ApiValues(_Values):
    replicas: int = 2
    processes: int = 1
    port: int = 8080
    service: Service = msgspec.field(default_factory=Service)
    resources: dict[str, Any] = msgspec.field(default_factory=dict)
    pre_stop_sleep_seconds: int = 5
    termination_grace_period_seconds: int | None = None
    pdb: Pdb = msgspec.field(default_factory=Pdb)


class AccountOverride(_Values):
    replicas: int | None = None
    resources: dict[str, Any] | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None


class WorkerValues(_Values):
    replicas: int = 1
    health_port: int = 8081
    resources: dict[str, Any] = msgspec.field(default_factory=dict)
    termination_grace_period_seconds: int | None = None
    pdb: Pdb = msgspec.field(default_factory=Pdb)
    per_account: dict[str, AccountOverride] = msgspec.field(default_factory=dict)


class Prometheus(_Values):
    server_address: str = "http://prometheus-server.monitoring.svc:80"


class KedaValues(_Values):
    enabled: bool = False
    prometheus: Prometheus = msgspec.field(default_factory=Prometheus)
    query: str = DEFAULT_QUERY
    target_per_replica: int = 100
    min_replicas: int = 1
    max_replicas: int = 8
    polling_interval: int = 15
    cooldown_period: int = 300


class Persistence(_Values):
    existing_claim: str = ""
    storage_class: str = ""
    size: str = "10Gi"


class BatcherValues(_Values):
    enabled: bool = False
    replicas: int = 1
    resources: dict[str, Any] = msgspec.field(default_factory=dict)
    persistence: Persistence = msgspec.field(default_factory=Persistence)


class ChartValues(_Values):
    """deploy/helm/sluice/values.yaml, typed; its defaults are the file's (a test holds them equal)."""

    image: Image = msgspec.field(default_factory=Image)
    pod_security_context: dict[str, Any] = msgspec.field(default_factory=lambda: {
        "runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"}})
    extra_env: list[dict[str, Any]] = msgspec.field(default_factory=list)
    extra_volumes: list[dict[str, Any]] = msgspec.field(default_factory=list)
    extra_volume_mounts: list[dict[str, Any]] = msgspec.field(default_factory=list)
    config: dict[str, Any] = msgspec.field(default_factory=dict)
    config_file: str = ""
    secrets: Secrets = msgspec.field(default_factory=Secrets)
    api_secrets: ApiSecrets = msgspec.field(default_factory=ApiSecrets)
    redis: RedisValues = msgspec.field(default_factory=RedisValues)
    api: ApiValues = msgspec.field(default_factory=ApiValues)
    workers: WorkerValues = msgspec.field(default_factory=WorkerValues)
    drain_seconds: float | None = None
    grace_period_margin_seconds: int = 10
    keda: KedaValues = msgspec.field(default_factory=KedaValues)
    batcher: BatcherValues = msgspec.field(default_factory=BatcherValues)
