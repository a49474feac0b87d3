// Package finalizer is the controller that keeps the promise a gracekeeper
// finalizer makes: it does the finalizer's work and removes it, so pods never
// stay Terminating and external resources never leak.
//
// The finalizers gracekeeper owns on a pod are exactly
// gracekeeper.dev/termination-record plus the Finalizer of each
// policies.CleanupRecord in the pod's gracekeeper.dev/cleanup annotation; no
// other finalizer is ever touched. That annotation only names the policy a
// cleanup came from: what to call is read from the current LifecyclePolicy
// (target.go), since pod authors can write annotations too. Two controllers
// share the pod informer: termination records, and cleanup POSTs on their own
// bounded workers. Every finalizer is removed in bounded time: a record the
// API server will not take as an Event is logged and counted instead
// (docs/finalizers.md states the bounds). All state lives in the pod object (its
// finalizers, deletionTimestamp and status) and in objects named after the
// pod's UID (the termination Event), so a restarted controller, or a second
// replica after a leader change, picks up where the first left off:
//
//   - the termination Event has a name derived from the pod UID, so a retried
//     create fails with AlreadyExists instead of doubling the record;
//   - the finalizer is removed by a JSON patch of metadata.finalizers alone,
//     guarded by a "test" op on the current list and the pod UID, so a patch
//     built from a stale read fails instead of dropping someone else's change;
//   - the cleanup POST carries an idempotency key (the pod UID): the same pod
//     may be posted twice after a restart.
//
// A third controller on the same informer records every container exit of a
// running pod (exits.go, exitcontroller.go): its Event is named after the
// exit's identity (pod UID, container, restart count), and what is done is
// kept in the pod's gracekeeper.dev/exits annotation, read from the API
// server before acting (docs/container-exits.md).
package finalizer
