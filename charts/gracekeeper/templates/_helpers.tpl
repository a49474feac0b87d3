{{/* Chart name, overridable. */}}
{{- define "gracekeeper.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: the release name when it already contains the chart name. */}}
{{- define "gracekeeper.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "gracekeeper.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "gracekeeper.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "gracekeeper.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gracekeeper.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The ServiceAccount the pods run as: the chart's own, or one named by serviceAccount.name. */}}
{{- define "gracekeeper.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "gracekeeper.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the serving certificate (both modes). */}}
{{- define "gracekeeper.tlsSecret" -}}
{{- printf "%s-tls" (include "gracekeeper.fullname" .) -}}
{{- end -}}

{{/* Name of both webhook configurations (they are different kinds). */}}
{{- define "gracekeeper.webhookConfig" -}}
{{- include "gracekeeper.fullname" . -}}
{{- end -}}

{{- define "gracekeeper.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Annotation that makes cert-manager's cainjector write the caBundle. */}}
{{- define "gracekeeper.injectCA" -}}
{{- if eq .Values.certificates.mode "certManager" }}
  annotations:
    cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/{{ include "gracekeeper.fullname" . }}-serving
{{- end }}
{{- end -}}

{{/* namespaceSelector shared by every webhook: docs/design.md "Webhook registration". */}}
{{- define "gracekeeper.namespaceSelector" -}}
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values:
        {{- range (append .Values.webhook.excludeNamespaces .Release.Namespace | uniq) }}
        - {{ . | quote }}
        {{- end }}
    - key: {{ .Values.webhook.ignoreLabel | quote }}
      operator: NotIn
      values: ["true"]
{{- end -}}

{{- define "gracekeeper.clientConfig" -}}
clientConfig:
  service:
    name: {{ include "gracekeeper.fullname" .root }}
    namespace: {{ .root.Release.Namespace }}
    path: {{ .path }}
    port: {{ .root.Values.service.port }}
{{- end -}}
