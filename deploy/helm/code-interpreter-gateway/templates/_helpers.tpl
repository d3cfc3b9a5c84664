{{- define "cig.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cig.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cig.headless" -}}
{{- printf "%s-nodes" (include "cig.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cig.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cig.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cig.labels" -}}
{{ include "cig.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "cig.secretName" -}}
{{- default (include "cig.fullname" .) .Values.existingSecret -}}
{{- end -}}

{{- define "cig.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cig.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Several replicas are several nodes: they need the cluster's Redis and bucket. */}}
{{- define "cig.clustered" -}}
{{- if or (gt (int .Values.replicas) 1) .Values.cluster.registryUrl -}}true{{- end -}}
{{- end -}}

{{- define "cig.scheme" -}}
{{- if .Values.tls.secretName -}}HTTPS{{- else -}}HTTP{{- end -}}
{{- end -}}

{{/* A value from the chart's Secret, or an existing one; optional: a missing key is unset. */}}
{{- define "cig.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ include "cig.secretName" .root }}
      key: {{ .key }}
      optional: true
{{- end -}}
