package webhook

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are registered on the Registerer passed to NewServer (never the
// global registry). Every label is bounded: route and outcome are fixed
// sets, policy names are bounded by the cluster's LifecyclePolicies, reason
// by policies.Reason.
type metrics struct {
	latency   *prometheus.HistogramVec // route, outcome
	mutations *prometheus.CounterVec   // policy
	findings  *prometheus.CounterVec   // policy, action, reason
	overrides *prometheus.CounterVec   // policy, kind, outcome
}

// Outcomes of one admission request.
const (
	outcomeAllowed = "allowed"
	outcomePatched = "patched"
	outcomeDenied  = "denied"
	outcomeError   = "error"
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "gracekeeper", Subsystem: "webhook", Name: "request_duration_seconds",
			Help: "Admission request latency by route and outcome (allowed, patched, denied, error).",
			// Admission must answer well inside the webhook timeout (seconds).
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"route", "outcome"}),
		mutations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "gracekeeper", Subsystem: "webhook", Name: "mutations_total",
			Help: "Pods mutated, by applied policy.",
		}, []string{"policy"}),
		findings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "gracekeeper", Subsystem: "webhook", Name: "findings_total",
			Help: "Findings by policy, action (Deny, Warn, Audit) and reason.",
		}, []string{"policy", "action", "reason"}),
		overrides: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "gracekeeper", Subsystem: "webhook", Name: "overrides_total",
			Help: "Pod annotations that asked to change what a policy does, by policy, kind (skip, shutdown-seconds, prestop-seconds) and outcome (honoured, refused).",
		}, []string{"policy", "kind", "outcome"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.latency, m.mutations, m.findings, m.overrides} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
