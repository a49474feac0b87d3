package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"
)

// The fuzz targets below run their seeds and testdata/fuzz/<Target>/ on
// every `go test`; `make fuzz-short` explores each for a few seconds and
// `make fuzz` for longer.

var fuzzRoutes = []string{RouteMutatePods, RouteValidatePods, RouteValidateWorkloads}

// fuzzAnswer checks what every answer must be: HTTP 200 with an
// AdmissionReview v1 echoing a response, or an HTTP error with a message;
// never a panic (Review recovers nothing: a panic fails the target).
func fuzzAnswer(t *testing.T, code int, out []byte) *response {
	t.Helper()
	if code != http.StatusOK {
		if code < 400 || len(out) == 0 {
			t.Fatalf("HTTP %d with body %q", code, out)
		}
		return nil
	}
	var rev struct {
		APIVersion string    `json:"apiVersion"`
		Kind       string    `json:"kind"`
		Response   *response `json:"response"`
	}
	if err := kjson.UnmarshalCaseSensitivePreserveInts(out, &rev); err != nil || rev.APIVersion != "admission.k8s.io/v1" || rev.Kind != "AdmissionReview" || rev.Response == nil {
		t.Fatalf("answer is not an AdmissionReview (%v): %s", err, out)
	}
	if !rev.Response.Allowed && rev.Response.Result == nil {
		t.Fatalf("refused without a status: %s", out)
	}
	return rev.Response
}

func fuzzSeeds(f *testing.F) [][]byte {
	files, err := filepath.Glob(filepath.Join("testdata", "cases", "*", "request.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed requests: %v", err)
	}
	var out [][]byte
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// FuzzReviewBytes: arbitrary bytes on every route get an AdmissionReview
// (400 for bad input) or an HTTP error, never a panic or a hang.
func FuzzReviewBytes(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(uint8(0), s)
	}
	for _, s := range []string{"", "null", "{}", "[]", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","object":1}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"object":{"spec":{"containers":[null]}}}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","uid":"v","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":{"metadata":{"annotatioNs":{"gracekeeper.dev/skip":"true"}}}}}`} {
		f.Add(uint8(1), []byte(s))
	}
	s, _ := newTestServer(f, testSource(f), Config{})
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		code, out, _ := s.Review(context.Background(), fuzzRoutes[int(route)%len(fuzzRoutes)], body)
		fuzzAnswer(t, code, out)
	})
}

// FuzzMutatePodObject: a structurally valid pod review around any object
// bytes. Differential check: every patch applies to the raw object as the
// API server applies it (evanphx/json-patch), the patched object decodes
// as a Pod with the API server's decoder, and a second pass over it yields
// no patch and no different verdict (reinvocationPolicy: IfNeeded).
func FuzzMutatePodObject(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		var rev struct {
			Request struct {
				Kind   struct{ Kind string } `json:"kind"`
				Object json.RawMessage       `json:"object"`
			} `json:"request"`
		}
		if json.Unmarshal(s, &rev) == nil && rev.Request.Kind.Kind == "Pod" {
			f.Add(string(rev.Request.Object), "shop")
		}
	}
	for _, obj := range []string{
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"app":"web"},"annotatioNs":{"x":"y"}},"spec":{"containers":[{"name":"web","image":"i"}]}}`,
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"app":"web"},"labels":{"app":"strict"}},"spec":{"containers":[{"name":"web","image":"i"}]}}`,
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"app":"web"},"annotations":{"gracekeeper.dev/shutdown-seconds":"0","gracekeeper.dev/prestop-seconds":"99999"}},"spec":{"terminationGracePeriodSeconds":1,"containers":[{"name":"web","image":"i","lifecycle":{"preStop":{"exec":{"command":["sh"]}}}}]}}`,
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"app":"web","gracekeeper.dev/finalize":"true"},"finalizers":["gracekeeper.dev/termination-record"]},"spec":{"Containers":[],"containers":[{"name":"web","image":"i"}],"initContainers":[{"name":"s","image":"i","restartPolicy":"Always"}]}}`,
	} {
		f.Add(obj, "shop")
	}
	s, _ := newTestServer(f, testSource(f), Config{})
	f.Fuzz(func(t *testing.T, obj, ns string) {
		if strings.ContainsAny(ns, `"\`) || !json.Valid([]byte(obj)) {
			return // the envelope must stay valid: this target is about the object
		}
		wrap := func(o []byte) []byte {
			return []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"f","kind":{"group":"","version":"v1","kind":"Pod"},"namespace":"` + ns + `","operation":"CREATE","object":` + string(o) + `}}`)
		}
		code, out, _ := s.Review(context.Background(), RouteMutatePods, wrap([]byte(obj)))
		resp := fuzzAnswer(t, code, out)
		if resp == nil || len(resp.Patch) == 0 {
			return
		}
		patch, err := jsonpatchapply.DecodePatch(resp.Patch)
		if err != nil {
			t.Fatalf("patch does not decode: %v\n%s", err, resp.Patch)
		}
		patched, err := patch.Apply([]byte(obj))
		if err != nil {
			t.Fatalf("patch does not apply to the raw object: %v\npatch %s\nobject %s", err, resp.Patch, obj)
		}
		var pod corev1.Pod
		if err := kjson.UnmarshalCaseSensitivePreserveInts(patched, &pod); err != nil {
			t.Fatalf("patched object is not a Pod: %v\n%s", err, patched)
		}
		code2, out2, _ := s.Review(context.Background(), RouteMutatePods, wrap(patched))
		again := fuzzAnswer(t, code2, out2)
		if again == nil || len(again.Patch) > 0 {
			t.Fatalf("second pass patched again (or failed): %s\nfirst patch %s\nobject %s", out2, resp.Patch, obj)
		}
		// The validating pass sees the same pod the same way before and after a
		// no-op re-encode: the verdict depends on content, not on bytes.
		v1c, v1, _ := s.Review(context.Background(), RouteValidatePods, wrap(patched))
		re, _ := json.Marshal(json.RawMessage(patched))
		v2c, v2, _ := s.Review(context.Background(), RouteValidatePods, wrap(bytes.TrimSpace(re)))
		if a, b := fuzzAnswer(t, v1c, v1), fuzzAnswer(t, v2c, v2); (a == nil) != (b == nil) || a != nil && a.Allowed != b.Allowed {
			t.Fatalf("validation differs for the same object: %s vs %s", v1, v2)
		}
	})
}
