// Package crd embeds the generated LifecyclePolicy CRD, so that tools can
// validate policies offline exactly as the API server does.
package crd

import _ "embed"

//go:embed gracekeeper.dev_lifecyclepolicies.yaml
var lifecyclePolicy []byte

// LifecyclePolicy returns the CRD YAML (a copy: callers cannot change it).
func LifecyclePolicy() []byte {
	return append([]byte(nil), lifecyclePolicy...)
}
