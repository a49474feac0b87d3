// Package policies is gracekeeper's pure engine: from a pod (or a workload's
// pod template), its namespace and the compiled LifecyclePolicy set, it
// computes the mutated pod and the findings. It does no I/O: no HTTP, no
// client, no clock. The webhook, the `check` command and the tests all call
// the same functions, so what `gracekeeper check` prints is what admission does.
package policies

// Names gracekeeper reads and writes on pods. They are part of the public
// contract (DESIGN.md): keep them.
const (
	// AnnotationSkip opts a pod out where the policy has allowOptOut: "true".
	AnnotationSkip = "gracekeeper.dev/skip"
	// AnnotationPreStopSeconds declares what the pod's own exec/httpGet preStop takes.
	AnnotationPreStopSeconds = "gracekeeper.dev/prestop-seconds"
	// AnnotationShutdownSeconds overrides the policies' shutdownSeconds.
	AnnotationShutdownSeconds = "gracekeeper.dev/shutdown-seconds"
	// AnnotationPolicies records, comma-separated and sorted, the policies whose
	// mutation was applied.
	AnnotationPolicies = "gracekeeper.dev/policies"
	// AnnotationCleanup records, as JSON ([]CleanupRecord), the cleanup steps
	// the pod's finalizers stand for. Pod authors can write it too, so the
	// finalizer controller reads only which policy each finalizer came from;
	// the URL and timings come from that policy as it is now.
	AnnotationCleanup = "gracekeeper.dev/cleanup"

	// LabelFinalize is set to "true" next to any gracekeeper-owned finalizer,
	// so the finalizer controller's informer selects only those pods.
	LabelFinalize = "gracekeeper.dev/finalize"
)
