// Package clientscheme builds the runtime.Scheme gracekeeper's clients and
// decoders use: Kubernetes' built-in types and LifecyclePolicy, plus any
// other group a caller names. A fresh scheme per call: no package-level
// registration.
package clientscheme

import (
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// New is a scheme with client-go's types, LifecyclePolicy and extra.
func New(extra ...func(*runtime.Scheme) error) (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range append([]func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme}, extra...) {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}
