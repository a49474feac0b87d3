package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/gracekeeper/gracekeeper/test/testcert"
)

// baselineServer is the floor a webhook cannot go below on this machine: an
// HTTPS server with the same TLS settings as gracekeeper's (TLS 1.2+, no
// HTTP/2) that reads the body, checks it is JSON and answers an allowed
// AdmissionReview. Measured in the same run, under the same load, it turns the
// target's numbers into ratios that do not depend on the machine.
func baselineServer() (url string, pool *x509.CertPool, stop func(), err error) {
	pair, err := testcert.New()
	if err != nil {
		return "", nil, nil, err
	}
	if pool, err = pair.Pool(); err != nil {
		return "", nil, nil, err
	}
	cert, err := pair.TLSCertificate()
	if err != nil {
		return "", nil, nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, nil, err
	}
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(io.LimitReader(r.Body, 3<<20))
			var rev struct {
				Request struct {
					UID string `json:"uid"`
				} `json:"request"`
			}
			if err != nil || json.Unmarshal(body, &rev) != nil {
				http.Error(w, "bad request", http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":%q,"allowed":true}}`, rev.Request.UID)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){},
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12,
			Certificates: []tls.Certificate{cert}},
	}
	go func() { _ = hs.ServeTLS(l, "", "") }()
	stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
	}
	return "https://" + l.Addr().String() + "/", pool, stop, nil
}

// printRatios compares the target with the baseline: throughput as
// baseline/target and latencies as target/baseline, so every ratio reads
// "times slower than a bare HTTPS echo" (1.0 would be free).
func printRatios(w io.Writer, target, base result) {
	if target.sent == 0 || base.sent == 0 {
		return
	}
	tl, bl := slices.Sorted(slices.Values(target.latencies)), slices.Sorted(slices.Values(base.latencies))
	pct := func(l []time.Duration, p float64) float64 { return float64(l[min(len(l)-1, int(p*float64(len(l))))]) }
	tput := func(r result) float64 { return float64(r.sent) / r.elapsed.Seconds() }
	fmt.Fprintf(w, "ratio to baseline: throughput %.2fx  p50 %.2fx  p99 %.2fx\n",
		tput(base)/tput(target), pct(tl, .50)/pct(bl, .50), pct(tl, .99)/pct(bl, .99))
}
