package audit

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gracekeeper/gracekeeper/internal/prom"
)

// metrics of the background audit. The policy label is bounded: policy
// names are set by admins, one per LifecyclePolicy; series of a deleted
// policy are removed.
type metrics struct {
	objects  *prometheus.GaugeVec   // policy, result
	writes   *prometheus.CounterVec // object: report, status, event
	passes   prometheus.Counter
	duration prometheus.Histogram
	// exported are the policies with series, to drop those of a policy gone.
	exported map[string]bool
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	a := prom.Subsystem("audit")
	m := &metrics{
		exported: map[string]bool{},
		objects: a.GaugeVec("objects",
			"Pods and workloads in the cluster each policy selects, by result of the last background audit (pass, fail, warn).",
			"policy", "result"),
		writes: a.CounterVec("writes_total",
			"API writes of the background audit, by object written (report, status, event).", "object"),
		passes: a.Counter("passes_total", "Background audit passes run."),
		duration: a.Histogram("pass_duration_seconds",
			"Time to judge the namespaces of one audit pass (writes excluded).",
			prometheus.ExponentialBuckets(0.001, 4, 10)),
	}
	if err := prom.Register(reg, m.objects, m.writes, m.passes, m.duration); err != nil {
		return nil, err
	}
	return m, nil
}

// setTotals exports the totals of the current policies and drops the
// series of policies gone.
func (m *metrics) setTotals(totals map[string]Counts) {
	for p := range m.exported {
		if _, ok := totals[p]; !ok {
			m.objects.DeletePartialMatch(prometheus.Labels{"policy": p})
			delete(m.exported, p)
		}
	}
	for p, c := range totals {
		m.exported[p] = true
		m.objects.WithLabelValues(p, string(Fail)).Set(float64(c.Violations))
		m.objects.WithLabelValues(p, string(Warn)).Set(float64(c.Warnings))
		m.objects.WithLabelValues(p, string(Pass)).Set(float64(c.Matched - c.Violations - c.Warnings))
	}
}

// RegisterMetrics registers the audit's metrics on reg, as serve does; the
// chart's dashboard test reads their names from it.
func RegisterMetrics(reg prometheus.Registerer) error {
	_, err := newMetrics(reg)
	return err
}
