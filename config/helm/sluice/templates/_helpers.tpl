{{/* Labels on every object of the chart. */}}
{{- define "sluice.labels" -}}
app.kubernetes.io/name: sluice
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Labels selecting the operator's pods. */}}
{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: sluice
app.kubernetes.io/component: operator
{{- end -}}

{{- define "sluice.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/*
  Rules on the namespaced objects `sluice run` reads and writes: granted cluster-wide by the
  ClusterRole, or with watchNamespaces by a Role in each watched namespace. Why each rule
  exists: config/rbac/cluster_role.yaml.
*/}}
{{- define "sluice.namespacedRules" -}}
- apiGroups: [contour.heptio.com]
  resources: [ingressroutes, tlscertificatedelegations]
  verbs: [get, list, watch]
- apiGroups: [contour.heptio.com]
  resources: [ingressroutes/status]
  verbs: [get, patch]
- apiGroups: [contour.heptio.com]
  resources: [ingressroutes]
  verbs: [patch]
- apiGroups: [traefik.io, traefik.containo.us]
  resources: [ingressroutes, ingressroutetcps, middlewares, traefikservices, serverstransports, tlsoptions, tlsstores]
  verbs: [get, list, watch]
- apiGroups: [sluice.dev]
  resources: [gateways]
  verbs: [get, list, watch]
- apiGroups: [sluice.dev]
  resources: [gateways/status]
  verbs: [get, patch]
- apiGroups: [sluice.dev]
  resources: [gateways/finalizers]
  verbs: [update]
- apiGroups: [""]
  resources: [endpoints, pods]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [services, configmaps, serviceaccounts, secrets]
  verbs: [get, list, watch, create, patch]
- apiGroups: [apps]
  resources: [daemonsets]
  verbs: [get, list, watch, create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}
