package prom

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestNames(t *testing.T) {
	s := Subsystem("audit")
	reg := prometheus.NewRegistry()
	hv := s.HistogramVec("request_duration_seconds", "h", []float64{1, 2}, "route")
	hv.WithLabelValues("mutate").Observe(1)
	gv := s.GaugeVec("objects", "g", "policy", "result")
	gv.WithLabelValues("p", "pass").Set(1)
	cv := s.CounterVec("writes_total", "c", "object")
	cv.WithLabelValues("report").Inc()
	if err := Register(reg, s.Counter("passes_total", "c"), cv, gv,
		s.Histogram("pass_duration_seconds", "h", prometheus.ExponentialBuckets(0.001, 4, 10)), hv); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mf := range mfs {
		got = append(got, mf.GetName())
	}
	want := "gracekeeper_audit_objects gracekeeper_audit_pass_duration_seconds gracekeeper_audit_passes_total gracekeeper_audit_request_duration_seconds gracekeeper_audit_writes_total"
	if strings.Join(got, " ") != want {
		t.Errorf("names:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	if n := testutil.CollectAndCount(hv); n != 1 {
		t.Errorf("histogram vec series: %d, want 1", n)
	}
}

func TestRegister(t *testing.T) {
	if err := Register(nil, Subsystem("x").Counter("a_total", "a")); err != nil {
		t.Errorf("nil registerer: %v", err)
	}
	reg := prometheus.NewRegistry()
	s := Subsystem("x")
	if err := Register(reg, s.Counter("a_total", "a")); err != nil {
		t.Fatal(err)
	}
	// A second collector of the same name is refused, and the error says so.
	err := Register(reg, s.Counter("b_total", "b"), s.Counter("a_total", "a"))
	if _, ok := err.(prometheus.AlreadyRegisteredError); !ok {
		t.Errorf("duplicate: got %v, want AlreadyRegisteredError", err)
	}
}
