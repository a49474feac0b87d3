package webhook

import (
	"context"

	"github.com/gracekeeper/gracekeeper/policies"
)

// Source is what the handlers need from the cluster: the current compiled
// policy set and a namespace's labels. PolicyStore implements it from an
// informer cache; tests use StaticSource, so the handlers need no manager.
type Source interface {
	// Set is the current policy set; nil means "not synced yet": /readyz
	// fails and the admission handlers answer HTTP 503, so the API server
	// applies the webhook's failurePolicy.
	Set() *policies.Set
	// Namespace returns the namespace's name and labels.
	Namespace(ctx context.Context, name string) (policies.Namespace, error)
}

// StaticSource is a fixed Source: one set and a map of namespace labels.
// A namespace missing from the map has no labels.
type StaticSource struct {
	Policies   *policies.Set
	Namespaces map[string]map[string]string
}

// Set returns the fixed set.
func (s StaticSource) Set() *policies.Set { return s.Policies }

// Namespace returns the labels from the map.
func (s StaticSource) Namespace(_ context.Context, name string) (policies.Namespace, error) {
	return policies.Namespace{Name: name, Labels: s.Namespaces[name]}, nil
}
