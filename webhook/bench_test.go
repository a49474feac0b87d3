package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// The benchmarks compare, on the same AdmissionReview bytes:
//   - floor: json.Valid, the least any JSON handler must do;
//   - ours: Server.Handler().ServeHTTP with an httptest recorder (routing,
//     content type, body limit, decode, engine, patch, encode);
//   - controller-runtime: admission.Webhook.ServeHTTP with a handler that
//     decodes into corev1.Pod with admission.Decoder, runs the same engine
//     and answers with admission.PatchResponseFromRaw (the usual
//     kubebuilder webhook).
// BenchmarkRatios times them interleaved in one loop, so noise on a shared
// machine hits all alike, and reports the ratios the targets are about.

func benchPolicies(n int) []v1alpha1.LifecyclePolicy {
	five, ten, max := int64(5), int64(10), int64(120)
	pols := make([]v1alpha1.LifecyclePolicy, 0, n)
	for i := range n {
		name := fmt.Sprintf("svc-%04d", i)
		p := v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
		p.Spec.Priority = int32(i % 7)
		p.Spec.Match.PodSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}
		if i%4 == 3 {
			p.Spec.Match.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}
		}
		p.Spec.Match.ExcludeContainers = []string{"istio-proxy"}
		p.Spec.PreStop = &v1alpha1.PreStopHook{HookAction: v1alpha1.HookAction{Sleep: &v1alpha1.SleepAction{Seconds: five}}}
		p.Spec.ShutdownSeconds = &ten
		p.Spec.TerminationGracePeriod = &v1alpha1.TerminationGracePeriod{Fit: true, MaxSeconds: &max}
		p.Spec.Finalizers = []v1alpha1.BuiltinFinalizer{v1alpha1.TerminationRecordFinalizer}
		pols = append(pols, p)
	}
	return pols
}

type benchEnv struct {
	body []byte
	srv  *Server
	ours http.Handler
	cr   http.Handler
}

func newBenchEnv(b *testing.B, file string, n int) *benchEnv {
	b.Helper()
	body, err := os.ReadFile(filepath.Join("testdata", "bench", file))
	if err != nil {
		b.Fatal(err)
	}
	set, fs := policies.NewSet(policies.Config{ExcludedNamespaces: []string{"kube-system"}}, benchPolicies(n))
	if len(fs) > 0 {
		b.Fatal(fs)
	}
	src := StaticSource{Policies: set, Namespaces: testNamespaces()}
	s, _ := newTestServer(b, src, Config{})
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		b.Fatal(err)
	}
	decoder := admission.NewDecoder(scheme)
	cr := &admission.Webhook{LogConstructor: func(logr.Logger, *admission.Request) logr.Logger { return logr.Discard() }, Handler: admission.HandlerFunc(func(ctx context.Context, req admission.Request) admission.Response {
		pod := &corev1.Pod{}
		if err := decoder.Decode(req, pod); err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
		ns, err := src.Namespace(ctx, req.Namespace)
		if err != nil {
			return admission.Errored(http.StatusInternalServerError, err)
		}
		d := set.Mutate(pod, ns)
		if !d.Changed {
			return admission.Allowed("")
		}
		out, err := json.Marshal(d.Pod)
		if err != nil {
			return admission.Errored(http.StatusInternalServerError, err)
		}
		return admission.PatchResponseFromRaw(req.Object.Raw, out)
	})}
	e := &benchEnv{body: body, srv: s, ours: s.Handler(), cr: cr}
	// Both must patch, or the comparison is meaningless.
	for name, h := range map[string]http.Handler{"ours": e.ours, "controller-runtime": e.cr} {
		rec := e.serve(h, RouteMutatePods)
		if rec.Code != http.StatusOK || !bytes.Contains(rec.Body.Bytes(), []byte(`"patch"`)) {
			b.Fatalf("%s did not patch (HTTP %d): %s", name, rec.Code, rec.Body.Bytes())
		}
	}
	return e
}

func (e *benchEnv) serve(h http.Handler, route string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, route, bytes.NewReader(e.body))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

var benchSizes = []struct{ name, file string }{{"6KB", "pod-6k.json"}, {"23KB", "pod-23k.json"}}

// BenchmarkHandlers gives ns/op and allocations of each path separately.
func BenchmarkHandlers(b *testing.B) {
	for _, size := range benchSizes {
		for _, n := range []int{10, 1000} {
			e := newBenchEnv(b, size.file, n)
			b.Run(fmt.Sprintf("size=%s/policies=%d/floor-json.Valid", size.name, n), func(b *testing.B) {
				b.SetBytes(int64(len(e.body)))
				for b.Loop() {
					if !json.Valid(e.body) {
						b.Fatal("invalid")
					}
				}
			})
			for _, route := range []string{RouteMutatePods, RouteValidatePods} {
				b.Run(fmt.Sprintf("size=%s/policies=%d/ours%s", size.name, n, route), func(b *testing.B) {
					b.SetBytes(int64(len(e.body)))
					b.ReportAllocs()
					for b.Loop() {
						if w := e.serve(e.ours, route); w.Code != http.StatusOK {
							b.Fatal(w.Code)
						}
					}
				})
			}
			b.Run(fmt.Sprintf("size=%s/policies=%d/controller-runtime/mutate-pods", size.name, n), func(b *testing.B) {
				b.SetBytes(int64(len(e.body)))
				b.ReportAllocs()
				for b.Loop() {
					if w := e.serve(e.cr, RouteMutatePods); w.Code != http.StatusOK {
						b.Fatal(w.Code)
					}
				}
			})
		}
	}
}

// BenchmarkRatios reports, per size: ours(10 policies)/floor
// ("mutate-x-floor" through ServeHTTP with an httptest recorder, and
// "mutate-noHTTP-x-floor" calling Server.Review on the body bytes; target
// <= 4), controller-runtime/ours through ServeHTTP ("x-faster-than-cr",
// target >= 3), ours(1000)/ours(10) ("x-1000-vs-10", target <= 2), and the
// validating handler's "validate-x-floor".
//
// The variants run in the same loop in turns of 32 calls each, in a random
// order per round, so machine noise hits all alike, while each one pays
// (mostly) for its own garbage: interleaving single calls would bill
// controller-runtime's allocations to whichever handler runs after it. (testing.Benchmark cannot be nested in a
// running benchmark, hence one loop.)
func BenchmarkRatios(b *testing.B) {
	for _, size := range benchSizes {
		b.Run("size="+size.name, func(b *testing.B) {
			small, large := newBenchEnv(b, size.file, 10), newBenchEnv(b, size.file, 1000)
			ctx := log.IntoContext(context.Background(), logr.Discard())
			variants := []func(){
				func() { json.Valid(small.body) },
				func() { small.serve(small.ours, RouteMutatePods) },
				func() { large.serve(large.ours, RouteMutatePods) },
				func() { small.serve(small.ours, RouteValidatePods) },
				func() { small.serve(small.cr, RouteMutatePods) },
				func() { small.srv.Review(ctx, RouteMutatePods, small.body) },
			}
			const turn = 32
			total := make([]time.Duration, len(variants))
			count := make([]int, len(variants))
			// Each round runs every variant for one turn, in a fresh random
			// order, so no variant always follows the same one (the one
			// after the allocation-free floor would otherwise pay the GC
			// work the others left behind).
			rng := rand.New(rand.NewPCG(1, 2))
			order := rng.Perm(len(variants))
			for i := 0; b.Loop(); i++ {
				slot := (i / turn) % len(variants)
				if slot == 0 && i%turn == 0 {
					order = rng.Perm(len(variants))
				}
				v := order[slot]
				t0 := time.Now()
				variants[v]()
				total[v] += time.Since(t0)
				count[v]++
			}
			mean := func(v int) float64 {
				if count[v] == 0 {
					b.Fatalf("variant %d never ran: use -benchtime of at least %dx", v, turn*len(variants))
				}
				return float64(total[v]) / float64(count[v])
			}
			floor, mut10, mut1000, val10, cr, direct := mean(0), mean(1), mean(2), mean(3), mean(4), mean(5)
			b.ReportMetric(mut10/floor, "mutate-x-floor")
			b.ReportMetric(direct/floor, "mutate-noHTTP-x-floor")
			b.ReportMetric(val10/floor, "validate-x-floor")
			b.ReportMetric(cr/mut10, "x-faster-than-cr")
			b.ReportMetric(mut1000/mut10, "x-1000-vs-10")
			b.ReportMetric(0, "ns/op") // the ratios are the result
		})
	}
}
