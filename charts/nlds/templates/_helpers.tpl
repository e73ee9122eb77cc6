{{/*
Chart name.
*/}}
{{- define "nlds.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: release-chart, at most 63 characters.
*/}}
{{- define "nlds.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Name of one component's objects: (dict "root" $ "component" "server").
*/}}
{{- define "nlds.componentName" -}}
{{- printf "%s-%s" (include "nlds.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Chart label value.
*/}}
{{- define "nlds.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "nlds.labels" -}}
helm.sh/chart: {{ include "nlds.chart" . }}
{{ include "nlds.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: nlds
{{- end }}

{{/*
Selector labels (a component label is added per Deployment).
*/}}
{{- define "nlds.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nlds.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Container image reference.
*/}}
{{- define "nlds.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
ServiceAccount of the server and worker pods.
*/}}
{{- define "nlds.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "nlds.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Secret holding amqp-url, database-url, s3-secret-key and tokens.toml.
*/}}
{{- define "nlds.secretName" -}}
{{- default (include "nlds.fullname" .) .Values.existingSecret }}
{{- end }}

{{/*
Pod annotations that roll the pods when the configuration or the secret changes.
*/}}
{{- define "nlds.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if not .Values.existingSecret }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- end }}

{{/*
The tokens file.
*/}}
{{- define "nlds.tokensToml" -}}
# API bearer tokens (rendered from .Values.tokens).
{{- range .Values.tokens }}
[[token]]
token = {{ required "every entry of tokens needs a token" .token | toString | toJson }}
user = {{ required "every entry of tokens needs a user" .user | toString | toJson }}
groups = {{ default list .groups | toJson }}
{{- end }}
{{- end }}

{{/*
Environment common to the server and worker containers.
*/}}
{{- define "nlds.commonEnv" -}}
- name: RUST_LOG
  value: {{ .Values.logLevel | quote }}
- name: NLDS_AMQP_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "nlds.secretName" . }}
      key: amqp-url
{{- end }}

{{/*
A TOML key: bare when it can be, else quoted (tenancy names like "s3.example.org").
*/}}
{{- define "nlds.tomlKey" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ . | toJson }}{{- end -}}
{{- end -}}

{{/*
A value as TOML (inline tables and arrays): numbers without a fraction stay integers (Helm reads
every YAML number as a float), strings and booleans through toJson (valid TOML for both).
*/}}
{{- define "nlds.tomlValue" -}}
{{- if kindIs "map" . -}}
{ {{- $first := true -}}{{- range $k, $v := . -}}{{- if not $first }}, {{ end -}}{{- $first = false -}}{{ include "nlds.tomlKey" $k }} = {{ include "nlds.tomlValue" $v }}{{- end -}} }
{{- else if kindIs "slice" . -}}
[{{- range $i, $v := . -}}{{- if $i }}, {{ end -}}{{ include "nlds.tomlValue" $v }}{{- end -}}]
{{- else if kindIs "float64" . -}}
{{- if eq (floor .) . -}}{{ . | int64 }}{{- else -}}{{ . }}{{- end -}}
{{- else if kindIs "invalid" . -}}
{{- fail "a settings value is null: TOML has no null; leave the key out" -}}
{{- else -}}
{{ . | toJson }}
{{- end -}}
{{- end -}}

{{/*
A table as a TOML document: (dict "prefix" "workers" "table" $map). Its plain keys first, then each
sub-table under its own [header], recursively; arrays (of tables too) are written inline.
*/}}
{{- define "nlds.toml" -}}
{{- $prefix := .prefix -}}
{{- range $k, $v := .table }}
{{- if not (kindIs "map" $v) }}
{{ include "nlds.tomlKey" $k }} = {{ include "nlds.tomlValue" $v }}
{{- end }}
{{- end }}
{{- range $k, $v := .table }}
{{- if kindIs "map" $v }}
{{- $name := printf "%s%s" (ternary "" (printf "%s." $prefix) (eq $prefix "")) (include "nlds.tomlKey" $k) }}

[{{ $name }}]
{{- include "nlds.toml" (dict "prefix" $name "table" $v) }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
Merges the map .src into the map .dst in place, recursively: a key of src wins, a map in both is
merged (unlike sprig's merge, a false or 0 in src does win).
*/}}
{{- define "nlds.deepMerge" -}}
{{- $dst := .dst -}}
{{- range $k, $v := .src -}}
{{- if and (kindIs "map" $v) (hasKey $dst $k) (kindIs "map" (index $dst $k)) -}}
{{- include "nlds.deepMerge" (dict "dst" (index $dst $k) "src" $v) -}}
{{- else -}}
{{- $_ := set $dst $k (deepCopy $v) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Whether the server reads the OIDC client secret (and mounts `oidc-client-secret`): "true" or "".
*/}}
{{- define "nlds.oidcClientSecret" -}}
{{- if and (eq .Values.auth.kind "oidc") (or .Values.auth.clientSecret (and .Values.existingSecret .Values.auth.oidc.client_id)) -}}true{{- end -}}
{{- end -}}

{{/*
Whether the server reads the OIDC HMAC secret (`oidc-hmac-secret`): "true" or "".
*/}}
{{- define "nlds.oidcHmacSecret" -}}
{{- $hs := false -}}
{{- range (.Values.auth.oidc.algorithms | default list) }}{{ if hasPrefix "HS" . }}{{ $hs = true }}{{ end }}{{ end -}}
{{- if and (eq .Values.auth.kind "oidc") (or .Values.auth.hmacSecret (and .Values.existingSecret $hs)) -}}true{{- end -}}
{{- end -}}

{{/*
Whether the workers read the glacier bucket's secret key (`cold-secret-key`): "true" or "".
*/}}
{{- define "nlds.coldSecret" -}}
{{- if and (eq .Values.cold.backend "s3-glacier") (or .Values.cold.glacierSecretKey .Values.existingSecret) -}}true{{- end -}}
{{- end -}}

{{/*
Whether the monitor reads the SMTP password (`smtp-password`): "true" or "". The password is read
only with a relay and a login, so an existing Secret must hold it only then.
*/}}
{{- define "nlds.smtpPassword" -}}
{{- if or .Values.notify.smtpPassword (and .Values.existingSecret .Values.notify.smtpHost .Values.notify.smtpUser) -}}true{{- end -}}
{{- end -}}

{{/*
Whether the monitor reads the operators' webhook signing secret (`operator-webhook-secret`): "true" or "".
*/}}
{{- define "nlds.operatorWebhookSecret" -}}
{{- if or .Values.notify.operatorWebhookSecret (and .Values.existingSecret .Values.notify.operatorWebhook) -}}true{{- end -}}
{{- end -}}

{{/*
Whether the API servers and the monitor read the key users' webhook secrets are derived from
(`webhook-key`): "true" or "".
*/}}
{{- define "nlds.webhookKey" -}}
{{- if or .Values.notify.webhookKey (and .Values.existingSecret .Values.notify.webhookKeyInExistingSecret) -}}true{{- end -}}
{{- end -}}

{{/*
Whether a role runs: its `enabled` is not false.
*/}}
{{- define "nlds.roleEnabled" -}}
{{- if and .w (ne (toString .w.enabled) "false") -}}true{{- end -}}
{{- end -}}

{{/*
Checks across values that the schema cannot express; fails the rendering with what to change.
*/}}
{{- define "nlds.validate" -}}
{{- $root := . -}}
{{- range $role := list "archive-put" "archive-get" }}
{{- if and (include "nlds.roleEnabled" (dict "w" (index $root.Values.workers $role))) (not $root.Values.cold.backend) }}
{{- fail (printf "workers.%s is enabled but no cold tier is configured: set cold.backend (dir, xrootd or s3-glacier)" $role) }}
{{- end }}
{{- end }}
{{- if and (eq .Values.cold.backend "dir") (not .Values.cold.volumeMounts) }}
{{- if or (include "nlds.roleEnabled" (dict "w" (index .Values.workers "archive-put"))) (include "nlds.roleEnabled" (dict "w" (index .Values.workers "archive-get"))) }}
{{- fail "cold.backend is dir: mount a volume shared by the cold roles at cold.dir.root (cold.volumes, cold.volumeMounts)" }}
{{- end }}
{{- end }}
{{- /* A pod must outlive its shutdown: the grace, then up to 10 s to return what was abandoned. */}}
{{- $least := add (int .Values.bus.shutdownGraceSecs) 10 }}
{{- if lt (int .Values.server.terminationGracePeriodSeconds) $least }}
{{- fail (printf "server.terminationGracePeriodSeconds must be at least bus.shutdownGraceSecs + 10 (%d)" $least) }}
{{- end }}
{{- range $role, $w := .Values.workers }}
{{- $t := default $root.Values.workerDefaults.terminationGracePeriodSeconds $w.terminationGracePeriodSeconds }}
{{- if lt (int $t) $least }}
{{- fail (printf "the terminationGracePeriodSeconds of workers.%s must be at least bus.shutdownGraceSecs + 10 (%d)" $role $least) }}
{{- end }}
{{- end }}
{{- if and .Values.notify.smtpPassword (not .Values.notify.smtpUser) }}
{{- fail "notify.smtpPassword is set but notify.smtpUser is not: the relay's password goes with its login" }}
{{- end }}
{{- if and .Values.notify.operatorWebhookSecret (not .Values.notify.operatorWebhook) }}
{{- fail "notify.operatorWebhookSecret is set but notify.operatorWebhook is not: it signs that webhook's deliveries" }}
{{- end }}
{{- if and .Values.notify.webhookKey (lt (len (toString .Values.notify.webhookKey)) 32) }}
{{- fail "notify.webhookKey holds fewer than 32 bytes: make one with `openssl rand -hex 32`" }}
{{- end }}
{{- if .Values.keda.enabled }}
{{- if not .Values.keda.roles }}
{{- fail "keda.enabled is true but keda.roles names no role to scale" }}
{{- end }}
{{- range $role, $k := .Values.keda.roles }}
{{- if eq $role "monitor" }}
{{- fail "keda.roles.monitor: the monitor is a single writer and must not be scaled" }}
{{- end }}
{{- if not (include "nlds.roleEnabled" (dict "w" (index $root.Values.workers $role))) }}
{{- fail (printf "keda.roles.%s: the role is not enabled (workers.%s.enabled)" $role $role) }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}
