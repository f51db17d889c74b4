{{/* The release's full name: the release name, with the chart's unless it already holds it. */}}
{{- define "sekisho.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sekisho.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sekisho.labels" -}}
{{ include "sekisho.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "sekisho.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "sekisho.fullname" .) -}}
{{- end -}}

{{/*
The configuration file: values.config with the listen addresses of the
enabled modes, admin.listen on the admin port, and kube.resources from
kubeRoutes.
*/}}
{{- define "sekisho.config" -}}
{{- $c := deepCopy (.Values.config | default dict) -}}
{{- $admin := get $c "admin" | default dict -}}
{{- $_ := set $admin "listen" (printf ":%v" .Values.admin.port) -}}
{{- $_ := set $c "admin" $admin -}}
{{- /* The decision service runs beside the gateway's listener, which sekisho always opens. */ -}}
{{- if or .Values.gateway.enabled .Values.decision.enabled -}}
{{- $listen := get $c "listen" | default dict -}}
{{- if not (or (hasKey $listen "http") (hasKey $listen "https")) -}}
{{- $_ := set $listen "http" (printf ":%v" .Values.gateway.port) -}}
{{- end -}}
{{- $_ := set $c "listen" $listen -}}
{{- end -}}
{{- if .Values.decision.enabled -}}
{{- $d := get $c "decision" | default dict -}}
{{- if not (hasKey $d "listen") -}}
{{- $_ := set $d "listen" (printf ":%v" .Values.decision.httpPort) -}}
{{- end -}}
{{- if not (hasKey $d "grpc") -}}
{{- $_ := set $d "grpc" (printf ":%v" .Values.decision.grpcPort) -}}
{{- end -}}
{{- $_ := set $c "decision" $d -}}
{{- end -}}
{{- if or .Values.webhook.enabled .Values.kubeRoutes.enabled -}}
{{- $k := get $c "kube" | default dict -}}
{{- if .Values.webhook.enabled -}}
{{- $w := get $k "webhook" | default dict -}}
{{- if not (hasKey $w "listen") -}}
{{- $_ := set $w "listen" (printf ":%v" .Values.webhook.port) -}}
{{- end -}}
{{- if not (hasKey $w "tls") -}}
{{- $_ := set $w "tls" (dict "cert_file" "/etc/sekisho/webhook-tls/tls.crt" "key_file" "/etc/sekisho/webhook-tls/tls.key" "client_ca_file" "/etc/sekisho/webhook-tls/ca.crt") -}}
{{- end -}}
{{- $_ := set $k "webhook" $w -}}
{{- end -}}
{{- if .Values.kubeRoutes.enabled -}}
{{- $r := dict "namespaces" .Values.kubeRoutes.namespaces "allow_urls" .Values.kubeRoutes.allowURLs "shared_hosts" .Values.kubeRoutes.sharedHosts "cluster_domain" .Values.kubeRoutes.clusterDomain "leader_election" (dict "name" (include "sekisho.fullname" .)) -}}
{{- if .Values.kubeRoutes.namespaceSelector -}}
{{- $_ := set $r "namespace_selector" .Values.kubeRoutes.namespaceSelector -}}
{{- end -}}
{{- $_ := set $k "resources" $r -}}
{{- end -}}
{{- $_ := set $c "kube" $k -}}
{{- end -}}
{{- toYaml $c -}}
{{- end -}}

{{/*
The Secrets the process reads, as NAMESPACE/NAME, comma-separated and
sorted: every sekisho+k8s:// reference in values.config, and values.secrets.
*/}}
{{- define "sekisho.secrets" -}}
{{- $out := list -}}
{{- range regexFindAll "sekisho\\+k8s://[a-z0-9.-]+/[a-z0-9.-]+/" (toYaml .Values.config) -1 -}}
{{- $parts := splitList "/" (trimPrefix "sekisho+k8s://" .) -}}
{{- $out = append $out (printf "%s/%s" (index $parts 0) (index $parts 1)) -}}
{{- end -}}
{{- range $.Values.secrets -}}
{{- $out = append $out (printf "%s/%s" (.namespace | default $.Release.Namespace) .name) -}}
{{- end -}}
{{- $out | uniq | sortAlpha | join "," -}}
{{- end -}}
