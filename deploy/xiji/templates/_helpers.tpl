{{/*
Names, labels and images shared by every template.
*/}}

{{/* The chart's name, or nameOverride. */}}
{{- define "xiji.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's base name for every object: fullnameOverride, else "<release>-<name>" (or just the
release name when it already contains the chart's name). Components append "-hub", "-proxy"...,
so it is cut at 50 characters to leave room within the 63 of a DNS label.
*/}}
{{- define "xiji.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<chart>-<version>" for the helm.sh/chart label. */}}
{{- define "xiji.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels that select this release's pods (never change them on upgrade). */}}
{{- define "xiji.selectorLabels" -}}
app.kubernetes.io/name: {{ include "xiji.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The labels every object of the release carries. */}}
{{- define "xiji.labels" -}}
helm.sh/chart: {{ include "xiji.chart" . }}
{{ include "xiji.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: xiji
{{- end }}

{{/*
Labels of one component: include "xiji.componentLabels" (dict "root" $ "component" "hub").
*/}}
{{- define "xiji.componentLabels" -}}
{{ include "xiji.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Selector labels of one component (same arguments as xiji.componentLabels). */}}
{{- define "xiji.componentSelectorLabels" -}}
{{ include "xiji.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
The labels of the pods that reach users' clusters (the hub and the proxy): the hub's
hub_pod_labels, which every cluster's NetworkPolicy lets in.
*/}}
{{- define "xiji.clusterAccessLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
xiji.org/cluster-access: "true"
{{- end }}

{{/* A map of strings as the inside of a TOML inline table: "a" = "b", "c" = "d". */}}
{{- define "xiji.tomlStringTable" -}}
{{- $pairs := list }}
{{- range $key, $value := . }}
{{- $pairs = append $pairs (printf "%s = %s" (toJson $key) (toJson (toString $value))) }}
{{- end }}
{{- join ", " $pairs }}
{{- end }}

{{/*
An image reference: include "xiji.image" (dict "root" $ "image" .Values.hub.image).
The registry is the image's own, else global.imageRegistry; the tag defaults to appVersion.
*/}}
{{- define "xiji.image" -}}
{{- $registry := .image.registry | default .root.Values.global.imageRegistry }}
{{- $tag := .image.tag | default .root.Chart.AppVersion | toString }}
{{- if $registry }}
{{- printf "%s/%s:%s" (trimSuffix "/" $registry) .image.repository $tag }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{/* imagePullSecrets of every pod of the chart. */}}
{{- define "xiji.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Object names. */}}
{{- define "xiji.hub.fullname" -}}{{ include "xiji.fullname" . }}-hub{{- end }}
{{- define "xiji.proxy.fullname" -}}{{ include "xiji.fullname" . }}-proxy{{- end }}
{{- define "xiji.proxyApi.fullname" -}}{{ include "xiji.fullname" . }}-proxy-api{{- end }}
{{- define "xiji.nodeAgent.fullname" -}}{{ include "xiji.fullname" . }}-node-agent{{- end }}
{{- define "xiji.postgresql.fullname" -}}{{ include "xiji.fullname" . }}-postgresql{{- end }}
{{- define "xiji.secret.fullname" -}}{{ include "xiji.fullname" . }}-secrets{{- end }}

{{/* The hub's ServiceAccount. */}}
{{- define "xiji.hub.serviceAccountName" -}}
{{- if .Values.hub.serviceAccount.create }}
{{- default (include "xiji.hub.fullname" .) .Values.hub.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.hub.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* In-cluster URLs: where pods and the proxy reach the hub, where the hub reaches the proxy's API. */}}
{{- define "xiji.hub.url" -}}
{{- printf "http://%s.%s.svc:%d" (include "xiji.hub.fullname" .) .Release.Namespace (int .Values.hub.port) }}
{{- end }}
{{- define "xiji.proxyApi.url" -}}
{{- printf "http://%s.%s.svc:%d" (include "xiji.proxyApi.fullname" .) .Release.Namespace (int .Values.proxy.apiPort) }}
{{- end }}

{{/* The URL users type: publicUrl, else the first ingress host. */}}
{{- define "xiji.publicUrl" -}}
{{- if .Values.publicUrl }}
{{- .Values.publicUrl }}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts }}
{{- $host := first .Values.ingress.hosts }}
{{- $tls := false }}
{{- range .Values.ingress.tls }}{{ if has $host .hosts }}{{ $tls = true }}{{ end }}{{ end }}
{{- printf "%s://%s/" (ternary "https" "http" $tls) $host }}
{{- end }}
{{- end }}

{{/*
The hub's database, as the name of a Secret and its key holding the URL, or nothing (SQLite
in the hub's data volume). Exactly one source may be given.
*/}}
{{- define "xiji.database.secretName" -}}
{{- $sources := 0 }}
{{- if .Values.postgresql.enabled }}{{ $sources = add1 $sources }}{{ end }}
{{- if .Values.database.url }}{{ $sources = add1 $sources }}{{ end }}
{{- if .Values.database.existingSecret }}{{ $sources = add1 $sources }}{{ end }}
{{- if gt $sources 1 }}
{{- fail "give one database: postgresql.enabled, database.url or database.existingSecret" }}
{{- end }}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecret }}
{{- else if or .Values.postgresql.enabled .Values.database.url }}
{{- include "xiji.secret.fullname" . }}
{{- end }}
{{- end }}
{{- define "xiji.database.secretKey" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecretKey }}
{{- else }}
{{- print "database-url" }}
{{- end }}
{{- end }}

{{/*
A secret value kept across upgrades: the value given, else the one the release's Secret already
holds (lookup answers nothing under `helm template`), else a new random one.
include "xiji.secretValue" (dict "root" $ "key" "proxy-token" "value" .Values.proxy.authToken)
*/}}
{{- define "xiji.secretValue" -}}
{{- if .value }}
{{- .value }}
{{- else }}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace (include "xiji.secret.fullname" .root) }}
{{- $data := dig "data" (dict) ($existing | default (dict)) }}
{{- if hasKey $data .key }}
{{- index $data .key | b64dec }}
{{- else }}
{{- randAlphaNum 40 }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A storage pool's volume in a pod spec (a list item): its claim, NFS export or node folder.
*/}}
{{- define "xiji.poolVolume" -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]{0,56}[a-z0-9])?$" (toString .name)) }}
{{- fail (printf "storagePools: name %q must be a DNS label (lower case letters, digits, '-'; at most 58)" (toString .name)) }}
{{- end }}
- name: pool-{{ .name }}
{{- if .claimName }}
  persistentVolumeClaim:
    claimName: {{ .claimName | quote }}
{{- else if .nfs }}
  nfs:
    server: {{ required (printf "storagePools %s: nfs.server is required" .name) .nfs.server | quote }}
    path: {{ required (printf "storagePools %s: nfs.path is required" .name) .nfs.path | quote }}
{{- else if .nodePath }}
  hostPath:
    path: {{ .nodePath | quote }}
    type: Directory
{{- else }}
{{- fail (printf "storagePools %s: give claimName, nfs (server and path) or nodePath" .name) }}
{{- end }}
{{- end }}
