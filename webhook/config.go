package webhook

import (
	"crypto/tls"
	"fmt"
	"time"

	"github.com/gracekeeper/gracekeeper/internal/defaults"
)

// Config configures the server. Zero values take the defaults below.
type Config struct {
	// Addr is the listen address, e.g. ":9443" (default) or "127.0.0.1:0".
	Addr string
	// CertDir holds tls.crt and tls.key; certwatcher reloads them when they
	// change (cert-manager and the self-managed mode rotate them in place).
	CertDir string
	// CertName and KeyName default to tls.crt and tls.key.
	CertName, KeyName string
	// TLSMinVersion is "1.2" (default) or "1.3".
	TLSMinVersion string
	// MaxBodyBytes caps a request body (default 7 MiB, what
	// controller-runtime's webhook server accepts). An UPDATE review carries
	// the object and oldObject, each up to what etcd stores: its default
	// --max-request-bytes is 1.5 MiB and kube-apiserver refuses request
	// bodies over 3 MiB (k8s.io/apiserver pkg/server/config.go,
	// MaxRequestBodyBytes), so two objects plus the review's envelope fit in
	// 7 MiB; a bigger body is not from the API server.
	MaxBodyBytes int64
	// ReadHeaderTimeout bounds slow clients (default 10s).
	ReadHeaderTimeout time.Duration
	// RequestTimeout is the longest the API server waits for one review: the
	// webhooks' timeoutSeconds (at most 30, the default here). Reading a
	// request may take no longer (http.Server ReadTimeout), answering it
	// RequestTimeout plus a few seconds (WriteTimeout): past it the API
	// server has given up, so a client still trickling a body is not one.
	RequestTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long (default
	// 120s): longer than client-go's 90 s idle timeout, which the API
	// server's webhook client uses, so the client closes first; a server
	// that closed first could race a POST being sent, which net/http does
	// not retry (Transport.shouldRetryRequest).
	IdleTimeout time.Duration
	// MaxInFlight caps the admission requests being read or reviewed at
	// once (default 64). Past it a request gets HTTP 429 with Retry-After at
	// once, without its body being read: the API server's client may retry
	// within the webhook timeout, then failurePolicy decides. Queueing would
	// only make every caller wait into its timeout.
	MaxInFlight int
	// MaxLargeInFlight caps, within MaxInFlight, the requests whose body is
	// announced above LargeBodyBytes or not announced (default 4), so that
	// bodies in memory stay under MaxLargeInFlight*MaxBodyBytes +
	// MaxInFlight*LargeBodyBytes (92 MiB by default, under the chart's
	// 256Mi limit) whatever clients do.
	MaxLargeInFlight int
	// LargeBodyBytes is the announced size above which a request is large
	// (default 1 MiB: pods and nearly all workloads are far below it).
	LargeBodyBytes int64
	// DrainDelay is how long the server keeps serving after the context is
	// cancelled while /readyz already fails, so endpoints and load balancers
	// stop sending before the listener closes (default 5s).
	DrainDelay time.Duration
	// ShutdownTimeout bounds Shutdown after the drain (default 10s).
	ShutdownTimeout time.Duration
}

const (
	defaultAddr              = ":9443"
	defaultMaxBodyBytes      = 7 << 20
	defaultReadHeaderTimeout = 10 * time.Second
	defaultRequestTimeout    = 30 * time.Second
	defaultIdleTimeout       = 120 * time.Second
	defaultMaxInFlight       = 64
	defaultMaxLargeInFlight  = 4
	defaultLargeBodyBytes    = 1 << 20
	defaultDrainDelay        = 5 * time.Second
	defaultShutdownTimeout   = 10 * time.Second
)

// WithDefaults is c as the server will use it: zero values replaced by the
// defaults above (callers size their own shutdown to its drain).
func (c Config) WithDefaults() Config {
	defaults.Set(&c.Addr, defaultAddr)
	defaults.Set(&c.CertName, "tls.crt")
	defaults.Set(&c.KeyName, "tls.key")
	defaults.Positive(&c.MaxBodyBytes, defaultMaxBodyBytes)
	defaults.Positive(&c.ReadHeaderTimeout, defaultReadHeaderTimeout)
	defaults.Positive(&c.RequestTimeout, defaultRequestTimeout)
	defaults.Positive(&c.IdleTimeout, defaultIdleTimeout)
	defaults.Positive(&c.MaxInFlight, defaultMaxInFlight)
	defaults.Positive(&c.MaxLargeInFlight, defaultMaxLargeInFlight)
	c.MaxLargeInFlight = min(c.MaxLargeInFlight, c.MaxInFlight)
	defaults.Positive(&c.LargeBodyBytes, defaultLargeBodyBytes)
	c.LargeBodyBytes = min(c.LargeBodyBytes, c.MaxBodyBytes)
	if c.DrainDelay < 0 {
		c.DrainDelay = 0
	} else if c.DrainDelay == 0 {
		c.DrainDelay = defaultDrainDelay
	}
	defaults.Positive(&c.ShutdownTimeout, defaultShutdownTimeout)
	return c
}

// DefaultMaxBodyBytes is MaxBodyBytes's default, for flag defaults.
const DefaultMaxBodyBytes = defaultMaxBodyBytes

// ParseTLSVersion maps "1.2"/"1.3" (also "" = 1.2) to the crypto/tls constant.
func ParseTLSVersion(v string) (uint16, error) {
	switch v {
	case "", "1.2", "VersionTLS12":
		return tls.VersionTLS12, nil
	case "1.3", "VersionTLS13":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("unsupported TLS minimum version %q: use 1.2 or 1.3", v)
}
