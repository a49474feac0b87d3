package policies

import (
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// UpdateVerdict says whether a workload UPDATE needs judging, and why not.
type UpdateVerdict struct {
	// Judge is true when the pod template changed: the new template is then
	// judged as at CREATE.
	Judge bool
	// Reason says why an UPDATE passes unjudged (empty when Judge is true).
	Reason string
}

// Reasons an UPDATE passes unjudged.
const (
	ReasonDeleting          = "object is being deleted"
	ReasonTemplateUnchanged = "pod template unchanged"
	ReasonNoTemplate        = "object has no pod template"
)

// JudgeUpdate decides whether a workload UPDATE from old to obj must be
// judged: only when the pod template changed. Everything else a workload
// UPDATE carries is written by controllers that gracekeeper must never block:
//
//   - spec.replicas: the Deployment controller scales ReplicaSets with plain
//     UPDATEs (pkg/controller/deployment/sync.go, scaleReplicaSet), and kubectl
//     scale and the HPA go through the scale subresource, which the chart
//     never registers (pkg/controller/podautoscaler/horizontal.go);
//   - metadata: the garbage collector adds and removes the foregroundDeletion
//     finalizer and rewrites ownerReferences when orphaning
//     (pkg/controller/garbagecollector/garbagecollector.go, patch.go), the
//     Deployment controller adopts ReplicaSets and writes revision
//     annotations, and users relabel;
//   - status, which the workload controllers write (also through the
//     status subresource, never registered either);
//   - anything on an object with a deletionTimestamp: the namespace
//     controller (pkg/controller/namespace/deletion) and the garbage
//     collector finish deletions with such writes, and refusing them would
//     strand the object.
//
// Templates are compared with apimachinery's semantic equality, so a nil and
// an empty slice or map are the same template (a client that sends
// "env: []" has not changed the pods). A missing old object (never sent by
// the API server on UPDATE) is judged, as a new template would be.
func JudgeUpdate(old, obj runtime.Object) UpdateVerdict {
	if m, ok := obj.(metav1.Object); ok && m.GetDeletionTimestamp() != nil {
		return UpdateVerdict{Reason: ReasonDeleting}
	}
	newT, _, newOK := TemplateOf(obj)
	if !newOK {
		// A ReplicationController without a template creates no pods.
		return UpdateVerdict{Reason: ReasonNoTemplate}
	}
	if old == nil {
		return UpdateVerdict{Judge: true}
	}
	oldT, _, oldOK := TemplateOf(old)
	if oldOK && equality.Semantic.DeepEqual(oldT, newT) {
		return UpdateVerdict{Reason: ReasonTemplateUnchanged}
	}
	return UpdateVerdict{Judge: true}
}
