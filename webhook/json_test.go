package webhook

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
)

// TestFastDecodeMatches: the fast one-pass pod decode (goccy/go-json) and
// the careful two-pass decode (sigs.k8s.io/json, as the API server) give
// the same request and pod on every pod request in testdata.
func TestFastDecodeMatches(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "cases", "*", "request.json"))
	if err != nil {
		t.Fatal(err)
	}
	bench, _ := filepath.Glob(filepath.Join("testdata", "bench", "*.json"))
	files = append(files, bench...)
	checked := 0
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		slow, err := decodeEnvelope(body)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if slow.Kind != podGVK {
			continue
		}
		want, err := decodePod(slow)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		var e podEnvelope
		if err := fastUnmarshal(body, &e); err != nil {
			t.Fatalf("%s: fast decode: %v", f, err)
		}
		if e.Request == nil || e.Request.requestHeader != slow.requestHeader {
			t.Errorf("%s: request header differs: %+v vs %+v", f, e.Request, slow.requestHeader)
			continue
		}
		if !equality.Semantic.DeepEqual(e.Request.Object, want) {
			t.Errorf("%s: pods differ", f)
		}
		checked++
	}
	if checked < 10 {
		t.Fatalf("only %d pod requests checked", checked)
	}
}

// TestDecodePodReviewFallsBack: input the fast path refuses still gets the
// careful path's precise message.
func TestDecodePodReviewFallsBack(t *testing.T) {
	body, err := os.ReadFile(filepath.Join("testdata", "cases", "mutate-fit-raises-grace", "request.json"))
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(body), `"terminationGracePeriodSeconds": 10`, `"terminationGracePeriodSeconds": "ten"`, 1)
	if bad == string(body) {
		t.Fatal("test input not edited")
	}
	hdr, pod, err := decodePodReview([]byte(bad))
	if err == nil || pod != nil || !strings.Contains(err.Error(), "not a valid Pod") || hdr.UID != "u-2" {
		t.Fatalf("got %v, %v, %v", hdr, pod, err)
	}
}
