{{/* The chart's name, or nameOverride. */}}
{{- define "logdist.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The objects' base name: the release's name, with the chart's appended
unless it already holds it; fullnameOverride wins.
*/}}
{{- define "logdist.fullname" -}}
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

{{/* Labels on every object. */}}
{{- define "logdist.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "logdist.selectorLabels" . }}
app.kubernetes.io/version: {{ include "logdist.tag" . | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The labels Services, the PodDisruptionBudget and the spread select pods by. */}}
{{- define "logdist.selectorLabels" -}}
app.kubernetes.io/name: {{ include "logdist.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "logdist.tag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/* The Secrets' names: an existing one, or the chart's own. */}}
{{- define "logdist.tlsSecret" -}}
{{- default (printf "%s-tls" (include "logdist.fullname" .)) .Values.tls.existingSecret }}
{{- end }}
{{- define "logdist.upstreamTLSSecret" -}}
{{- default (printf "%s-upstream-tls" (include "logdist.fullname" .)) .Values.upstreamTLS.existingSecret }}
{{- end }}
{{- define "logdist.authSecret" -}}
{{- default (printf "%s-auth" (include "logdist.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{/*
logdist.yaml: .Values.config with the analyzers. The settings the chart
derives from other values (ports, files, the drain) are flags, which win
over the file; naming them in config would be silently overridden, so it
is refused.
*/}}
{{- define "logdist.configFile" -}}
{{- $reserved := list "listen" "tls-listen" "tls-cert" "tls-key" "tls-client-ca" "upstream-tls-ca" "upstream-tls-cert" "upstream-tls-key" "auth" "auth-file" "admin" "syslog-udp" "syslog-tcp" "drain-timeout" "analyzers" "config" }}
{{- range $k, $_ := .Values.config }}
{{- if has $k $reserved }}
{{- fail (printf "config.%s: the chart sets %s itself (analyzers: the analyzers value; ports: service.*, syslog.*; files: tls, upstreamTLS, auth; drain-timeout: drain.timeoutSeconds)" $k $k) }}
{{- end }}
{{- end }}
{{- if not (has .Values.configReload (list "watch" "rollout")) }}
{{- fail (printf "configReload: watch or rollout, not %q" (toString .Values.configReload)) }}
{{- end }}
{{- if not .Values.analyzers }}
{{- fail "analyzers: at least one analyzer ({name, addr, weight}) is needed" }}
{{- end }}
{{- range $i, $a := .Values.analyzers }}
{{- if or (not (kindIs "map" $a)) (not $a.addr) }}
{{- fail (printf "analyzers[%d]: an analyzer is a map with at least addr (and name, weight, tls)" $i) }}
{{- end }}
{{- end }}
{{- $file := deepCopy (.Values.config | default dict) }}
{{- $_ := set $file "analyzers" .Values.analyzers }}
{{- toYaml $file }}
{{- end }}

{{/* The files the Secrets hold (for the checksum of those logdist rereads on SIGHUP only). */}}
{{- define "logdist.authFile" -}}
{{- toYaml .Values.auth.file }}
{{- end }}
