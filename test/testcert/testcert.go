// Package testcert makes a serving certificate for 127.0.0.1 (client-go's
// certutil: a fresh CA and a certificate it signs), for tests and local tools
// that run a TLS server on loopback.
package testcert

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"

	certutil "k8s.io/client-go/util/cert"
)

// Pair is the serving certificate (followed by its CA, as certutil writes
// it) and its key, in PEM.
type Pair struct {
	CertPEM, KeyPEM []byte
}

// New makes a Pair for 127.0.0.1 and localhost.
func New() (*Pair, error) {
	crt, key, err := certutil.GenerateSelfSignedCertKey("127.0.0.1", []net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"})
	if err != nil {
		return nil, err
	}
	return &Pair{CertPEM: crt, KeyPEM: key}, nil
}

// Pool is a CertPool that trusts the pair (its CA, and the certificate).
func (p *Pair) Pool() (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(p.CertPEM) {
		return nil, errors.New("testcert: no certificate in the PEM")
	}
	return pool, nil
}

// TLSCertificate is the pair for a tls.Config.
func (p *Pair) TLSCertificate() (tls.Certificate, error) {
	return tls.X509KeyPair(p.CertPEM, p.KeyPEM)
}

// WriteDir writes tls.key then tls.crt into dir (made if missing), each
// renamed into place, so a certificate watcher never sees a certificate
// without its key.
func (p *Pair) WriteDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{"tls.key", p.KeyPEM}, {"tls.crt", p.CertPEM}} {
		tmp := filepath.Join(dir, f.name+".tmp")
		if err := os.WriteFile(tmp, f.data, 0o600); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(dir, f.name)); err != nil {
			return err
		}
	}
	return nil
}

// MustWriteDir writes a new pair into dir for a test and returns the pool
// that trusts it; any error fails the test.
func MustWriteDir(t interface {
	Helper()
	Fatal(...any)
}, dir string) *x509.CertPool {
	t.Helper()
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	pool, err := p.Pool()
	if err != nil {
		t.Fatal(err)
	}
	return pool
}
