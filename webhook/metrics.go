package webhook

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gracekeeper/gracekeeper/internal/prom"
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
	w := prom.Subsystem("webhook")
	m := &metrics{
		latency: w.HistogramVec("request_duration_seconds",
			"Admission request latency by route and outcome (allowed, patched, denied, error).",
			// Admission must answer well inside the webhook timeout (seconds).
			[]float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
			"route", "outcome"),
		mutations: w.CounterVec("mutations_total", "Pods mutated, by applied policy.", "policy"),
		findings: w.CounterVec("findings_total",
			"Findings by policy, action (Deny, Warn, Audit) and reason.", "policy", "action", "reason"),
		overrides: w.CounterVec("overrides_total",
			"Pod annotations that asked to change what a policy does, by policy, kind (skip, shutdown-seconds, prestop-seconds) and outcome (honoured, refused).",
			"policy", "kind", "outcome"),
	}
	if err := prom.Register(reg, m.latency, m.mutations, m.findings, m.overrides); err != nil {
		return nil, err
	}
	return m, nil
}
