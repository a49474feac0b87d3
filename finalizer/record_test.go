package finalizer

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/gracekeeper/gracekeeper/policies"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// t0 is when the deletion was requested; the grace deadline is t0+grace.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func terminated(code int32, reason string, finished time.Time) corev1.ContainerState {
	return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: code, Reason: reason, FinishedAt: metav1.NewTime(finished),
	}}
}

// deletedPod is a pod deleted at t0 with the given grace, as the API server
// leaves it: deletionTimestamp = t0 + grace.
func deletedPod(grace int64, node string, containers []string, statuses ...corev1.ContainerStatus) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", UID: "0a0b0c0d-1111-2222-3333-444455556666",
			DeletionTimestamp:          ptr.To(metav1.NewTime(t0.Add(time.Duration(grace) * time.Second))),
			DeletionGracePeriodSeconds: ptr.To(grace)},
		Spec:   corev1.PodSpec{NodeName: node, TerminationGracePeriodSeconds: ptr.To(grace)},
		Status: corev1.PodStatus{ContainerStatuses: statuses},
	}
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c})
	}
	return p
}

type recordGolden struct {
	Reason  string         `json:"reason"`
	Type    string         `json:"type"`
	Message string         `json:"message"`
	Request CleanupRequest `json:"request"`
}

// TestRecordGolden pins the termination Event (reason, type, message) and the
// cleanup POST body, a contract for endpoint authors, per kind of ending.
func TestRecordGolden(t *testing.T) {
	sidecar := corev1.ContainerRestartPolicyAlways
	cases := map[string]struct {
		pod   func() *corev1.Pod
		cause Cause
	}{
		"completed": {cause: CauseEnded, pod: func() *corev1.Pod {
			return deletedPod(30, "n1", []string{"web"}, corev1.ContainerStatus{Name: "web", State: terminated(0, "Completed", t0.Add(4*time.Second))})
		}},
		"oomkilled": {cause: CauseEnded, pod: func() *corev1.Pod {
			return deletedPod(30, "n1", []string{"web"}, corev1.ContainerStatus{Name: "web", State: terminated(137, "OOMKilled", t0.Add(31*time.Second))})
		}},
		"overrun": {cause: CauseEnded, pod: func() *corev1.Pod {
			return deletedPod(30, "n1", []string{"web", "log"},
				corev1.ContainerStatus{Name: "web", State: terminated(137, "Error", t0.Add(30*time.Second))},
				corev1.ContainerStatus{Name: "log", State: terminated(143, "Error", t0.Add(2*time.Second))})
		}},
		"sigkill before the deadline is no overrun": {cause: CauseEnded, pod: func() *corev1.Pod {
			return deletedPod(30, "n1", []string{"web"}, corev1.ContainerStatus{Name: "web", State: terminated(137, "Error", t0.Add(29*time.Second))})
		}},
		"exited before the deletion": {cause: CauseEnded, pod: func() *corev1.Pod {
			return deletedPod(30, "n1", []string{"job"}, corev1.ContainerStatus{Name: "job", State: terminated(0, "Completed", t0.Add(-time.Minute))})
		}},
		"sidecar": {cause: CauseEnded, pod: func() *corev1.Pod {
			p := deletedPod(10, "n1", []string{"app"}, corev1.ContainerStatus{Name: "app", State: terminated(0, "Completed", t0.Add(3*time.Second))})
			p.Spec.InitContainers = []corev1.Container{{Name: "init"}, {Name: "proxy", RestartPolicy: &sidecar}}
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "proxy", State: terminated(0, "Completed", t0.Add(5*time.Second))}}
			return p
		}},
		"kubelet confirmed the deletion first": {cause: CauseEnded, pod: func() *corev1.Pod {
			// status_manager's final delete with grace 0 moved deletionTimestamp.
			p := deletedPod(0, "n1", []string{"web", "log"},
				corev1.ContainerStatus{Name: "web", State: terminated(137, "Error", t0.Add(-time.Second))},
				corev1.ContainerStatus{Name: "log", State: terminated(0, "Completed", t0.Add(-9*time.Second))})
			p.Spec.TerminationGracePeriodSeconds = ptr.To[int64](45)
			return p
		}},
		"never scheduled": {cause: CauseNeverScheduled, pod: func() *corev1.Pod {
			return deletedPod(0, "", []string{"web"})
		}},
		"node lost": {cause: CauseNodeLost, pod: func() *corev1.Pod {
			return deletedPod(30, "n9", []string{"web", "db"}, corev1.ContainerStatus{Name: "db", State: terminated(0, "Completed", t0.Add(time.Second))})
		}},
	}
	seen := map[string]bool{}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			pod := tc.pod()
			rec := buildRecord(pod, tc.cause)
			reason, typ := rec.eventReason()
			owner := Owner{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: "d-uid"}
			got := recordGolden{Reason: reason, Type: typ, Message: rec.message(pod),
				Request: newCleanupRequest(pod, owner, rec, target{policy: "ipam", finalizer: "example.com/release-ip"})}
			raw, err := json.MarshalIndent(got, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			raw = append(raw, '\n')
			file := filepath.Join("testdata", "record-"+strings.ReplaceAll(name, " ", "-")+".golden.json")
			seen[file] = true
			if *update {
				if err := os.WriteFile(file, raw, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run `go test ./finalizer -run TestRecordGolden -update`)", err)
			}
			if string(want) != string(raw) {
				t.Errorf("%s differs (run with -update if intended):\n--- got\n%s\n--- want\n%s", file, raw, want)
			}
		})
	}
	// Stale goldens: a file no case writes is a case that was removed or renamed.
	files, _ := filepath.Glob(filepath.Join("testdata", "record-*.golden.json"))
	for _, f := range files {
		if !seen[f] {
			if *update {
				_ = os.Remove(f)
				continue
			}
			t.Errorf("stale golden %s: no case produces it (run with -update to delete)", f)
		}
	}
}

// TestContainerEnds checks the fields the golden text is made of, one rule at a time.
func TestContainerEnds(t *testing.T) {
	cases := map[string]struct {
		status      corev1.ContainerStatus
		wantState   string
		wantOverrun bool
		wantSignal  int32
		wantSeconds *int64 // nil: absent
		wantLabel   string
	}{
		"exit 0":                      {status: corev1.ContainerStatus{Name: "c", State: terminated(0, "Completed", t0.Add(5*time.Second))}, wantState: "terminated", wantSeconds: ptr.To[int64](5), wantLabel: "Completed"},
		"SIGTERM honoured":            {status: corev1.ContainerStatus{Name: "c", State: terminated(143, "Error", t0.Add(7*time.Second))}, wantState: "terminated", wantSignal: 15, wantSeconds: ptr.To[int64](7), wantLabel: "Error"},
		"killed at deadline":          {status: corev1.ContainerStatus{Name: "c", State: terminated(137, "Error", t0.Add(20*time.Second))}, wantState: "terminated", wantOverrun: true, wantSignal: 9, wantSeconds: ptr.To[int64](20), wantLabel: "Error"},
		"killed after the 2s floor":   {status: corev1.ContainerStatus{Name: "c", State: terminated(137, "Error", t0.Add(22*time.Second))}, wantState: "terminated", wantOverrun: true, wantSignal: 9, wantSeconds: ptr.To[int64](22), wantLabel: "Error"},
		"OOM after deadline":          {status: corev1.ContainerStatus{Name: "c", State: terminated(137, "OOMKilled", t0.Add(25*time.Second))}, wantState: "terminated", wantSignal: 9, wantSeconds: ptr.To[int64](25), wantLabel: "OOMKilled"},
		"runtime signal wins":         {status: corev1.ContainerStatus{Name: "c", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Signal: 6, FinishedAt: metav1.NewTime(t0)}}}, wantState: "terminated", wantSignal: 6, wantSeconds: ptr.To[int64](0), wantLabel: "Error"},
		"odd runtime reason is Other": {status: corev1.ContainerStatus{Name: "c", State: terminated(2, "Weird-"+strings.Repeat("x", 40), t0)}, wantState: "terminated", wantSeconds: ptr.To[int64](0), wantLabel: "Other"},
		"still running":               {status: corev1.ContainerStatus{Name: "c", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}, wantState: "unknown", wantLabel: "Unknown"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			rec := buildRecord(deletedPod(20, "n1", []string{"c"}, tc.status), CauseEnded)
			if len(rec.Containers) != 1 {
				t.Fatalf("containers = %d, want 1", len(rec.Containers))
			}
			c := rec.Containers[0]
			if c.State != tc.wantState || c.Overrun != tc.wantOverrun || c.Signal != tc.wantSignal {
				t.Errorf("state=%s overrun=%v signal=%d, want %s %v %d", c.State, c.Overrun, c.Signal, tc.wantState, tc.wantOverrun, tc.wantSignal)
			}
			if (c.TerminationSeconds == nil) != (tc.wantSeconds == nil) || (c.TerminationSeconds != nil && *c.TerminationSeconds != *tc.wantSeconds) {
				t.Errorf("terminationSeconds = %v, want %v", ptr.Deref(c.TerminationSeconds, -1), ptr.Deref(tc.wantSeconds, -1))
			}
			if got := reasonLabel(c); got != tc.wantLabel {
				t.Errorf("metric reason = %q, want %q", got, tc.wantLabel)
			}
		})
	}
}

func TestEvaluate(t *testing.T) {
	margin := time.Minute
	running := corev1.ContainerStatus{Name: "web", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
	done := corev1.ContainerStatus{Name: "web", State: terminated(0, "Completed", t0)}
	cases := map[string]struct {
		pod  *corev1.Pod
		now  time.Time
		want verdict
	}{
		"never scheduled":              {pod: deletedPod(0, "", []string{"web"}), now: t0, want: verdict{done: true, cause: CauseNeverScheduled}},
		"all terminated":               {pod: deletedPod(30, "n1", []string{"web"}, done), now: t0, want: verdict{done: true, cause: CauseEnded}},
		"one still running":            {pod: deletedPod(30, "n1", []string{"web", "db"}, done), now: t0, want: verdict{wait: 30*time.Second + margin}},
		"no status yet, before margin": {pod: deletedPod(30, "n1", []string{"web"}, running), now: t0.Add(40 * time.Second), want: verdict{wait: 50 * time.Second}},
		"past deadline and margin":     {pod: deletedPod(30, "n1", []string{"web"}, running), now: t0.Add(30*time.Second + margin), want: verdict{checkNode: true}},
		"phase Failed": {pod: func() *corev1.Pod {
			p := deletedPod(30, "n1", []string{"web"}, running)
			p.Status.Phase = corev1.PodFailed
			return p
		}(), now: t0, want: verdict{done: true, cause: CauseEnded}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := evaluate(tc.pod, tc.now, margin); got != tc.want {
				t.Errorf("evaluate = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestOwnedFinalizers(t *testing.T) {
	rec := func(fin, url string) string {
		b, _ := json.Marshal([]policies.CleanupRecord{{Policy: "p", Finalizer: fin, URL: url, TimeoutSeconds: 5}})
		return string(b)
	}
	cases := map[string]struct {
		finalizers  []string
		annotation  string
		termination bool
		cleanups    []string
		skipped     int
	}{
		"only foreign":                 {finalizers: []string{"example.com/keep"}},
		"termination record":           {finalizers: []string{"example.com/keep", TerminationRecord}, termination: true},
		"cleanup present":              {finalizers: []string{"example.com/release-ip"}, annotation: rec("example.com/release-ip", "https://ipam.example.com/r"), cleanups: []string{"example.com/release-ip"}},
		"cleanup already removed":      {finalizers: []string{"example.com/keep"}, annotation: rec("example.com/release-ip", "https://ipam.example.com/r")},
		"cluster-local http":           {finalizers: []string{"example.com/x"}, annotation: rec("example.com/x", "http://ipam.net.svc:8080/r"), cleanups: []string{"example.com/x"}},
		"annotation URL is not read":   {finalizers: []string{"example.com/x"}, annotation: rec("example.com/x", "http://169.254.169.254/r"), cleanups: []string{"example.com/x"}},
		"kubernetes finalizer refused": {finalizers: []string{"batch.kubernetes.io/job-tracking"}, annotation: rec("batch.kubernetes.io/job-tracking", "https://x.example.com"), skipped: 1},
		"builtin as cleanup refused":   {finalizers: []string{TerminationRecord}, annotation: rec(TerminationRecord, "https://x.example.com"), termination: true, skipped: 1},
		"malformed annotation":         {finalizers: []string{TerminationRecord, "example.com/x"}, annotation: "{not json", termination: true, skipped: 1},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Finalizers: tc.finalizers}}
			if tc.annotation != "" {
				pod.Annotations = map[string]string{policies.AnnotationCleanup: tc.annotation}
			}
			o := ownedFinalizers(pod)
			var got []string
			for _, c := range o.cleanups {
				got = append(got, c.Finalizer)
			}
			if o.termination != tc.termination || strings.Join(got, ",") != strings.Join(tc.cleanups, ",") || len(o.skipped) != tc.skipped {
				t.Errorf("termination=%v cleanups=%v skipped=%q; want %v %v %d", o.termination, got, o.skipped, tc.termination, tc.cleanups, tc.skipped)
			}
		})
	}
}

func TestRemovalPatch(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: "u1", Finalizers: []string{"example.com/keep", TerminationRecord, "example.com/x"}}}
	raw, ok := removalPatch(pod, []string{TerminationRecord, "example.com/x"})
	if !ok {
		t.Fatal("no patch")
	}
	want := `[{"op":"test","path":"/metadata/uid","value":"u1"},{"op":"test","path":"/metadata/finalizers","value":["example.com/keep","gracekeeper.dev/termination-record","example.com/x"]},{"op":"replace","path":"/metadata/finalizers","value":["example.com/keep"]}]`
	if string(raw) != want {
		t.Errorf("patch\n got %s\nwant %s", raw, want)
	}
	if _, ok := removalPatch(pod, []string{"example.com/absent"}); ok {
		t.Error("a patch that removes nothing was built")
	}
}

func TestTransformPod(t *testing.T) {
	sidecar := corev1.ContainerRestartPolicyAlways
	in := deletedPod(30, "n1", []string{"web"}, corev1.ContainerStatus{Name: "web", Image: "big/image:1", State: terminated(0, "Completed", t0)})
	in.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	in.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": strings.Repeat("x", 1000), policies.AnnotationCleanup: "[]"}
	in.Finalizers = []string{TerminationRecord}
	in.Spec.Containers[0].Image = "big/image:1"
	in.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: "b"}}
	in.Spec.InitContainers = []corev1.Container{{Name: "proxy", Image: "p", RestartPolicy: &sidecar}}
	in.Spec.Volumes = []corev1.Volume{{Name: "v"}}
	in.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady}}

	out1, _ := TransformPod(in.DeepCopy())
	p := out1.(*corev1.Pod)
	if p.ManagedFields != nil || p.Spec.Volumes != nil || p.Status.Conditions != nil || p.Spec.Containers[0].Image != "" || p.Status.ContainerStatuses[0].Image != "" {
		t.Errorf("not stripped: %+v", p)
	}
	if _, ok := p.Annotations["kubectl.kubernetes.io/last-applied-configuration"]; ok {
		t.Error("foreign annotation kept")
	}
	if p.Annotations[policies.AnnotationCleanup] != "[]" || p.Spec.NodeName != "n1" || *p.Spec.TerminationGracePeriodSeconds != 30 ||
		p.Spec.Containers[0].Name != "web" || !policies.IsSidecar(&p.Spec.InitContainers[0]) || p.Finalizers[0] != TerminationRecord ||
		p.Status.ContainerStatuses[0].State.Terminated == nil || p.DeletionTimestamp == nil {
		t.Errorf("needed field lost: %+v", p)
	}
	// A second pass changes nothing (the informer may transform twice).
	out2, _ := TransformPod(p.DeepCopy())
	if a, b := mustJSON(t, out1), mustJSON(t, out2); a != b {
		t.Errorf("second pass differs:\n%s\n%s", a, b)
	}
	// Non-pods (tombstones) pass through.
	if got, _ := TransformPod("tombstone"); got != "tombstone" {
		t.Errorf("non-pod changed: %v", got)
	}
}

// TestRetries: client-go's exponential per-item limiter paces each step of
// each pod; the first failure is remembered (it bounds Event retries); a new
// pod under the same name starts afresh; done forgets.
func TestRetries(t *testing.T) {
	b := newRetries(time.Second, 5*time.Second)
	key := podKey("ns", "p")
	var got []time.Duration
	for i := range 5 {
		d, first := b.failed(key, "u", "f", t0.Add(time.Duration(i)*time.Second))
		if !first.Equal(t0) {
			t.Errorf("first failure = %v, want %v", first, t0)
		}
		got = append(got, d)
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays = %v, want %v", got, want)
		}
	}
	if due := b.due(key, "u", "f"); !due.Equal(t0.Add(4*time.Second + 5*time.Second)) {
		t.Errorf("due = %v", due)
	}
	if due := b.due(key, "u", "other-step"); !due.IsZero() {
		t.Errorf("another step inherited the backoff: %v", due)
	}
	if b.markLogged(key, "u", "f") || !b.markLogged(key, "u", "f") {
		t.Error("markLogged must report false the first time, true after")
	}
	if d, first := b.failed(key, "other-uid", "f", t0.Add(time.Minute)); d != time.Second || !first.Equal(t0.Add(time.Minute)) {
		t.Errorf("a new pod under the same name inherited the backoff: %v since %v", d, first)
	}
	b.done(key, "f")
	if due := b.due(key, "other-uid", "f"); !due.IsZero() {
		t.Errorf("done did not forget: %v", due)
	}
	if d, _ := b.failed(key, "other-uid", "f", t0); d != time.Second {
		t.Errorf("after done the delay restarts at the base, got %v", d)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
