package audit

import (
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gracekeeper/gracekeeper/policies"
)

// kind is one audited kind: its name as check prints it, its apiVersion,
// and how to make an empty object and list of it.
type kind struct {
	name, apiVersion string
	obj              func() client.Object
	list             func() client.ObjectList
}

// kinds are pods, then the workload kinds of policies.Kinds (what the
// validating webhook judges), in its order: adding a kind there adds it here.
func kinds() []kind {
	out := []kind{{"Pod", "v1", func() client.Object { return &corev1.Pod{} }, func() client.ObjectList { return &corev1.PodList{} }}}
	for _, k := range policies.Kinds() {
		out = append(out, kind{
			name: k.GVK.Kind, apiVersion: k.GVK.GroupVersion().String(),
			obj:  func() client.Object { return k.New().(client.Object) },
			list: func() client.ObjectList { return k.NewList().(client.ObjectList) },
		})
	}
	return out
}
