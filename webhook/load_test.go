package webhook

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
)

// slowClient is a raw TLS connection that announces a body of announce
// bytes, sends them a KiB at a time every tick and records how the server
// ended it.
type slowClient struct {
	status   int // HTTP status the server answered with, 0 if none
	closedIn time.Duration
	err      error
}

func runSlowClient(ctx context.Context, url string, cfg *tls.Config, route string, announce int, tick time.Duration, started func()) slowClient {
	return runStallingClient(ctx, url, cfg, route, announce, 0, tick, started)
}

// burstBytes is what stalling clients send at once, allocated once so that
// the clients' own memory does not count in the server's heap growth.
var burstBytes = bytes.Repeat([]byte(" "), 3<<20)

// runStallingClient is runSlowClient that first sends burst bytes at once
// (at most len(burstBytes)).
func runStallingClient(ctx context.Context, url string, cfg *tls.Config, route string, announce, burst int, tick time.Duration, started func()) slowClient {
	start := time.Now()
	conn, err := tls.Dial("tcp", strings.TrimPrefix(url, "https://"), cfg)
	if err != nil {
		return slowClient{err: err}
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: gracekeeper\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", route, announce); err != nil {
		return slowClient{err: err}
	}
	if started != nil {
		started()
	}
	done := make(chan slowClient, 1)
	go func() {
		// The server's answer, then the end of the connection.
		var res slowClient
		br := bufio.NewReader(conn)
		if resp, err := http.ReadResponse(br, nil); err == nil {
			res.status = resp.StatusCode
			_, _ = io.Copy(io.Discard, resp.Body)
		}
		_, _ = io.Copy(io.Discard, br)
		res.closedIn = time.Since(start)
		done <- res
	}()
	if burst > 0 {
		go func() { _, _ = conn.Write(burstBytes[:burst]) }()
	}
	chunk := bytes.Repeat([]byte(" "), 1024)
	t := time.NewTicker(tick)
	defer t.Stop()
	for sent := burst; sent+len(chunk) < announce; sent += len(chunk) {
		select {
		case res := <-done:
			return res
		case <-ctx.Done():
			return slowClient{err: fmt.Errorf("still open when the test gave up after %s", time.Since(start))}
		case <-t.C:
		}
		if _, err := conn.Write(chunk); err != nil {
			break
		}
	}
	select {
	case res := <-done:
		return res
	case <-ctx.Done():
		return slowClient{err: fmt.Errorf("still open when the test gave up after %s", time.Since(start))}
	}
}

// heapInuse is the heap in use after a collection.
func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// postReview sends one AdmissionReview and decodes the answer.
func postReview(t *testing.T, c *http.Client, url, route string, body []byte) (*http.Response, *admissionv1.AdmissionReview, []byte) {
	t.Helper()
	resp, err := c.Post(url+route, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", route, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return resp, nil, out
	}
	var rev admissionv1.AdmissionReview
	if err := json.Unmarshal(out, &rev); err != nil || rev.Response == nil {
		t.Fatalf("not an AdmissionReview (%v): %s", err, out)
	}
	return resp, &rev, out
}

// TestSlowBodyClients: 40 connections that announce a 3 MiB body and then
// trickle it do not grow the heap by more than 16 MiB (the body buffer grows
// with what arrived, never from Content-Length; only MaxLargeInFlight of
// them are read at all, the rest get 429 at once), all are closed by the
// server (the ReadTimeout, for those being read), and a normal review sent
// while they hang is answered.
func TestSlowBodyClients(t *testing.T) {
	const (
		clients   = 40
		announce  = 3 << 20
		heapBound = 16 << 20
		timeout   = 2 * time.Second // the webhook timeout: the server's ReadTimeout
	)
	r, s, _ := startTLS(t, testSource(t), Config{RequestTimeout: timeout})
	normal := readCase(t, "validate-workloads-deployment-fit-allowed")
	// Warm up: TLS session machinery, decoders, policy set.
	postReview(t, r.client, r.url, RouteValidateWorkloads, normal)
	base := heapInuse()

	ctx, cancel := context.WithTimeout(context.Background(), timeout+20*time.Second)
	defer cancel()
	results := make([]slowClient, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = runSlowClient(ctx, r.url, &tls.Config{RootCAs: r.pool, MinVersion: tls.VersionTLS12}, RouteValidateWorkloads, announce, 50*time.Millisecond, nil)
		}()
	}
	// Sample the heap while they hang.
	var peak uint64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if h := heapInuse(); h > peak {
				peak = h
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()

	time.Sleep(timeout / 4) // they are connected and trickling
	answered := make(chan error, 1)
	go func() {
		resp, err := r.client.Post(r.url+RouteValidateWorkloads, "application/json", bytes.NewReader(normal))
		if err != nil {
			answered <- err
			return
		}
		defer resp.Body.Close()
		var rev admissionv1.AdmissionReview
		if err := json.NewDecoder(resp.Body).Decode(&rev); err != nil || resp.StatusCode != http.StatusOK || rev.Response == nil || !rev.Response.Allowed {
			answered <- fmt.Errorf("HTTP %d, decode %v, response %+v", resp.StatusCode, err, rev.Response)
			return
		}
		answered <- nil
	}()
	select {
	case err := <-answered:
		if err != nil {
			t.Errorf("normal review while slow clients hang: %v", err)
		}
	case <-time.After(timeout):
		// Well inside the webhook timeout the API server would allow.
		t.Errorf("normal review not answered within %s while slow clients hang", timeout)
	}

	wg.Wait()
	close(stopSampling)
	<-sampled
	var refused, timedOut int
	for i, res := range results {
		switch {
		case res.err != nil:
			t.Errorf("client %d: %v", i, res.err)
		case res.status == http.StatusTooManyRequests:
			refused++
		case res.status == http.StatusBadRequest || res.status == 0:
			// Read deadline hit: answered 400 when the write still went
			// through, else the connection just closed.
			timedOut++
			if res.closedIn < timeout {
				t.Errorf("client %d closed after %s, before the %s ReadTimeout", i, res.closedIn, timeout)
			}
		default:
			t.Errorf("client %d: HTTP %d", i, res.status)
		}
	}
	large := s.cfg.MaxLargeInFlight
	// Exactly large of them when every handshake is done before the first
	// ReadTimeout frees a slot; a very slow machine may let a late one in.
	if timedOut < large || refused == 0 || timedOut+refused != clients {
		t.Errorf("%d closed by the ReadTimeout, %d refused with 429; want %d (MaxLargeInFlight) and the rest", timedOut, refused, large)
	}
	grew := int64(peak) - int64(base)
	t.Logf("heap in use: base %.1f MiB, peak %.1f MiB while %d clients announced %d MiB each (grew %.1f MiB); %d read until the ReadTimeout, %d refused at once",
		float64(base)/(1<<20), float64(peak)/(1<<20), clients, announce>>20, float64(grew)/(1<<20), timedOut, refused)
	if grew > heapBound {
		t.Errorf("heap grew by %.1f MiB, bound %d MiB", float64(grew)/(1<<20), heapBound>>20)
	}
}

// TestStalledLargeBodies: 40 connections that announce 3 MiB, send all but
// 64 KiB of it at once and stall: only MaxLargeInFlight bodies are read,
// so the heap grows by at most about MaxLargeInFlight times the body (here
// bound: 4 x 3 MiB x 2 for buffer growth + 8 MiB = 32 MiB), not 40 times.
func TestStalledLargeBodies(t *testing.T) {
	const (
		clients  = 40
		announce = 3 << 20
		timeout  = 2 * time.Second
	)
	r, s, _ := startTLS(t, testSource(t), Config{RequestTimeout: timeout})
	postReview(t, r.client, r.url, RouteValidateWorkloads, readCase(t, "validate-workloads-deployment-fit-allowed"))
	base := heapInuse()
	ctx, cancel := context.WithTimeout(context.Background(), timeout+20*time.Second)
	defer cancel()
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if h := heapInuse(); h > peak.Load() {
				peak.Store(h)
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	var wg sync.WaitGroup
	results := make([]slowClient, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = runStallingClient(ctx, r.url, &tls.Config{RootCAs: r.pool, MinVersion: tls.VersionTLS12}, RouteValidateWorkloads, announce, announce-64<<10, time.Hour, nil)
		}()
	}
	wg.Wait()
	close(stop)
	<-sampled
	for i, res := range results {
		if res.err != nil {
			t.Errorf("client %d: %v", i, res.err)
		}
	}
	bound := int64(s.cfg.MaxLargeInFlight)*announce*2 + 8<<20
	grew := int64(peak.Load()) - int64(base)
	t.Logf("heap grew %.1f MiB with %d clients stalled after sending %d KiB each (bound %d MiB)", float64(grew)/(1<<20), clients, (announce-64<<10)>>10, bound>>20)
	if grew > bound {
		t.Errorf("heap grew by %.1f MiB, bound %d MiB", float64(grew)/(1<<20), bound>>20)
	}
}

// TestInFlightCap: when MaxInFlight requests are being read, the next gets
// 429 with Retry-After at once rather than waiting for a slot, and requests
// are served again once the slots are free.
func TestInFlightCap(t *testing.T) {
	const timeout = 10 * time.Second
	r, s, _ := startTLS(t, testSource(t), Config{MaxInFlight: 2, RequestTimeout: timeout})
	normal := readCase(t, "validate-workloads-deployment-fit-allowed")
	ctx, cancel := context.WithCancel(context.Background())
	var wg, started sync.WaitGroup
	for range 2 {
		wg.Add(1)
		started.Add(1)
		go func() {
			defer wg.Done()
			runSlowClient(ctx, r.url, &tls.Config{RootCAs: r.pool, MinVersion: tls.VersionTLS12}, RouteValidateWorkloads, 64<<10, 100*time.Millisecond, started.Done)
		}()
	}
	started.Wait()
	// Wait until the server holds both slow requests (their headers read).
	for end := time.Now().Add(timeout / 2); len(s.slots.all) < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("slow requests not in flight after %s (%d slots held)", timeout/2, len(s.slots.all))
		}
	}
	// Both slots are held until the slow requests' ReadTimeout: the next
	// request is refused at once, not queued behind them.
	resp, _, body := postReview(t, r.client, r.url, RouteValidateWorkloads, normal)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "too many admission requests") {
		t.Errorf("HTTP %d %v %q, want 429 with Retry-After and a clear message", resp.StatusCode, resp.Header, body)
	}
	cancel()
	wg.Wait()
	// Slots are released: served again.
	ok := false
	for end := time.Now().Add(timeout); !ok && time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		resp, rev, _ := postReview(t, r.client, r.url, RouteValidateWorkloads, normal)
		ok = resp.StatusCode == http.StatusOK && rev.Response.Allowed
	}
	if !ok {
		t.Error("not served again after the slow requests ended")
	}
}

// bigDeploymentReview is an UPDATE review of a Deployment whose object and
// oldObject each carry an annotation of size bytes (kubectl's
// last-applied-configuration is how real objects get that big).
func bigDeploymentReview(t *testing.T, size int, templateGrace int) []byte {
	t.Helper()
	ann := map[string]any{"kubectl.kubernetes.io/last-applied-configuration": strings.Repeat("x", size)}
	old := deployJSON(t, func(m map[string]any) { path(m, "metadata")["annotations"] = ann })
	obj := deployJSON(t, func(m map[string]any) {
		path(m, "metadata")["annotations"] = ann
		path(m, "spec")["replicas"] = 5
		path(m, "spec", "template", "spec")["terminationGracePeriodSeconds"] = templateGrace
	})
	body, err := json.Marshal(map[string]any{
		"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
		"request": map[string]any{
			"uid": "u-big", "kind": map[string]any{"group": "apps", "version": "v1", "kind": "Deployment"},
			"resource":  map[string]any{"group": "apps", "version": "v1", "resource": "deployments"},
			"namespace": "shop", "name": "strict", "operation": "UPDATE",
			"object": obj, "oldObject": old,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// TestLargeUpdateReview: a 5 MB UPDATE review of a 2.4 MB Deployment is
// answered (not 413), judged when its template changed; a body over the
// default 7 MiB limit gets a clear 413, announced or not.
func TestLargeUpdateReview(t *testing.T) {
	r, _, _ := startTLS(t, testSource(t), Config{})
	t.Run("5 MB, scale only: allowed", func(t *testing.T) {
		body := bigDeploymentReview(t, 2400_000, 30)
		if len(body) < 4800_000 {
			t.Fatalf("review is %d bytes, want about 5 MB", len(body))
		}
		resp, rev, out := postReview(t, r.client, r.url, RouteValidateWorkloads, body)
		if resp.StatusCode != http.StatusOK || !rev.Response.Allowed {
			t.Fatalf("HTTP %d: %.300s", resp.StatusCode, out)
		}
	})
	t.Run("5 MB, template changed and too tight: denied", func(t *testing.T) {
		resp, rev, out := postReview(t, r.client, r.url, RouteValidateWorkloads, bigDeploymentReview(t, 2400_000, 40))
		if resp.StatusCode != http.StatusOK || rev.Response.Allowed {
			t.Fatalf("HTTP %d, want a denial: %.300s", resp.StatusCode, out)
		}
	})
	over := bigDeploymentReview(t, 3700_000, 30) // > 7 MiB
	for name, chunked := range map[string]bool{"over the limit, announced": false, "over the limit, chunked": true} {
		t.Run(name, func(t *testing.T) {
			var rd io.Reader = bytes.NewReader(over)
			if chunked {
				rd = io.MultiReader(rd) // hides the length: sent chunked
			}
			req, err := http.NewRequest(http.MethodPost, r.url+RouteValidateWorkloads, rd)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := r.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			out, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(out), "limit of 7340032 bytes") {
				t.Errorf("HTTP %d %q, want 413 naming the 7340032-byte limit", resp.StatusCode, out)
			}
		})
	}
}
