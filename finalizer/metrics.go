package finalizer

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gracekeeper/gracekeeper/internal/prom"
)

// Metrics are the controller's counters. Labels are bounded: container
// end reasons are folded into a fixed set (see knownReason), causes and
// results are enums; no pod, namespace or policy names.
type Metrics struct {
	Terminations *prometheus.CounterVec // by reason
	Overruns     prometheus.Counter
	Pods         *prometheus.CounterVec // by cause
	Cleanups     *prometheus.CounterVec // by result: success, failure, abandoned
	// Unwritten counts records that could not be written as Events and went
	// to the log instead, by record (termination, cleanup_abandoned,
	// container_exit) and
	// reason (namespace_terminating, forbidden, rejected, unavailable).
	Unwritten *prometheus.CounterVec
	// Exits counts container exits of running pods recorded, by reason
	// (the same bounded set as Terminations).
	Exits *prometheus.CounterVec
	// ExitsMissed counts exits seen only as a gap in the restart count.
	ExitsMissed prometheus.Counter
	// ExitCleanups counts exit cleanup POSTs and give-ups, by result.
	ExitCleanups *prometheus.CounterVec
}

// NewMetrics builds the counters and registers them on reg (nil: not
// registered). A collector already registered with the same description is
// reused, so a controller restarted in the same process counts on.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	f := prom.Subsystem("finalizer")
	// Container exits are not the finalizer's: they are recorded for
	// running pods, so their names carry no subsystem.
	top := prom.Subsystem("")
	m := &Metrics{
		Terminations: f.CounterVec("container_terminations_total",
			"Containers of deleted pods recorded, by how they ended (Completed, Error, OOMKilled, ..., Unknown, Other).", "reason"),
		Overruns: f.Counter("shutdown_overruns_total",
			"Containers killed at the grace deadline (SIGKILL after the full terminationGracePeriodSeconds)."),
		Pods: f.CounterVec("pods_recorded_total",
			"Deleted pods whose termination was recorded, by cause (Ended, NeverScheduled, NodeLost).", "cause"),
		Cleanups: f.CounterVec("cleanup_requests_total",
			"Cleanup POSTs and give-ups, by result (success, failure, abandoned).", "result"),
		Unwritten: f.CounterVec("records_unwritten_total",
			"Records (termination, cleanup_abandoned, container_exit) the API server did not take as an Event, written to the log instead, by reason (namespace_terminating, forbidden, rejected, unavailable). The finalizer was removed, or the exit marked done, all the same.",
			"record", "reason"),
		Exits: top.CounterVec("container_exits_total",
			"Container exits of running pods recorded (in-place restarts included), by reason (Completed, Error, OOMKilled, ..., Other).", "reason"),
		ExitsMissed: top.Counter("container_exits_missed_total",
			"Container exits that were never recorded because the kubelet no longer showed them (restart count gaps), e.g. while gracekeeper was not running."),
		ExitCleanups: top.CounterVec("container_exit_cleanups_total",
			"Cleanup POSTs for container exits (cleanup.when: ContainerExit) and give-ups, by result (success, failure, abandoned).", "result"),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	m.Terminations = register(reg, m.Terminations, &err)
	m.Overruns = register(reg, m.Overruns, &err)
	m.Pods = register(reg, m.Pods, &err)
	m.Cleanups = register(reg, m.Cleanups, &err)
	m.Unwritten = register(reg, m.Unwritten, &err)
	m.Exits = register(reg, m.Exits, &err)
	m.ExitsMissed = register(reg, m.ExitsMissed, &err)
	m.ExitCleanups = register(reg, m.ExitCleanups, &err)
	return m, err
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C, errp *error) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		*errp = errors.Join(*errp, err)
	}
	return c
}

func (m *Metrics) observe(r Record) {
	m.Pods.WithLabelValues(string(r.Cause)).Inc()
	for _, c := range r.Containers {
		m.Terminations.WithLabelValues(reasonLabel(c)).Inc()
		if c.Overrun {
			m.Overruns.Inc()
		}
	}
}
