// Command bench is a small load tool for gracekeeper's admission server: it
// POSTs AdmissionReviews to one route from a few workers and prints
// throughput and latency percentiles. It is bounded (request count, time,
// concurrency) and talks to loopback addresses only: it is for measuring a
// local server, never for loading a cluster.
//
//	go run ./test/bench -url https://127.0.0.1:9443/mutate-pods -n 2000 -c 8 -insecure
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gracekeeper/gracekeeper/test/internal/cli"
	"github.com/gracekeeper/gracekeeper/test/internal/httpjson"
)

// Bounds: this is a measuring tool, not a load generator for clusters.
const (
	maxRequests    = 1_000_000
	maxConcurrency = 256
	maxDuration    = 10 * time.Minute
)

func main() { cli.Main(run) }

type options struct {
	url        string
	n, c       int
	duration   time.Duration
	insecure   bool
	caFile     string
	bodyFile   string
	expectCode int
	baseline   bool
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.url, "url", "", "route to POST to, e.g. https://127.0.0.1:9443/mutate-pods (loopback only)")
	fs.IntVar(&o.n, "n", 2000, fmt.Sprintf("requests to send (at most %d)", maxRequests))
	fs.IntVar(&o.c, "c", 8, fmt.Sprintf("concurrent workers (at most %d)", maxConcurrency))
	fs.DurationVar(&o.duration, "duration", time.Minute, fmt.Sprintf("stop after this long even if -n is not reached (at most %s)", maxDuration))
	fs.BoolVar(&o.insecure, "insecure", false, "do not verify the server certificate")
	fs.StringVar(&o.caFile, "ca", "", "PEM CA bundle to verify the server certificate with")
	fs.StringVar(&o.bodyFile, "f", "", "AdmissionReview JSON to send (default: a built-in pod CREATE review)")
	fs.IntVar(&o.expectCode, "expect-code", http.StatusOK, "HTTP status counted as success")
	fs.BoolVar(&o.baseline, "baseline", true, "also run the same load against a bare in-process HTTPS echo of an allowed AdmissionReview and print the ratios")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := o.check(); err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 2
	}
	body := defaultReview()
	if o.bodyFile != "" {
		b, err := os.ReadFile(o.bodyFile)
		if err != nil {
			fmt.Fprintf(stderr, "bench: %v\n", err)
			return 2
		}
		if !json.Valid(b) {
			fmt.Fprintf(stderr, "bench: %s is not JSON\n", o.bodyFile)
			return 2
		}
		body = b
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.insecure} //nolint:gosec // opt-in flag for local self-signed servers
	if o.caFile != "" {
		pem, err := os.ReadFile(o.caFile)
		if err != nil {
			fmt.Fprintf(stderr, "bench: %v\n", err)
			return 2
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			fmt.Fprintf(stderr, "bench: no certificate in %s\n", o.caFile)
			return 2
		}
		tlsCfg.RootCAs = pool
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: tlsCfg, MaxIdleConnsPerHost: o.c, MaxConnsPerHost: o.c,
	}}
	defer client.CloseIdleConnections()
	res := load(ctx, client, o, body)
	res.print(stdout)
	if res.errors > 0 || res.sent == 0 {
		return 1
	}
	if o.baseline && o.expectCode == http.StatusOK {
		url, pool, stop, err := baselineServer()
		if err != nil {
			fmt.Fprintf(stderr, "bench: baseline: %v\n", err)
			return 1
		}
		defer stop()
		bo := o
		bo.url = url
		bc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}, MaxIdleConnsPerHost: o.c, MaxConnsPerHost: o.c,
		}}
		defer bc.CloseIdleConnections()
		base := load(ctx, bc, bo, body)
		fmt.Fprintln(stdout, "baseline (bare HTTPS echo, same load, same run):")
		base.print(stdout)
		if base.errors > 0 || base.sent == 0 {
			return 1
		}
		printRatios(stdout, res, base)
	}
	return 0
}

func (o *options) check() error {
	if o.url == "" {
		return errors.New("-url is required")
	}
	u, err := url.Parse(o.url)
	if err != nil {
		return fmt.Errorf("-url: %w", err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return fmt.Errorf("-url: scheme %q: use https (or http)", u.Scheme)
	}
	if !loopback(u.Hostname()) {
		return fmt.Errorf("-url: host %q is not a loopback address; this tool measures local servers only", u.Hostname())
	}
	if o.n < 1 || o.n > maxRequests {
		return fmt.Errorf("-n must be 1..%d", maxRequests)
	}
	if o.c < 1 || o.c > maxConcurrency {
		return fmt.Errorf("-c must be 1..%d", maxConcurrency)
	}
	if o.duration <= 0 || o.duration > maxDuration {
		return fmt.Errorf("-duration must be in (0, %s]", maxDuration)
	}
	return nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

type result struct {
	sent, errors int
	firstError   string
	elapsed      time.Duration
	latencies    []time.Duration
}

// load sends up to o.n requests from o.c workers until done, the duration
// passes or ctx ends.
func load(ctx context.Context, client *http.Client, o options, body []byte) result {
	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	var (
		next      atomic.Int64
		mu        sync.Mutex
		res       result
		wg        sync.WaitGroup
		perWorker = make([][]time.Duration, o.c)
	)
	start := time.Now()
	for w := range o.c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && next.Add(1) <= int64(o.n) {
				t0 := time.Now()
				err := send(ctx, client, o, body)
				d := time.Since(t0)
				if ctx.Err() != nil && err != nil {
					return // cut off by the time bound, not a server error
				}
				perWorker[w] = append(perWorker[w], d)
				if err != nil {
					mu.Lock()
					res.errors++
					if res.firstError == "" {
						res.firstError = err.Error()
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	for _, l := range perWorker {
		res.latencies = append(res.latencies, l...)
	}
	res.sent = len(res.latencies)
	return res
}

func send(ctx context.Context, client *http.Client, o options, body []byte) error {
	code, out, err := httpjson.Post(ctx, client, o.url, body)
	if err != nil {
		return err
	}
	if code != o.expectCode {
		return fmt.Errorf("HTTP %d: %.200s", code, out)
	}
	if code == http.StatusOK {
		var rev struct {
			Response *struct {
				UID string `json:"uid"`
			} `json:"response"`
		}
		if err := json.Unmarshal(out, &rev); err != nil || rev.Response == nil {
			return fmt.Errorf("not an AdmissionReview response: %.200s", out)
		}
	}
	return nil
}

func (r result) print(w io.Writer) {
	fmt.Fprintf(w, "requests: %d\nerrors: %d\n", r.sent, r.errors)
	if r.firstError != "" {
		fmt.Fprintf(w, "first error: %s\n", r.firstError)
	}
	fmt.Fprintf(w, "elapsed: %s\n", r.elapsed.Round(time.Millisecond))
	if r.sent == 0 {
		return
	}
	fmt.Fprintf(w, "throughput: %.0f req/s\n", float64(r.sent)/r.elapsed.Seconds())
	l := slices.Clone(r.latencies)
	slices.Sort(l)
	pct := func(p float64) time.Duration { return l[min(len(l)-1, int(p*float64(len(l))))] }
	fmt.Fprintf(w, "latency: p50 %s  p90 %s  p99 %s  max %s\n", pct(.50), pct(.90), pct(.99), l[len(l)-1])
}

// defaultReview is a pod CREATE review for namespace default.
func defaultReview() []byte {
	b, _ := json.Marshal(map[string]any{
		"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
		"request": map[string]any{
			"uid":       "bench-0000",
			"kind":      map[string]string{"group": "", "version": "v1", "kind": "Pod"},
			"resource":  map[string]string{"group": "", "version": "v1", "resource": "pods"},
			"namespace": "default", "operation": "CREATE",
			"object": map[string]any{"apiVersion": "v1", "kind": "Pod",
				"metadata": map[string]any{"generateName": "web-", "namespace": "default", "labels": map[string]string{"app": "web"}},
				"spec": map[string]any{"terminationGracePeriodSeconds": 30, "containers": []any{
					map[string]any{"name": "web", "image": "nginx:1.27", "ports": []any{map[string]any{"containerPort": 8080}}},
				}}},
		},
	})
	return b
}
