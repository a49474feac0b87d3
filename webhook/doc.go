// Package webhook is gracekeeper's HTTPS admission server: gorilla/mux routes
// for the mutating and validating AdmissionReview v1 endpoints, health and
// Prometheus metrics; TLS from a cert dir hot-reloaded by controller-runtime's
// certwatcher; and PolicyStore, which keeps the compiled policy set current
// from an informer cache. The handlers are thin: decode, call package
// policies, respond. Everything that decides lives in policies.
package webhook
