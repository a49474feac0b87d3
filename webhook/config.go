package webhook

import (
	"crypto/tls"
	"fmt"
	"time"
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
	// MaxBodyBytes caps a request body (default 3 MiB: kube-apiserver caps
	// admission requests around 3 MiB, see apiserver's
	// pkg/server/config.go MaxRequestBodyBytes, so a bigger body is not from it).
	MaxBodyBytes int64
	// ReadHeaderTimeout bounds slow clients (default 10s).
	ReadHeaderTimeout time.Duration
	// DrainDelay is how long the server keeps serving after the context is
	// cancelled while /readyz already fails, so endpoints and load balancers
	// stop sending before the listener closes (default 5s).
	DrainDelay time.Duration
	// ShutdownTimeout bounds Shutdown after the drain (default 10s).
	ShutdownTimeout time.Duration
}

const (
	defaultAddr              = ":9443"
	defaultMaxBodyBytes      = 3 << 20
	defaultReadHeaderTimeout = 10 * time.Second
	defaultDrainDelay        = 5 * time.Second
	defaultShutdownTimeout   = 10 * time.Second
)

// WithDefaults is c as the server will use it: zero values replaced by the
// defaults above (callers size their own shutdown to its drain).
func (c Config) WithDefaults() Config {
	if c.Addr == "" {
		c.Addr = defaultAddr
	}
	if c.CertName == "" {
		c.CertName = "tls.crt"
	}
	if c.KeyName == "" {
		c.KeyName = "tls.key"
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = defaultMaxBodyBytes
	}
	if c.ReadHeaderTimeout <= 0 {
		c.ReadHeaderTimeout = defaultReadHeaderTimeout
	}
	if c.DrainDelay < 0 {
		c.DrainDelay = 0
	} else if c.DrainDelay == 0 {
		c.DrainDelay = defaultDrainDelay
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = defaultShutdownTimeout
	}
	return c
}

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
