{{/*
Chart name, truncated to 63 characters (the DNS label limit of object names).
*/}}
{{- define "wsring.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name, the prefix of every object: "<release>-wsring", or just the
release name when it already contains the chart name ("wsring" -> "wsring").
*/}}
{{- define "wsring.fullname" -}}
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
"name-version" of the chart, for the helm.sh/chart label.
*/}}
{{- define "wsring.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels shared by every object of the release. Call with (dict "ctx" $ "component" "operator").
*/}}
{{- define "wsring.labels" -}}
helm.sh/chart: {{ include "wsring.chart" .ctx }}
{{ include "wsring.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: wsring
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels (immutable in a Deployment: never add to them). Call with
(dict "ctx" $ "component" "operator"). The operator's pods use component
"operator", so they never match the selectors of WebSocketCluster objects
(component "pod"/"router", managed-by wsring-operator).
*/}}
{{- define "wsring.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wsring.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Name of the operator's ServiceAccount.
*/}}
{{- define "wsring.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "wsring.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image reference from an image block {repository, tag, digest}: the digest wins,
then the tag, then the chart's appVersion. Call with (dict "image" .Values.x.image "ctx" $).
*/}}
{{- define "wsring.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) }}
{{- end }}
{{- end }}

{{/*
Whether leader election is on: the explicit value, else on when replicaCount > 1.
Renders "true" or "false".
*/}}
{{- define "wsring.leaderElection" -}}
{{- $le := .Values.operator.leaderElection.enabled }}
{{- if kindIs "bool" $le }}
{{- $le }}
{{- else }}
{{- gt (int .Values.operator.replicaCount) 1 }}
{{- end }}
{{- end }}

{{/*
Name of the demo WebSocketCluster. Its router Service has this name (docs/interfaces.md).
*/}}
{{- define "wsring.demoName" -}}
{{- /* 40 characters at most: the operator derives longer names from it ("NAME-router-admin", pod and revision names) that must stay within 63. */}}
{{- default (printf "%s-demo" (include "wsring.fullname" .)) .Values.demo.name | trunc 40 | trimSuffix "-" }}
{{- end }}

{{/*
Name of the quick-start Redis Deployment and Service.
*/}}
{{- define "wsring.redisName" -}}
{{- printf "%s-redis" (include "wsring.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Security context of the chart's auxiliary containers (test probe, Redis): the
restricted Pod Security Standard.
*/}}
{{- define "wsring.restrictedContainerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end }}
