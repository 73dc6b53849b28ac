{{/* The objects' name (aws-node unless overridden). */}}
{{- define "vpccni.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "vpccni.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels (upstream's). */}}
{{- define "vpccni.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vpccni.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Every object's labels. */}}
{{- define "vpccni.labels" -}}
{{ include "vpccni.selectorLabels" . }}
k8s-app: aws-node
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "vpccni.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "vpccni.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* An image: `override` as is, else repository:tag (tag defaults to the appVersion). */}}
{{- define "vpccni.image" -}}
{{- $img := index . 0 -}}{{- $root := index . 1 -}}
{{- if $img.override -}}
{{- $img.override -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default $root.Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/* Whether a variable of .Values.env is "true" (Go's spellings). */}}
{{- define "vpccni.envTrue" -}}
{{- $v := index (index . 0).Values.env (index . 1) | default "" | toString | lower -}}
{{- if or (eq $v "true") (eq $v "1") (eq $v "t") -}}true{{- end -}}
{{- end -}}
