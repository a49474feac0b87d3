// Package prom builds gracekeeper's Prometheus collectors. Every metric is
// named gracekeeper_<subsystem>_<name>, and collectors are registered on the
// Registerer a component is given, never on the global registry.
package prom

import "github.com/prometheus/client_golang/prometheus"

// namespace is the first part of every metric's name.
const namespace = "gracekeeper"

// Subsystem is the component that exports a metric, the middle part of its
// name (webhook, finalizer, audit).
type Subsystem string

// Counter is the counter gracekeeper_<s>_<name>.
func (s Subsystem) Counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts(s.opts(name, help)))
}

// CounterVec is the counter gracekeeper_<s>_<name> with the given labels.
func (s Subsystem) CounterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts(s.opts(name, help)), labels)
}

// GaugeVec is the gauge gracekeeper_<s>_<name> with the given labels.
func (s Subsystem) GaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts(s.opts(name, help)), labels)
}

// Histogram is the histogram gracekeeper_<s>_<name> with the given buckets.
func (s Subsystem) Histogram(name, help string, buckets []float64) prometheus.Histogram {
	return prometheus.NewHistogram(s.histogramOpts(name, help, buckets))
}

// HistogramVec is the histogram gracekeeper_<s>_<name> with the given
// buckets and labels.
func (s Subsystem) HistogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(s.histogramOpts(name, help, buckets), labels)
}

func (s Subsystem) opts(name, help string) prometheus.Opts {
	return prometheus.Opts{Namespace: namespace, Subsystem: string(s), Name: name, Help: help}
}

func (s Subsystem) histogramOpts(name, help string, buckets []float64) prometheus.HistogramOpts {
	return prometheus.HistogramOpts{Namespace: namespace, Subsystem: string(s), Name: name, Help: help, Buckets: buckets}
}

// Register registers cs on reg in order and stops at the first error. A nil
// reg registers nothing: the metrics are kept but not exported.
func Register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
