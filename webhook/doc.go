// Package webhook is gracekeeper's HTTPS admission server: gorilla/mux routes
// for the mutating and validating AdmissionReview v1 endpoints, health and
// Prometheus metrics; TLS from a cert dir hot-reloaded by controller-runtime's
// certwatcher; and PolicyStore, which keeps the compiled policy set current
// from an informer cache. The handlers are thin: decode, call package
// policies, respond. Everything that decides lives in policies.
//
// Routes: POST /mutate-pods (pods CREATE: JSON patch), /validate-pods (pods
// CREATE), /validate-workloads (Deployment, StatefulSet, DaemonSet,
// ReplicaSet, ReplicationController, Job, CronJob at CREATE/UPDATE: the pod
// template is mutated and validated as the pods will be); GET /healthz,
// /readyz (503 until the policy set is built and while draining), /metrics.
//
// A workload UPDATE is judged only when its pod template changed
// (policies.JudgeUpdate); scale, status, metadata changes and writes to an
// object being deleted always pass, because the Deployment and ReplicaSet
// controllers (pkg/controller/deployment, pkg/controller/replicaset), the
// garbage collector (pkg/controller/garbagecollector), namespace deletion
// (pkg/controller/namespace/deletion) and the HPA (through the scale
// subresource, never registered) make them, and refusing them stalls
// rollouts and deletions. The chart's matchConditions keep such UPDATEs
// from being sent at all.
//
// Load: bodies over MaxBodyBytes (7 MiB) get 413; bodies are read as they
// arrive, never preallocated from Content-Length; reading a request may
// take no longer than the webhook timeout (ReadTimeout); at most
// MaxInFlight requests (MaxLargeInFlight of them with bodies over 1 MiB)
// are read or reviewed at once, the next gets 429 with Retry-After at once.
//
// Answers: Deny findings refuse with code 403 and their messages; Warn
// findings become admission warnings; Audit findings become audit
// annotations keyed by the lower-cased reason (the API server prefixes the
// webhook name). Bad input gets allowed:false with code 400 (the uid echoed
// when readable), or HTTP 405/413/415 (429 when overloaded); an unsynced cache or a failed
// namespace read is an HTTP 5xx, so the webhook's failurePolicy decides.
//
// Metrics (on the Registerer given to NewServer):
// gracekeeper_webhook_request_duration_seconds{route,outcome},
// gracekeeper_webhook_mutations_total{policy},
// gracekeeper_webhook_findings_total{policy,action,reason}.
package webhook
