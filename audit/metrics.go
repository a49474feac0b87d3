package audit

import "github.com/prometheus/client_golang/prometheus"

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
	m := &metrics{
		exported: map[string]bool{},
		objects: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gracekeeper_audit_objects",
			Help: "Pods and workloads in the cluster each policy selects, by result of the last background audit (pass, fail, warn).",
		}, []string{"policy", "result"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gracekeeper_audit_writes_total",
			Help: "API writes of the background audit, by object written (report, status, event).",
		}, []string{"object"}),
		passes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gracekeeper_audit_passes_total",
			Help: "Background audit passes run.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gracekeeper_audit_pass_duration_seconds",
			Help:    "Time to judge the namespaces of one audit pass (writes excluded).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.objects, m.writes, m.passes, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
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
