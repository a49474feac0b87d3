// Package e2e holds the end-to-end suite (build tag e2e): it runs against
// whatever cluster KUBECONFIG names, with gracekeeper installed by the chart,
// and checks what only a real kubelet can show. `make e2e-kind` creates a
// kind cluster for it (needs Docker); `make e2e-local` runs it on a real node
// here. See docs/install.md.
package e2e
