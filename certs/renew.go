package certs

import (
	"crypto/x509"
	"fmt"
	"slices"
	"time"
)

// Action is what the leader must do with the Secret's bundle.
type Action string

const (
	// ActionNone: everything is valid and young enough.
	ActionNone Action = "None"
	// ActionIssue: the Secret is empty or unreadable; make a new CA and serving certificate.
	ActionIssue Action = "Issue"
	// ActionRenewCA: the CA is due; make a new CA and serving certificate and keep
	// the old CA in caBundle until it expires, so replicas still serving the old
	// certificate stay trusted until they sync.
	ActionRenewCA Action = "RenewCA"
	// ActionRenewServing: the serving certificate is due (or no longer matches); sign a new one with the same CA.
	ActionRenewServing Action = "RenewServing"
)

// Decision is an Action and why, for logs and events.
type Decision struct {
	Action Action
	Reason string
}

// renewFraction: renew once this share of a certificate's lifetime has passed
// (cert-manager's default is also 2/3).
const renewNum, renewDen = 2, 3

// RenewAt is when c is due: NotBefore plus 2/3 of its validity.
func RenewAt(c *x509.Certificate) time.Time {
	life := c.NotAfter.Sub(c.NotBefore)
	return c.NotBefore.Add(life / renewDen * renewNum)
}

// Decide says what to do with bundle b (nil when parseErr says why it could
// not be read) at now for a serving certificate that must cover dnsNames.
func Decide(b *Bundle, parseErr error, dnsNames []string, now time.Time) Decision {
	if b == nil {
		reason := "secret is empty"
		if parseErr != nil {
			reason = "secret is unreadable: " + parseErr.Error()
		}
		return Decision{ActionIssue, reason}
	}
	if !now.Before(RenewAt(b.CA)) {
		return Decision{ActionRenewCA, fmt.Sprintf("CA expires %s, due for renewal since %s", b.CA.NotAfter.UTC().Format(time.RFC3339), RenewAt(b.CA).UTC().Format(time.RFC3339))}
	}
	if err := b.Cert.CheckSignatureFrom(b.CA); err != nil {
		return Decision{ActionRenewServing, "serving certificate is not signed by the current CA"}
	}
	want := slices.Clone(dnsNames)
	got := slices.Clone(b.Cert.DNSNames)
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(want, got) {
		return Decision{ActionRenewServing, fmt.Sprintf("serving certificate names %v, want %v", got, want)}
	}
	if !now.Before(RenewAt(b.Cert)) {
		return Decision{ActionRenewServing, fmt.Sprintf("serving certificate expires %s, due for renewal since %s", b.Cert.NotAfter.UTC().Format(time.RFC3339), RenewAt(b.Cert).UTC().Format(time.RFC3339))}
	}
	return Decision{ActionNone, "valid"}
}

// Apply carries out d on prev (nil for ActionIssue) and returns the new bundle.
func Apply(d Decision, prev *Bundle, commonName string, dnsNames []string, now time.Time, caLifetime, certLifetime time.Duration) (*Bundle, error) {
	switch d.Action {
	case ActionNone:
		return prev, nil
	case ActionIssue, ActionRenewCA:
		ca, caKey, caPEM, _, err := newCA(commonName+"-ca", now, caLifetime)
		if err != nil {
			return nil, fmt.Errorf("generate CA: %w", err)
		}
		cert, certPEM, keyPEM, err := newServing(ca, caKey, dnsNames, now, certLifetime)
		if err != nil {
			return nil, fmt.Errorf("sign serving certificate: %w", err)
		}
		bundle := caPEM
		if prev != nil {
			// Keep the previous CA while it is valid: replicas that have not yet
			// synced still serve a certificate it signed.
			bundle = append(append([]byte{}, caPEM...), bundleCerts(prev.CAPEM, now, nil)...)
		}
		return &Bundle{CA: ca, CAKey: caKey, CAPEM: caPEM, Cert: cert, CertPEM: certPEM, KeyPEM: keyPEM, CABundle: bundle}, nil
	case ActionRenewServing:
		cert, certPEM, keyPEM, err := newServing(prev.CA, prev.CAKey, dnsNames, now, certLifetime)
		if err != nil {
			return nil, fmt.Errorf("sign serving certificate: %w", err)
		}
		// Current CA first, then any earlier CA that is still valid.
		bundle := append(append([]byte{}, prev.CAPEM...), bundleCerts(prev.CABundle, now, prev.CA)...)
		return &Bundle{CA: prev.CA, CAKey: prev.CAKey, CAPEM: prev.CAPEM, Cert: cert, CertPEM: certPEM, KeyPEM: keyPEM, CABundle: bundle}, nil
	}
	return nil, fmt.Errorf("unknown action %q", d.Action)
}
