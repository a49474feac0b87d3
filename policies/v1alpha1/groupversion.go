// Package v1alpha1 holds the LifecyclePolicy API, group gracekeeper.dev.
//
// +kubebuilder:object:generate=true
// +groupName=gracekeeper.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the API group and version of LifecyclePolicy.
var GroupVersion = schema.GroupVersion{Group: "gracekeeper.dev", Version: "v1alpha1"}

// AddToScheme registers the API types. Callers pass their own scheme: there is
// no package-level registration in init().
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &LifecyclePolicy{}, &LifecyclePolicyList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
