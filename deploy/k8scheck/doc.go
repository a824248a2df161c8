// Package k8scheck checks logdist's Kubernetes manifests
// (deploy/kubernetes) and Helm chart (deploy/helm/logdist) without a
// cluster.
//
// Its tests run helm lint and helm template (helm v4, built from its module
// with go install once per run, so nothing is installed by hand), split the
// rendered output and the plain manifests into objects, and decode each
// strictly into its type from k8s.io/api by apiVersion and kind: an unknown
// or misspelled field, or a kind the package does not know, fails. Then
// Check holds each set of objects to what logdist needs: Services and the
// PodDisruptionBudget select the Deployment's pods, their ports and the
// probes name container ports that the flags make logdist listen on, the
// termination grace period covers the preStop sleep and the drain, the
// config file mounted from the ConfigMap has analyzers, and the files the
// flags name are mounted. logdist --check-config (built from this
// repository) checks each config file with the Deployment's flags, and
// yamllint checks the YAML.
//
// It is a module of its own so that the main module does not depend on
// k8s.io/api; make deploy-check (and make test) runs it.
package k8scheck
