package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	kjson "sigs.k8s.io/json"
)

var update = flag.Bool("update", false, "rewrite testdata/cases/*/want.golden.json from the current output")

// routeOf maps a case name prefix to its route.
func routeOf(t *testing.T, name string) string {
	switch {
	case strings.HasPrefix(name, "mutate-"):
		return RouteMutatePods
	case strings.HasPrefix(name, "validate-pods-"):
		return RouteValidatePods
	case strings.HasPrefix(name, "validate-workloads-"):
		return RouteValidateWorkloads
	}
	t.Fatalf("case %q: name must start with mutate-, validate-pods- or validate-workloads-", name)
	return ""
}

// golden is what a case's want.golden.json holds: the AdmissionReview
// response with the patch decoded (base64 JSON is unreadable in review),
// and the request object after applying that patch to the raw bytes.
type golden struct {
	Response json.RawMessage `json:"response"`
	Patch    json.RawMessage `json:"patch,omitempty"`
	Patched  json.RawMessage `json:"patchedObject,omitempty"`
}

// TestGolden runs every testdata/cases/*/request.json through Server.Review
// and compares with want.golden.json (-update rewrites). Every case decodes
// with the upstream admission/v1 types (strictly, so our hand-rolled
// response type cannot drift), and every mutation case applies its patch to
// the raw request object and runs again expecting no patch (reinvocation).
func TestGolden(t *testing.T) {
	s, _ := newTestServer(t, testSource(t), Config{})
	dirs, err := filepath.Glob(filepath.Join("testdata", "cases", "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) < 15 {
		t.Fatalf("only %d golden cases found", len(dirs))
	}
	for _, dir := range dirs {
		name := filepath.Base(dir)
		t.Run(name, func(t *testing.T) {
			route := routeOf(t, name)
			req, err := os.ReadFile(filepath.Join(dir, "request.json"))
			if err != nil {
				t.Fatalf("stale golden: %s has no request.json (%v); delete the directory", dir, err)
			}
			rev, got := runCase(t, s, route, req)
			goldenPath := filepath.Join(dir, "want.golden.json")
			if *update {
				if err := os.WriteFile(goldenPath, got, 0o644); err != nil {
					t.Fatal(err)
				}
			} else {
				want, err := os.ReadFile(goldenPath)
				if err != nil {
					t.Fatalf("no golden (run go test ./webhook -run TestGolden -update): %v", err)
				}
				if !bytes.Equal(want, got) {
					t.Errorf("response differs from %s (rerun with -update and review the diff):\n--- want\n%s\n--- got\n%s", goldenPath, want, got)
				}
			}
			// Fields our Go types do not know must survive the patch.
			var g golden
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{`"futureField"`, `"futureMeta"`} {
				if len(g.Patched) > 0 && bytes.Contains(req, []byte(f)) && !bytes.Contains(g.Patched, []byte(f)) {
					t.Errorf("unknown field %s lost by the patch", f)
				}
			}
			if route != RouteMutatePods {
				if rev.Response.Patch != nil {
					t.Errorf("validating route returned a patch")
				}
				return
			}
			t.Run("second pass yields no patch", func(t *testing.T) {
				req2 := req
				if len(g.Patched) > 0 {
					req2 = withObject(t, req, g.Patched)
				}
				rev2, _ := runCase(t, s, route, req2)
				if rev2.Response.Patch != nil {
					t.Errorf("second pass patched again: %s", rev2.Response.Patch)
				}
			})
		})
	}
}

// runCase reviews one request and returns the decoded review and the
// golden document for it.
func runCase(t *testing.T, s *Server, route string, req []byte) (*admissionv1.AdmissionReview, []byte) {
	t.Helper()
	code, out, _ := s.Review(context.Background(), route, req)
	if code != http.StatusOK {
		t.Fatalf("HTTP %d: %s", code, out)
	}
	var rev admissionv1.AdmissionReview
	if strict, err := kjson.UnmarshalStrict(out, &rev); err != nil || len(strict) > 0 {
		t.Fatalf("response is not a strict admission/v1 AdmissionReview: %v %v\n%s", err, strict, out)
	}
	if rev.Response == nil || rev.Request != nil {
		t.Fatalf("response must carry response and no request: %s", out)
	}
	var in struct {
		Request struct {
			UID    string          `json:"uid"`
			Object json.RawMessage `json:"object"`
		} `json:"request"`
	}
	if err := json.Unmarshal(req, &in); err != nil {
		t.Fatal(err)
	}
	if string(rev.Response.UID) != in.Request.UID {
		t.Errorf("response uid %q, want the request's %q", rev.Response.UID, in.Request.UID)
	}
	var g golden
	var generic map[string]any
	if err := json.Unmarshal(out, &generic); err != nil {
		t.Fatal(err)
	}
	resp := generic["response"].(map[string]any)
	if rev.Response.Patch != nil {
		if rev.Response.PatchType == nil || *rev.Response.PatchType != admissionv1.PatchTypeJSONPatch {
			t.Errorf("patch without patchType JSONPatch")
		}
		delete(resp, "patch")
		g.Patch = indent(t, rev.Response.Patch)
		p, err := jsonpatchapply.DecodePatch(rev.Response.Patch)
		if err != nil {
			t.Fatalf("patch does not decode: %v", err)
		}
		patched, err := p.Apply(in.Request.Object)
		if err != nil {
			t.Fatalf("patch does not apply to the raw object: %v", err)
		}
		g.Patched = indent(t, patched)
	}
	rb, err := json.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	g.Response = indent(t, rb)
	doc, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return &rev, append(doc, '\n')
}

func indent(t *testing.T, b []byte) json.RawMessage {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "  ", "  "); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// withObject returns the request with request.object replaced.
func withObject(t *testing.T, req []byte, obj json.RawMessage) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(req, &m); err != nil {
		t.Fatal(err)
	}
	var o any
	if err := json.Unmarshal(obj, &o); err != nil {
		t.Fatal(err)
	}
	m["request"].(map[string]any)["object"] = o
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGoldenNotStale fails on golden files that no case produces.
func TestGoldenNotStale(t *testing.T) {
	goldens, err := filepath.Glob(filepath.Join("testdata", "cases", "*", "*.golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(goldens) == 0 && !*update {
		t.Fatal("no golden files: run with -update")
	}
	for _, g := range goldens {
		if filepath.Base(g) != "want.golden.json" {
			t.Errorf("stale golden %s: only want.golden.json is read", g)
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(g), "request.json")); err != nil {
			t.Errorf("stale golden %s: no request.json beside it", g)
		}
	}
}
