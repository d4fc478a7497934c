{{/* Chart name, overridable. */}}
{{- define "stoker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects: the release name, prefixed by the chart name unless it
already contains it. Truncated to 63 characters (DNS label). */}}
{{- define "stoker.fullname" -}}
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

{{- define "stoker.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "stoker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stoker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "stoker.labels" -}}
helm.sh/chart: {{ include "stoker.chart" . }}
{{ include "stoker.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: stoker
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "stoker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "stoker.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "stoker.leaseName" -}}
{{- default (include "stoker.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "stoker.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The rules the operator needs on Stoker's resources and the pods and events it writes, in
whichever namespaces it serves: exactly the calls it makes (stoker.kube.api), nothing more. */}}
{{- define "stoker.workloadRules" -}}
# BackgroundJobs: RecurringJobs create them; TTL, onExhausted: Delete and concurrencyPolicy:
# Replace delete them. Kopf only watches (event handlers write nothing to the objects).
- apiGroups: ["stoker.dev"]
  resources: ["backgroundjobs"]
  verbs: ["list", "watch", "create", "delete"]
- apiGroups: ["stoker.dev"]
  resources: ["recurringjobs", "jobqueues"]
  verbs: ["list", "watch"]
# Everything the operator writes to an object goes to .status, by merge patch.
- apiGroups: ["stoker.dev"]
  resources: ["backgroundjobs/status", "recurringjobs/status", "jobqueues/status"]
  verbs: ["patch"]
# One pod per attempt, read back when it already exists (a restarted operator adopts it).
# Delete: only the pod of an attempt that did not start within its start deadline
# (Unschedulable, StartTimeout), so that it cannot start late beside the next attempt; a
# job's pods otherwise go with it by garbage collection (owner references).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "create", "delete"]
# Events on jobs (core API; kopf posts its warnings there too).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/* What people need on Stoker's resources: aggregated into the built-in view, edit and
admin ClusterRoles, as built-in kinds are. */}}
{{- define "stoker.userResources" -}}
["backgroundjobs", "recurringjobs", "jobqueues"]
{{- end }}
