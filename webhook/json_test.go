package webhook

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	serjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

// TestOnePassDecodeMatches: the one-pass pod decode and the careful
// two-pass decode give the same request and pod on every pod request in
// testdata.
func TestOnePassDecodeMatches(t *testing.T) {
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
		hdr, pod, err := decodePodReview(body)
		if err != nil {
			t.Fatalf("%s: one-pass decode: %v", f, err)
		}
		if hdr.UID != slow.UID || hdr.Kind != slow.Kind || hdr.Namespace != slow.Namespace || hdr.Name != slow.Name || hdr.Operation != slow.Operation {
			t.Errorf("%s: request header differs: %+v vs %+v", f, hdr, slow.requestHeader)
			continue
		}
		if !equality.Semantic.DeepEqual(pod, want) {
			t.Errorf("%s: pods differ", f)
		}
		checked++
	}
	if checked < 10 {
		t.Fatalf("only %d pod requests checked", checked)
	}
}

// apiServerDecode decodes a pod as kube-apiserver decodes a create body:
// apimachinery's JSON serializer in strict mode (which the handler then
// turns into warnings under fieldValidation=Warn).
func apiServerDecode(t *testing.T, obj []byte) (*corev1.Pod, error) {
	t.Helper()
	s := serjson.NewSerializerWithOptions(serjson.DefaultMetaFactory, clientgoscheme.Scheme, clientgoscheme.Scheme, serjson.SerializerOptions{Strict: true})
	pod := &corev1.Pod{}
	_, _, err := s.Decode(obj, nil, pod)
	if err != nil && !runtime.IsStrictDecodingError(err) {
		t.Fatalf("the API server's decoder refused the object: %v", err)
	}
	return pod, err
}

// TestDecodeReadsAsTheAPIServer: keys in another case are not the fields
// they resemble, repeated keys count last, and the pod the handler sees is
// the pod apimachinery's own strict decoder sees; repeated keys become
// warnings on the answer.
func TestDecodeReadsAsTheAPIServer(t *testing.T) {
	cases := map[string]struct {
		object        string
		annotations   map[string]string
		containers    int
		wantDuplicate bool
	}{
		"oddly cased annotations are an unknown field": {
			object:      `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","annotatioNs":{"gracekeeper.dev/skip":"true"}},"spec":{"containers":[{"name":"a","image":"i"}]}}`,
			annotations: nil, containers: 1,
		},
		"oddly cased spec is an unknown field": {
			object:     `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"Spec":{"containers":[{"name":"b","image":"i"}]},"spec":{"containers":[{"name":"a","image":"i"}]}}`,
			containers: 1,
		},
		"repeated annotation key: the last counts": {
			object:        `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","annotations":{"gracekeeper.dev/shutdown-seconds":"0","gracekeeper.dev/shutdown-seconds":"30"}},"spec":{"containers":[{"name":"a","image":"i"}]}}`,
			annotations:   map[string]string{"gracekeeper.dev/shutdown-seconds": "30"},
			containers:    1,
			wantDuplicate: true,
		},
		"repeated metadata: merged, the last value of each field counts": {
			object:        `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","annotations":{"x":"1"}},"metadata":{"annotations":{"y":"2"}},"spec":{"containers":[{"name":"a","image":"i"}]}}`,
			annotations:   map[string]string{"x": "1", "y": "2"},
			containers:    1,
			wantDuplicate: true,
		},
	}
	s, _ := newTestServer(t, testSource(t), Config{})
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			want, strictErr := apiServerDecode(t, []byte(tc.object))
			body := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"namespace":"shop","operation":"CREATE","object":` + tc.object + `}}`
			_, pod, err := decodePodReview([]byte(body))
			if err != nil {
				t.Fatal(err)
			}
			if !equality.Semantic.DeepEqual(pod, want) {
				t.Fatalf("the handler reads\n%+v\nthe API server reads\n%+v", pod, want)
			}
			if !equality.Semantic.DeepEqual(pod.Annotations, tc.annotations) || len(pod.Spec.Containers) != tc.containers {
				t.Fatalf("annotations %v, %d containers; want %v, %d", pod.Annotations, len(pod.Spec.Containers), tc.annotations, tc.containers)
			}
			if (strictErr != nil && strings.Contains(strictErr.Error(), "duplicate field")) != tc.wantDuplicate {
				t.Fatalf("the API server's strict decode says %v; the case expects duplicate=%v", strictErr, tc.wantDuplicate)
			}
			_, out, _ := s.Review(context.Background(), RouteValidatePods, []byte(body))
			var rev struct {
				Response struct {
					Warnings []string `json:"warnings"`
				} `json:"response"`
			}
			if err := json.Unmarshal(out, &rev); err != nil {
				t.Fatal(err)
			}
			got := strings.Contains(strings.Join(rev.Response.Warnings, "\n"), "duplicate field")
			if got != tc.wantDuplicate {
				t.Fatalf("warnings %q: duplicate reported = %v, want %v", rev.Response.Warnings, got, tc.wantDuplicate)
			}
		})
	}
}

// TestDecodePodReviewFallsBack: input the one-pass decode refuses still
// gets the careful path's precise message.
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
