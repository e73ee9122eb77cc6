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
A value as TOML (inline tables and arrays): numbers without a fraction stay integers (Helm reads
every YAML number as a float), strings and booleans through toJson (valid TOML for both).
*/}}
{{- define "nlds.tomlValue" -}}
{{- if kindIs "map" . -}}
{ {{- $first := true -}}{{- range $k, $v := . -}}{{- if not $first }}, {{ end -}}{{- $first = false -}}{{ $k }} = {{ include "nlds.tomlValue" $v }}{{- end -}} }
{{- else if kindIs "slice" . -}}
[{{- range $i, $v := . -}}{{- if $i }}, {{ end -}}{{ include "nlds.tomlValue" $v }}{{- end -}}]
{{- else if kindIs "float64" . -}}
{{- if eq (floor .) . -}}{{ . | int64 }}{{- else -}}{{ . }}{{- end -}}
{{- else -}}
{{ . | toJson }}
{{- end -}}
{{- end -}}
