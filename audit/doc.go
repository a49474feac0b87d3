// Package audit judges what already runs: the pods and workloads in a cluster,
// against the current LifecyclePolicies, with the same engine admission and
// `gracekeeper check` use (check.ReviewLive). It never writes to the objects
// it judges. It holds the read-only scan behind `gracekeeper audit`, and the
// background audit of `gracekeeper serve` (leader only) that keeps policy
// reports, LifecyclePolicy status counts, metrics and Events up to date.
package audit
