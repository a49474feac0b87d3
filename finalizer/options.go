package finalizer

import (
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/gracekeeper/gracekeeper/internal/defaults"
)

// Defaults for the zero values of Options.
const (
	DefaultCleanupTimeout   = 5 * time.Second
	DefaultNodeGoneMargin   = 5 * time.Minute
	DefaultBackoffBase      = time.Second
	DefaultBackoffMax       = 5 * time.Minute
	DefaultMaxConcurrent    = 8
	DefaultCleanupWorkers   = 4
	DefaultExitWorkers      = 4
	DefaultEventRetryWindow = 30 * time.Second
	// DefaultPolicyUnreadableGiveUp bounds, from the deletion, how long a
	// cleanup whose policy cannot be read (API errors, RBAC) is retried
	// before it is abandoned: the CRD's default giveUpAfterSeconds.
	DefaultPolicyUnreadableGiveUp = 600 * time.Second
	DefaultAPITimeout             = 10 * time.Second
	DefaultReportingInstance      = "gracekeeper"
	// ReportingController names gracekeeper in the Events it writes.
	ReportingController = "gracekeeper.dev/finalizer"
)

// Options configures the controller and ReleaseAll. The zero value works.
type Options struct {
	// HTTPClient posts cleanup requests. Its Transport carries the TLS roots
	// the cleanup endpoints need; its Timeout should be zero, as each POST is
	// bounded by the policy's timeoutSeconds and give-up. Redirects are never
	// followed, whatever its CheckRedirect: a 3xx is a failed POST (the URL
	// an admin wrote is the only one called). Default: a clone of
	// http.DefaultTransport.
	HTTPClient *http.Client
	// DefaultCleanupTimeout bounds a POST whose record says 0 (the CRD
	// defaults timeoutSeconds to 5, so only hand-made annotations hit this).
	DefaultCleanupTimeout time.Duration
	// Clock is the time source: deletion deadlines, give-up and backoff.
	Clock clock.PassiveClock
	// NodeGoneMargin is how long after the pod's grace deadline (its
	// deletionTimestamp) a pod whose containers have not been reported ended
	// is recorded anyway, when its node is gone or NotReady.
	NodeGoneMargin time.Duration
	// BackoffBase and BackoffMax bound the exponential retry of a failing
	// cleanup POST.
	BackoffBase, BackoffMax time.Duration
	// EventRetryWindow bounds how long a record whose Event the API server
	// fails to take (timeouts, 5xx, 429) is retried before it is written to
	// the log instead and the finalizer removed. Refusals (namespace
	// terminating, forbidden, invalid) go to the log at once.
	EventRetryWindow time.Duration
	// APITimeout bounds each Event write, node read and finalizer patch, so
	// a hanging API server never holds a worker.
	APITimeout time.Duration
	// MaxConcurrentReconciles bounds how many pods' termination records are
	// worked on at once.
	MaxConcurrentReconciles int
	// CleanupWorkers bounds how many cleanup POSTs are in flight at once
	// (the cleanup controller's workers), apart from the termination records.
	CleanupWorkers int
	// Registerer receives the metrics. Nil: metrics are kept but not exported.
	// An already registered identical collector is reused, so a second
	// controller (after a restart in the same process) counts on.
	Registerer prometheus.Registerer
	// ReportingInstance names this replica in Events. Default: the host name.
	ReportingInstance string
	// ExitWorkers bounds how many pods' container exits are worked on at
	// once (records and exit cleanups). Default DefaultExitWorkers.
	ExitWorkers int
	// Logs reads the end of an exited container's log for policies that ask
	// (containerExits.logLines). Setup builds one from the manager's config;
	// nil: records say the log is unavailable.
	Logs LogReader
}

func (o Options) withDefaults() Options {
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	hc := *o.HTTPClient
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	o.HTTPClient = &hc
	defaults.Positive(&o.CleanupWorkers, DefaultCleanupWorkers)
	defaults.Positive(&o.ExitWorkers, DefaultExitWorkers)
	defaults.Positive(&o.DefaultCleanupTimeout, DefaultCleanupTimeout)
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	defaults.Positive(&o.NodeGoneMargin, DefaultNodeGoneMargin)
	defaults.Positive(&o.BackoffBase, DefaultBackoffBase)
	defaults.Positive(&o.BackoffMax, DefaultBackoffMax)
	o.BackoffMax = max(o.BackoffMax, o.BackoffBase)
	defaults.Positive(&o.EventRetryWindow, DefaultEventRetryWindow)
	defaults.Positive(&o.APITimeout, DefaultAPITimeout)
	defaults.Positive(&o.MaxConcurrentReconciles, DefaultMaxConcurrent)
	if o.ReportingInstance == "" {
		if h, err := os.Hostname(); err == nil && h != "" {
			o.ReportingInstance = h
		} else {
			o.ReportingInstance = DefaultReportingInstance
		}
	}
	if len(o.ReportingInstance) > 128 { // the Event API's limit
		o.ReportingInstance = o.ReportingInstance[:128]
	}
	return o
}
