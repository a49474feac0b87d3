package certs

import (
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

var (
	t0       = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	names    = []string{"gk", "gk.ns", "gk.ns.svc", "gk.ns.svc.cluster.local"}
	caLife   = 300 * time.Hour
	certLife = 30 * time.Hour
)

func issue(t *testing.T, now time.Time) *Bundle {
	t.Helper()
	b, err := Apply(Decision{Action: ActionIssue}, nil, "gk", names, now, caLife, certLife)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func roundTrip(t *testing.T, b *Bundle) *Bundle {
	t.Helper()
	data, err := b.Data()
	if err != nil {
		t.Fatal(err)
	}
	out, err := ParseBundle(data)
	if err != nil {
		t.Fatalf("ParseBundle of a bundle we made: %v", err)
	}
	return out
}

func pemCerts(t *testing.T, p []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, p = pem.Decode(p)
		if blk == nil {
			return out
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

func TestDecide(t *testing.T) {
	fresh := roundTrip(t, issue(t, t0))
	otherNames, err := Apply(Decision{Action: ActionIssue}, nil, "gk", []string{"old-name"}, t0, caLife, certLife)
	if err != nil {
		t.Fatal(err)
	}
	foreign := issue(t, t0)
	mismatched := *fresh
	mismatched.Cert = foreign.Cert // signed by another CA
	servingDue := fresh.Cert.NotBefore.Add(fresh.Cert.NotAfter.Sub(fresh.Cert.NotBefore) * 2 / 3)

	for name, tc := range map[string]struct {
		b        *Bundle
		parseErr error
		now      time.Time
		want     Action
		reason   string
	}{
		"empty secret issues everything":           {b: nil, now: t0, want: ActionIssue, reason: "empty"},
		"unreadable secret issues everything":      {b: nil, parseErr: errTest, now: t0, want: ActionIssue, reason: "unreadable: boom"},
		"fresh bundle needs nothing":               {b: fresh, now: t0.Add(time.Hour), want: ActionNone},
		"just before 2/3 of serving life: nothing": {b: fresh, now: servingDue.Add(-time.Second), want: ActionNone},
		"at 2/3 of serving life: renew serving":    {b: fresh, now: servingDue, want: ActionRenewServing, reason: "due for renewal"},
		"expired serving cert: renew serving":      {b: fresh, now: fresh.Cert.NotAfter.Add(time.Hour), want: ActionRenewServing},
		"names changed: renew serving":             {b: roundTrip(t, otherNames), now: t0, want: ActionRenewServing, reason: "old-name"},
		"serving cert from another CA: renew":      {b: &mismatched, now: t0, want: ActionRenewServing, reason: "not signed by the current CA"},
		"CA at 2/3 of its life: renew CA":          {b: fresh, now: RenewAt(fresh.CA), want: ActionRenewCA, reason: "CA expires"},
		"CA due wins over a due serving cert":      {b: fresh, now: fresh.CA.NotAfter, want: ActionRenewCA},
		"names compared as a set, not in order":    {b: fresh, now: t0, want: ActionNone},
	} {
		t.Run(name, func(t *testing.T) {
			n := names
			if name == "names compared as a set, not in order" {
				n = []string{names[3], names[1], names[0], names[2]}
			}
			d := Decide(tc.b, tc.parseErr, n, tc.now)
			if d.Action != tc.want {
				t.Fatalf("Decide = %s (%s), want %s", d.Action, d.Reason, tc.want)
			}
			if !strings.Contains(d.Reason, tc.reason) {
				t.Errorf("reason %q does not mention %q", d.Reason, tc.reason)
			}
		})
	}
}

type testErr string

func (e testErr) Error() string { return string(e) }

const errTest = testErr("boom")

func TestApply(t *testing.T) {
	first := issue(t, t0)
	verify := func(t *testing.T, b *Bundle, now time.Time) {
		t.Helper()
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b.CABundle) {
			t.Fatal("caBundle holds no certificate")
		}
		for _, n := range names {
			if _, err := b.Cert.Verify(x509.VerifyOptions{DNSName: n, Roots: pool, CurrentTime: now}); err != nil {
				t.Errorf("serving cert does not verify for %s against caBundle: %v", n, err)
			}
		}
		if d := Decide(roundTrip(t, b), nil, names, now); d.Action != ActionNone {
			t.Errorf("right after %s, Decide wants %s (%s): renewal would loop", "Apply", d.Action, d.Reason)
		}
	}

	t.Run("issue", func(t *testing.T) {
		verify(t, first, t0)
		if got := first.CA.NotAfter.Sub(first.CA.NotBefore); got != caLife+backdate {
			t.Errorf("CA validity %s, want %s", got, caLife+backdate)
		}
		if !first.CA.IsCA || first.Cert.IsCA {
			t.Error("CA/serving IsCA flags wrong")
		}
		if got := len(pemCerts(t, first.CABundle)); got != 1 {
			t.Errorf("caBundle has %d certs, want 1", got)
		}
	})
	t.Run("renew serving keeps the CA", func(t *testing.T) {
		now := RenewAt(first.Cert)
		next, err := Apply(Decision{Action: ActionRenewServing}, roundTrip(t, first), "gk", names, now, caLife, certLife)
		if err != nil {
			t.Fatal(err)
		}
		verify(t, next, now)
		if !next.CA.Equal(first.CA) {
			t.Error("CA changed on a serving renewal")
		}
		if next.Cert.Equal(first.Cert) || next.Cert.SerialNumber.Cmp(first.Cert.SerialNumber) == 0 {
			t.Error("serving certificate not replaced")
		}
		if got := len(pemCerts(t, next.CABundle)); got != 1 {
			t.Errorf("caBundle has %d certs, want 1 (no duplicate of the current CA)", got)
		}
	})
	t.Run("serving cert never outlives the CA", func(t *testing.T) {
		now := first.CA.NotAfter.Add(-time.Hour)
		next, err := Apply(Decision{Action: ActionRenewServing}, roundTrip(t, first), "gk", names, now, caLife, certLife)
		if err != nil {
			t.Fatal(err)
		}
		if next.Cert.NotAfter.After(first.CA.NotAfter) {
			t.Errorf("serving NotAfter %s after CA NotAfter %s", next.Cert.NotAfter, first.CA.NotAfter)
		}
	})
	t.Run("renew CA keeps the old CA trusted until it expires", func(t *testing.T) {
		now := RenewAt(first.CA)
		next, err := Apply(Decision{Action: ActionRenewCA}, roundTrip(t, first), "gk", names, now, caLife, certLife)
		if err != nil {
			t.Fatal(err)
		}
		verify(t, next, now)
		if next.CA.Equal(first.CA) {
			t.Fatal("CA not replaced")
		}
		certs := pemCerts(t, next.CABundle)
		if len(certs) != 2 || !certs[0].Equal(next.CA) || !certs[1].Equal(first.CA) {
			t.Fatalf("caBundle = %d certs, want [new CA, old CA]", len(certs))
		}
		// A replica still serving the old certificate stays trusted.
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(next.CABundle)
		// (checked inside the old certificate's validity; the chain is what matters).
		if _, err := first.Cert.Verify(x509.VerifyOptions{DNSName: names[0], Roots: pool, CurrentTime: first.Cert.NotBefore.Add(time.Hour)}); err != nil {
			t.Errorf("old serving cert not trusted by the new caBundle: %v", err)
		}
		// After the old CA expires, the next renewal drops it.
		later := first.CA.NotAfter.Add(time.Hour)
		again, err := Apply(Decision{Action: ActionRenewServing}, roundTrip(t, next), "gk", names, later, caLife, certLife)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(pemCerts(t, again.CABundle)); got != 1 {
			t.Errorf("expired old CA kept: caBundle has %d certs", got)
		}
	})
}

func TestParseBundleRefusesBadData(t *testing.T) {
	good, err := issue(t, t0).Data()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := issue(t, t0).Data()
	for name, tc := range map[string]struct {
		mutate func(map[string][]byte)
		want   string
	}{
		"no data":                {func(d map[string][]byte) { clear(d) }, "no ca.crt"},
		"missing tls.key":        {func(d map[string][]byte) { delete(d, KeyTLSKey) }, "no tls.key"},
		"garbage certificate":    {func(d map[string][]byte) { d[KeyTLSCert] = []byte("not pem") }, "tls.crt: no PEM"},
		"key of another cert":    {func(d map[string][]byte) { d[KeyTLSKey] = other[KeyTLSKey] }, "tls.key does not match"},
		"CA key of another CA":   {func(d map[string][]byte) { d[KeyCAKey] = other[KeyCAKey] }, "ca.key does not match"},
		"certificate as the key": {func(d map[string][]byte) { d[KeyCAKey] = good[KeyCACert] }, "ca.key"},
	} {
		t.Run(name, func(t *testing.T) {
			d := map[string][]byte{}
			for k, v := range good {
				d[k] = v
			}
			tc.mutate(d)
			_, err := ParseBundle(d)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseBundle error = %v, want it to mention %q", err, tc.want)
			}
			if Decide(nil, err, names, t0).Action != ActionIssue {
				t.Error("unreadable bundle should be reissued")
			}
		})
	}
}
