package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// Secret data keys. tls.crt/tls.key/ca.crt follow the kubernetes.io/tls and
// cert-manager conventions, so tools that read either understand the Secret.
const (
	KeyCACert   = "ca.crt"
	KeyCAKey    = "ca.key"
	KeyTLSCert  = "tls.crt"
	KeyTLSKey   = "tls.key"
	KeyCABundle = "ca-bundle.crt" // current CA, then the previous one while it is still valid
)

// Bundle is the parsed content of the Secret.
type Bundle struct {
	CA       *x509.Certificate
	CAKey    *ecdsa.PrivateKey
	Cert     *x509.Certificate
	CertPEM  []byte
	KeyPEM   []byte
	CAPEM    []byte
	CABundle []byte
}

// backdate tolerates clock skew between this node and the API server's clients.
const backdate = 5 * time.Minute

// newCA makes a self-signed ECDSA P-256 CA valid for lifetime from now.
func newCA(commonName string, now time.Time, lifetime time.Duration) (*x509.Certificate, *ecdsa.PrivateKey, []byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(lifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// newServing signs a serving certificate for dnsNames with the CA, valid for
// lifetime but never past the CA's own expiry.
func newServing(ca *x509.Certificate, caKey *ecdsa.PrivateKey, dnsNames []string, now time.Time, lifetime time.Duration) (*x509.Certificate, []byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	notAfter := now.Add(lifetime)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: dnsNames[0]},
		DNSNames:     dnsNames,
		NotBefore:    now.Add(-backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		// crypto/rand never fails on supported platforms (Go 1.24+ crashes instead).
		panic(err)
	}
	return n
}

func encodeKey(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// ParseBundle reads a Secret's data. It fails on anything missing or
// malformed; the caller then issues a fresh bundle.
func ParseBundle(data map[string][]byte) (*Bundle, error) {
	for _, k := range []string{KeyCACert, KeyCAKey, KeyTLSCert, KeyTLSKey} {
		if len(data[k]) == 0 {
			return nil, fmt.Errorf("secret has no %s", k)
		}
	}
	ca, caKey, err := parsePair(data, KeyCACert, KeyCAKey)
	if err != nil {
		return nil, err
	}
	cert, _, err := parsePair(data, KeyTLSCert, KeyTLSKey)
	if err != nil {
		return nil, err
	}
	bundle := data[KeyCABundle]
	if len(bundle) == 0 {
		bundle = data[KeyCACert]
	}
	return &Bundle{CA: ca, CAKey: caKey, Cert: cert, CertPEM: data[KeyTLSCert], KeyPEM: data[KeyTLSKey], CAPEM: data[KeyCACert], CABundle: bundle}, nil
}

// parsePair parses the certificate and key stored under certKey and keyKey
// and checks that the key is the certificate's.
func parsePair(data map[string][]byte, certKey, keyKey string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cert, err := parseCert(data[certKey])
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", certKey, err)
	}
	key, err := parseKey(data[keyKey])
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", keyKey, err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("%s does not match %s", keyKey, certKey)
	}
	return cert, key, nil
}

// Data is the Secret data for b.
func (b *Bundle) Data() (map[string][]byte, error) {
	caKey, err := encodeKey(b.CAKey)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{
		KeyCACert: b.CAPEM, KeyCAKey: caKey, KeyTLSCert: b.CertPEM, KeyTLSKey: b.KeyPEM, KeyCABundle: b.CABundle,
	}, nil
}

func parseCert(p []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(p)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(blk.Bytes)
}

func parseKey(p []byte) (*ecdsa.PrivateKey, error) {
	blk, _ := pem.Decode(p)
	if blk == nil {
		return nil, errors.New("no PEM key block")
	}
	if k, err := x509.ParseECPrivateKey(blk.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key is %T, want ECDSA", k)
	}
	return ek, nil
}

// bundleCerts keeps the PEM certificates of pemBundle that are still valid at now
// and are not the same certificate as skip.
func bundleCerts(pemBundle []byte, now time.Time, skip *x509.Certificate) []byte {
	var out bytes.Buffer
	rest := pemBundle
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil || !now.Before(c.NotAfter) || (skip != nil && c.Equal(skip)) {
			continue
		}
		_ = pem.Encode(&out, blk)
	}
	return out.Bytes()
}
