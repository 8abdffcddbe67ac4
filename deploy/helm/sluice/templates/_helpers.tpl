{{/*
Thin templates: every rule here mirrors shared/k8s.py (`sluice k8s render`), which renders the same
objects without helm and is what the tests validate. Change both together.
*/}}

{{/* The sluice.yaml the pods read: configFile verbatim, else the config mapping as YAML. */}}
{{- define "sluice.configText" -}}
{{- if not (or .Values.configFile .Values.config) -}}
{{- fail "no Sluice config: set configFile (--set-file configFile=sluice.yaml) or config" -}}
{{- else if .Values.configFile -}}
{{ .Values.configFile }}
{{- else -}}
{{ toYaml .Values.config }}
{{- end -}}
{{- end -}}

{{- define "sluice.config" -}}
{{- include "sluice.configText" . | fromYaml | toJson -}}
{{- end -}}

{{/* dict root, component[, account] */}}
{{- define "sluice.labels" -}}
app.kubernetes.io/name: sluice
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- with .account }}
sluice/account: {{ . }}
{{- end }}
{{- end -}}

{{/* Seconds a SIGTERMed pod gets: drainSeconds, else queue.drain_seconds, else 30; plus the margin. */}}
{{- define "sluice.grace" -}}
{{- $config := include "sluice.config" . | fromJson -}}
{{- $drain := .Values.drainSeconds -}}
{{- if kindIs "invalid" $drain -}}
{{- $drain = dig "queue" "drain_seconds" 30 $config -}}
{{- end -}}
{{- add (ceil $drain) .Values.gracePeriodMarginSeconds -}}
{{- end -}}

{{- define "sluice.dataDir" -}}
{{- $config := include "sluice.config" . | fromJson -}}
{{- $dir := dig "batches" "data_dir" "./sluice-data" $config -}}
{{- if not (hasPrefix "/" $dir) -}}
{{- fail (printf "batches.data_dir must be an absolute path in a pod, not %q" $dir) -}}
{{- end -}}
{{- $dir -}}
{{- end -}}

{{- define "sluice.secretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{ .Values.secrets.existingSecret }}
{{- else if .Values.secrets.create -}}
{{ .Release.Name }}-secrets
{{- end -}}
{{- end -}}

{{/* The API's admin token and key secret (shared/k8s.py: api_secrets_name). */}}
{{- define "sluice.apiSecretName" -}}
{{- if .Values.apiSecrets.existingSecret -}}
{{ .Values.apiSecrets.existingSecret }}
{{- else if .Values.apiSecrets.create -}}
{{ .Release.Name }}-api-secrets
{{- else -}}
{{- fail (printf "the API needs an admin token and a client-key secret: set apiSecrets.existingSecret (a Secret with keys %q and %q) or apiSecrets.create with apiSecrets.adminToken and apiSecrets.keySecret" .Values.apiSecrets.adminTokenKey .Values.apiSecrets.keySecretKey) -}}
{{- end -}}
{{- end -}}

{{- define "sluice.env" -}}
{{- if .Values.redis.urlSecret.name }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.urlSecret.name }}
      key: {{ .Values.redis.urlSecret.key }}
{{- else if .Values.redis.url }}
- name: REDIS_URL
  value: {{ .Values.redis.url | quote }}
{{- else if .Values.redis.enabled }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Release.Name }}-redis
      key: redis-password
- name: REDIS_URL
  value: "redis://:$(REDIS_PASSWORD)@{{ .Release.Name }}-redis-master:6379/0"
{{- else }}
{{- fail "no Redis: set redis.url, redis.urlSecret or redis.enabled" }}
{{- end }}
- name: SLUICE_CONFIG
  value: /etc/sluice/sluice.yaml
{{- end -}}

{{/* dict root, name, args (list), resources[, data (mount path of the file store)][, apiSecrets (true: the
API's secret files)] */}}
{{- define "sluice.container" -}}
{{- $root := .root -}}
name: {{ .name }}
image: "{{ $root.Values.image.repository }}:{{ $root.Values.image.tag }}"
imagePullPolicy: {{ $root.Values.image.pullPolicy }}
command: [sluice]
args:
  {{- toYaml (concat .args (list "--redis-url" "$(REDIS_URL)")) | nindent 2 }}
env:
  {{- include "sluice.env" $root | trim | nindent 2 }}
  {{- if .apiSecrets }}
  - name: SLUICE_ADMIN_TOKEN_FILE
    value: /etc/sluice-secrets/admin-token
  - name: SLUICE_KEY_SECRET_FILE
    value: /etc/sluice-secrets/key-secret
  {{- end }}
  {{- with $root.Values.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with (include "sluice.secretName" $root) }}
envFrom:
  - secretRef:
      name: {{ . }}
{{- end }}
volumeMounts:
  - {name: config, mountPath: /etc/sluice, readOnly: true}
  - {name: tmp, mountPath: /tmp}
{{- with $root.Values.extraVolumeMounts }}
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .data }}
  - {name: data, mountPath: {{ . }}}
{{- end }}
{{- if .apiSecrets }}
  - {name: api-secrets, mountPath: /etc/sluice-secrets, readOnly: true}
{{- end }}
resources:
  {{- toYaml .resources | nindent 2 }}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities: {drop: [ALL]}
{{- end -}}

{{- define "sluice.volumes" -}}
- name: config
  configMap: {name: {{ .Release.Name }}-config}
- name: tmp
  emptyDir: {}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* 0440 with the pod's fsGroup: readable by the Sluice user's group only. */}}
{{- define "sluice.apiSecretsVolume" -}}
- name: api-secrets
  secret:
    secretName: {{ include "sluice.apiSecretName" . }}
    defaultMode: 288
    items:
      - {key: {{ .Values.apiSecrets.adminTokenKey }}, path: admin-token}
      - {key: {{ .Values.apiSecrets.keySecretKey }}, path: key-secret}
{{- end -}}

{{- define "sluice.dataVolume" -}}
- name: data
{{- if .Values.batcher.enabled }}
  persistentVolumeClaim:
    claimName: {{ .Values.batcher.persistence.existingClaim | default (printf "%s-data" .Release.Name) }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- end -}}

{{/* A replacement must be ready before an old pod goes: capacity never dips during a rollout. */}}
{{- define "sluice.strategy" -}}
strategy:
  type: RollingUpdate
  rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
{{- end -}}
