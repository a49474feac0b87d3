package podpatch

import (
	"encoding/json"
	"strings"
	"testing"

	kjson "sigs.k8s.io/json"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// rawPod has fields our Go types do not know, at the pod, metadata and
// container level, and a preStop with an unknown field of its own.
const rawPod = `{
  "apiVersion": "v1", "kind": "Pod",
  "futureTop": true,
  "metadata": {"name": "p", "namespace": "shop", "futureMeta": {"keep": "me"},
    "labels": {"app": "web", "old": "x"}, "annotations": {"a/b": "1", "til~de": "2"}},
  "spec": {
    "terminationGracePeriodSeconds": 30,
    "containers": [
      {"name": "a", "image": "i", "futureField": [1, 2]},
      {"name": "b", "image": "i", "lifecycle": {"preStop": {"exec": {"command": ["x"]}, "futureHook": 1}, "futureLife": "y"}}
    ],
    "initContainers": [{"name": "s", "image": "i", "restartPolicy": "Always", "futureInit": {}}]
  }
}`

// TestPodPatch applies Pod's ops to the raw bytes for fake mutations of
// every kind the engine makes (and one it does not, for the fallback), and
// checks that (1) decoding the result gives exactly the mutated pod and
// (2) every unknown field outside what was replaced survives.
func TestPodPatch(t *testing.T) {
	sleep := func(n int64) *corev1.LifecycleHandler {
		return &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: n}}
	}
	tests := map[string]struct {
		mutate   func(p *corev1.Pod)
		wantOps  int // -1: do not check
		survives []string
		gone     []string
	}{
		"no change": {mutate: func(*corev1.Pod) {}, wantOps: 0,
			survives: []string{"futureTop", "futureMeta", "futureField", "futureHook", "futureLife", "futureInit"}},
		"labels, annotations with / and ~, finalizers": {mutate: func(p *corev1.Pod) {
			p.Labels["gracekeeper.dev/finalize"] = "true"
			delete(p.Labels, "old")
			p.Annotations["a/b"] = "changed"
			p.Annotations["til~de"] = "3"
			p.Finalizers = []string{"gracekeeper.dev/termination-record"}
		}, wantOps: 5, survives: []string{"futureTop", "futureMeta", "futureField", "futureHook"}},
		"grace raised": {mutate: func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = ptr(int64(45)) }, wantOps: 1,
			survives: []string{"futureTop", "futureMeta", "futureField", "futureHook", "futureLife", "futureInit"}},
		"hook added to a container without lifecycle and to a sidecar": {mutate: func(p *corev1.Pod) {
			p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: sleep(5)}
			p.Spec.InitContainers[0].Lifecycle = &corev1.Lifecycle{PreStop: sleep(3)}
		}, wantOps: 2, survives: []string{"futureField", "futureHook", "futureLife", "futureInit"}},
		"preStop overwritten, postStart added, lifecycle's unknown field kept": {mutate: func(p *corev1.Pod) {
			p.Spec.Containers[1].Lifecycle.PreStop = sleep(7)
			p.Spec.Containers[1].Lifecycle.PostStart = sleep(1)
		}, wantOps: 2, survives: []string{"futureLife", "futureField"}, gone: []string{"futureHook"}},
		"a container added falls back to a full diff": {mutate: func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "c", Image: "i"})
			p.Spec.TerminationGracePeriodSeconds = ptr(int64(45))
		}, wantOps: -1, survives: []string{"futureTop", "futureMeta"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			before := &corev1.Pod{}
			if err := kjson.UnmarshalCaseSensitivePreserveInts([]byte(rawPod), before); err != nil {
				t.Fatal(err)
			}
			after := before.DeepCopy()
			tc.mutate(after)
			ops, err := Pod(before, after)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantOps >= 0 && len(ops) != tc.wantOps {
				t.Errorf("%d ops, want %d: %+v", len(ops), tc.wantOps, ops)
			}
			pb, err := json.Marshal(ops)
			if err != nil {
				t.Fatal(err)
			}
			p, err := jsonpatchapply.DecodePatch(pb)
			if err != nil {
				t.Fatal(err)
			}
			out, err := p.Apply([]byte(rawPod))
			if err != nil {
				t.Fatalf("patch %s does not apply to the raw pod: %v", pb, err)
			}
			got := &corev1.Pod{}
			if err := kjson.UnmarshalCaseSensitivePreserveInts(out, got); err != nil {
				t.Fatal(err)
			}
			if !equality.Semantic.DeepEqual(got, after) {
				t.Errorf("patched raw pod differs from the mutated pod:\npatch %s\ngot   %s", pb, out)
			}
			for _, f := range tc.survives {
				if !strings.Contains(string(out), `"`+f+`"`) {
					t.Errorf("unknown field %s lost: %s", f, out)
				}
			}
			for _, f := range tc.gone {
				if strings.Contains(string(out), `"`+f+`"`) {
					t.Errorf("%s should have been replaced with the hook: %s", f, out)
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{"plain": "plain", "a/b": "a~1b", "a~b": "a~0b", "~/": "~0~1"} {
		if got := escape(in); got != want {
			t.Errorf("escape(%q) = %q, want %q", in, got, want)
		}
	}
}
