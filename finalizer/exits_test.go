package finalizer

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func cid(c string) string { return "containerd://" + strings.Repeat(c, 64) }

func ended(code int32, reason, id string, start time.Time) *corev1.ContainerStateTerminated {
	return &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason, ContainerID: id,
		StartedAt: metav1.NewTime(start), FinishedAt: metav1.NewTime(start.Add(12 * time.Second)), Message: "bye"}
}

// runningPod is a running pod whose one container "app" has the given status.
func runningPod(s corev1.ContainerStatus) *corev1.Pod {
	s.Name = "app"
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", UID: "uid-1"},
		Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "app", Resources: corev1.ResourceRequirements{
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
			Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi")}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{s}},
	}
}

func exitsOf(pod *corev1.Pod) string {
	var out []string
	for _, e := range observedExits(pod) {
		out = append(out, fmt.Sprintf("%s#%d code=%d prev=%v sup=%v", e.container.name, e.restart, e.t.ExitCode, e.previous, e.superseded))
	}
	return strings.Join(out, "; ")
}

// TestObservedExits: the restart count of the exited instance is read the
// way the kubelet reports it (convertToAPIContainerStatuses): lastState is
// the latest instance while it waits out its back-off, the one before once
// the next runs.
func TestObservedExits(t *testing.T) {
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(t0)}}
	backoff := corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}
	type exitCase struct {
		pod  *corev1.Pod
		want string
	}
	cases := map[string]exitCase{
		"never exited": {runningPod(corev1.ContainerStatus{State: running, ContainerID: cid("a")}), ""},
		"first exit, just seen": {runningPod(corev1.ContainerStatus{ContainerID: cid("a"),
			State: corev1.ContainerState{Terminated: ended(137, "OOMKilled", cid("a"), t0)}}), "app#0 code=137 prev=false sup=false"},
		"first exit, waiting out its back-off": {runningPod(corev1.ContainerStatus{ContainerID: cid("a"), State: backoff,
			LastTerminationState: corev1.ContainerState{Terminated: ended(137, "OOMKilled", cid("a"), t0)}}), "app#0 code=137 prev=true sup=false"},
		"first exit, restarted": {runningPod(corev1.ContainerStatus{ContainerID: cid("b"), RestartCount: 1, State: running,
			LastTerminationState: corev1.ContainerState{Terminated: ended(137, "OOMKilled", cid("a"), t0)}}), "app#0 code=137 prev=true sup=false"},
		"new instance created, not yet running": {runningPod(corev1.ContainerStatus{ContainerID: cid("b"), RestartCount: 1,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{}}, LastTerminationState: corev1.ContainerState{Terminated: ended(3, "Error", cid("a"), t0)}}),
			"app#0 code=3 prev=true sup=false"},
		"second exit just seen, first in lastState": {runningPod(corev1.ContainerStatus{ContainerID: cid("b"), RestartCount: 1,
			State:                corev1.ContainerState{Terminated: ended(3, "Error", cid("b"), t0)},
			LastTerminationState: corev1.ContainerState{Terminated: ended(137, "OOMKilled", cid("a"), t0)}}),
			"app#0 code=137 prev=true sup=true; app#1 code=3 prev=false sup=false"},
		"exit the kubelet could only infer": {runningPod(corev1.ContainerStatus{RestartCount: 4,
			State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}},
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "ContainerStatusUnknown"}}}),
			"app#3 code=137 prev=true sup=false"},
	}
	deleted := runningPod(corev1.ContainerStatus{ContainerID: cid("b"), RestartCount: 1,
		State:                corev1.ContainerState{Terminated: ended(143, "Error", cid("b"), t0)},
		LastTerminationState: corev1.ContainerState{Terminated: ended(137, "OOMKilled", cid("a"), t0)}})
	deleted.DeletionTimestamp = ptr.To(metav1.NewTime(t0))
	cases["deleted: the current end is the termination record's"] = exitCase{deleted, "app#0 code=137 prev=true sup=false"}
	succeeded := runningPod(corev1.ContainerStatus{ContainerID: cid("a"), State: corev1.ContainerState{Terminated: ended(0, "Completed", cid("a"), t0)}})
	succeeded.Status.Phase = corev1.PodSucceeded
	cases["pod succeeded: its end is the termination record's"] = exitCase{succeeded, ""}
	never := runningPod(corev1.ContainerStatus{ContainerID: cid("a"), State: corev1.ContainerState{Terminated: ended(137, "OOMKilled", cid("a"), t0)}})
	never.Spec.RestartPolicy = corev1.RestartPolicyNever
	cases["restartPolicy Never, phase still Running: a final end, the termination record's"] = exitCase{never, ""}
	onFailure := runningPod(corev1.ContainerStatus{ContainerID: cid("a"), State: corev1.ContainerState{Terminated: ended(1, "Error", cid("a"), t0)}})
	onFailure.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
	cases["restartPolicy OnFailure, failed: restarted"] = exitCase{onFailure, "app#0 code=1 prev=false sup=false"}
	done := onFailure.DeepCopy()
	done.Status.ContainerStatuses[0].State.Terminated.ExitCode = 0
	cases["restartPolicy OnFailure, completed: a final end"] = exitCase{done, ""}
	withInit := runningPod(corev1.ContainerStatus{State: running, ContainerID: cid("a")})
	withInit.Spec.InitContainers = []corev1.Container{{Name: "setup"}, {Name: "proxy", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)}}
	withInit.Status.InitContainerStatuses = []corev1.ContainerStatus{
		{Name: "setup", ContainerID: cid("c"), State: corev1.ContainerState{Terminated: ended(0, "Completed", cid("c"), t0)}},
		{Name: "proxy", ContainerID: cid("e"), RestartCount: 1, State: running, LastTerminationState: corev1.ContainerState{Terminated: ended(0, "Completed", cid("d"), t0)}},
	}
	cases["init container completed (not an exit worth a record), sidecar restarted"] = exitCase{withInit, "proxy#0 code=0 prev=true sup=false"}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := exitsOf(tc.pod); got != tc.want {
				t.Errorf("exits = %q, want %q", got, tc.want)
			}
			// The cached pod tells the same exits apart: the transform keeps
			// what observedExits reads.
			cached, _ := TransformPod(tc.pod.DeepCopy())
			if got := exitsOf(cached.(*corev1.Pod)); got != tc.want {
				t.Errorf("exits of the cached pod = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestTransformKeepsExitFields fails when the cache transform drops a field
// the container-exit controller reads from the cache: a change that shrinks
// the cache further must keep these.
func TestTransformKeepsExitFields(t *testing.T) {
	pod := runningPod(corev1.ContainerStatus{ContainerID: cid("b"), RestartCount: 7,
		State:                corev1.ContainerState{Terminated: ended(3, "Error", cid("b"), t0)},
		LastTerminationState: corev1.ContainerState{Terminated: ended(137, "OOMKilled", cid("a"), t0)}})
	pod.Annotations = map[string]string{AnnotationExits: `{"app":6,"gone":9}`}
	pod.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
	pod.Spec.Containers[0].RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
	out, _ := TransformPod(pod.DeepCopy())
	p := out.(*corev1.Pod)
	s := p.Status.ContainerStatuses[0]
	checks := map[string]bool{
		"name":                          s.Name == "app",
		"restartCount":                  s.RestartCount == 7,
		"containerID (its end)":         s.ContainerID != "" && strings.HasSuffix(cid("b"), s.ContainerID),
		"state.terminated.exitCode":     s.State.Terminated != nil && s.State.Terminated.ExitCode == 3,
		"state.terminated.reason":       s.State.Terminated != nil && s.State.Terminated.Reason == "Error",
		"state.terminated.finishedAt":   s.State.Terminated != nil && s.State.Terminated.FinishedAt.Equal(ptr.To(metav1.NewTime(t0.Add(12*time.Second)))),
		"state.terminated.containerID":  s.State.Terminated != nil && s.State.Terminated.ContainerID == s.ContainerID,
		"lastState.terminated.exitCode": s.LastTerminationState.Terminated != nil && s.LastTerminationState.Terminated.ExitCode == 137,
		"lastState.terminated.containerID": s.LastTerminationState.Terminated != nil && s.LastTerminationState.Terminated.ContainerID != "" &&
			s.LastTerminationState.Terminated.ContainerID != s.ContainerID,
		"the exits annotation, for the pod's containers only": p.Annotations[AnnotationExits] == `{"app":6}`,
		"no termination message":                              s.State.Terminated != nil && s.State.Terminated.Message == "",
		"the pod's restartPolicy":                             p.Spec.RestartPolicy == corev1.RestartPolicyOnFailure,
		"a container's restartPolicy":                         p.Spec.Containers[0].RestartPolicy != nil && *p.Spec.Containers[0].RestartPolicy == corev1.ContainerRestartPolicyAlways,
	}
	for what, ok := range checks {
		if !ok {
			t.Errorf("the cached pod lost %s: %+v", what, s)
		}
	}
	if got := pendingExits(p, parseExitState(p.Annotations[AnnotationExits])); len(got) != 1 || got[0].restart != 7 {
		t.Errorf("pending exits of the cached pod = %d, want exit #7 only (#6 is done)", len(got))
	}
}

// TestExitStateHostile: the exits annotation is a pod author's to write:
// whatever it holds, it parses to a bounded state or none, and a forged
// value only suppresses that pod's own containers' records.
func TestExitStateHostile(t *testing.T) {
	pod := runningPod(corev1.ContainerStatus{ContainerID: cid("b"), RestartCount: 2, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
		LastTerminationState: corev1.ContainerState{Terminated: ended(1, "Error", cid("a"), t0)}})
	cases := map[string]struct {
		raw         string
		wantPending int
	}{
		"absent":                          {"", 1},
		"not JSON":                        {"{{{", 1},
		"a list":                          {`[1,2]`, 1},
		"negative":                        {`{"app":-5}`, 1},
		"beyond int32":                    {`{"app":99999999999}`, 1},
		"a string":                        {`{"app":"9"}`, 1},
		"too large":                       {`{"app":9,"x":"` + strings.Repeat("x", MaxExitsAnnotation) + `"}`, 1},
		"deep nesting":                    {strings.Repeat("[", 10000), 1},
		"forged high: suppresses its own": {`{"app":2147483647}`, 0},
		"done up to this exit":            {`{"app":1}`, 0},
		"other containers only":           {`{"sidecar":7}`, 1},
		"a duplicate key (last one wins)": {`{"app":9,"app":0}`, 1},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			st := parseExitState(tc.raw)
			if got := len(pendingExits(pod, st)); got != tc.wantPending {
				t.Errorf("pending = %d, want %d (state %v)", got, tc.wantPending, st)
			}
			pod.Annotations = map[string]string{AnnotationExits: tc.raw}
			cached, _ := TransformPod(pod.DeepCopy())
			if n := len(cached.(*corev1.Pod).Annotations[AnnotationExits]); n > len(`{"app":2147483647}`) {
				t.Errorf("cached exits annotation is %d bytes, want at most one entry per container", n)
			}
		})
	}
}

// TestLogTailBounded: the log in a record is at most the lines asked for and
// MaxLogTailBytes, the last ones, and the Event message stays within the
// Event limit whatever the log and names.
func TestLogTailBounded(t *testing.T) {
	var many []string
	for i := range 100 {
		many = append(many, fmt.Sprintf("line %03d", i))
	}
	cases := map[string]struct {
		raw           string
		lines         int
		readLimit     int
		wantLines     int
		wantLast      string
		wantTruncated bool
	}{
		"empty":                     {"", 5, 0, 0, "", false},
		"fewer lines than asked":    {"a\nb\n", 5, 0, 2, "b", false},
		"the last lines":            {strings.Join(many, "\n") + "\n", 5, 0, 5, "line 099", false},
		"bytes bound before lines":  {strings.Join(many, "\n"), 100, 0, MaxLogTailBytes / 9, "line 099", true},
		"one line beyond the bound": {strings.Repeat("x", 5000) + "END", 3, 0, 1, "xEND", true},
		"cut at the read limit":     {strings.Repeat("y\n", 10), 3, 20, 3, "y", true},
		"invalid UTF-8 made valid":  {"ok\n\xff\xfe bad", 5, 0, 2, "? bad", false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			lt := tailOf([]byte(tc.raw), tc.lines, tc.readLimit)
			if lt.Lines != tc.wantLines || lt.Truncated != tc.wantTruncated || !strings.HasSuffix(lt.Text, tc.wantLast) {
				t.Errorf("tail = %d lines, truncated %v, ends %q; want %d, %v, ending %q", lt.Lines, lt.Truncated, lastN(lt.Text, 12), tc.wantLines, tc.wantTruncated, tc.wantLast)
			}
			if len(lt.Text) > MaxLogTailBytes || strings.Count(lt.Text, "\n")+1 > max(tc.lines, 1) {
				t.Errorf("tail of %d bytes and %d lines exceeds the bounds", len(lt.Text), strings.Count(lt.Text, "\n")+1)
			}
			rec := ExitRecord{Container: strings.Repeat("c", 63), ExitCode: 137, Reason: strings.Repeat("r", 128), Signal: 9,
				RestartCount: 1 << 30, MemoryLimit: "64Mi", MemoryRequest: "32Mi", MissedExits: 12, Log: &lt}
			if m := rec.message(); len(m) > maxEventMessage || (lt.Lines > 0 && !strings.HasSuffix(m, lastN(lt.Text, 20))) {
				t.Errorf("message of %d bytes (limit %d) or without the log's end: %q", len(m), maxEventMessage, lastN(m, 40))
			}
		})
	}
}

// TestKubeletLogGone: when the kubelet no longer has the instance's log it
// answers 200 with its error as the body; the record says the log is
// unavailable instead of showing that as a log line.
func TestKubeletLogGone(t *testing.T) {
	lt := logBody([]byte("unable to retrieve container logs for containerd://"+strings.Repeat("a", 64)), 5)
	if lt.Lines != 0 || !strings.Contains(lt.Unavailable, "no longer has this instance's log") {
		t.Errorf("kubelet's error body taken as %+v", lt)
	}
	lt = logBody([]byte("starting\nunable to retrieve container logs for x\n"), 5)
	if lt.Unavailable != "" || lt.Lines != 2 {
		t.Errorf("a log that merely contains the phrase: %+v", lt)
	}
}

func lastN(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// TestExitRecordNamesOOM: an OOM kill's record names the memory limit and
// request, the signal and the run time.
func TestExitRecordNamesOOM(t *testing.T) {
	pod := runningPod(corev1.ContainerStatus{ContainerID: cid("b"), RestartCount: 1, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
		LastTerminationState: corev1.ContainerState{Terminated: ended(137, "OOMKilled", cid("a"), t0)}})
	e := observedExits(pod)[0]
	rec := buildExitRecord(e, 0)
	rec.Log = &LogTail{Lines: 2, Text: "allocating\nstill allocating"}
	want := "container app exited with 137 OOMKilled SIGKILL after 12s (restart count 0; memory limit 64Mi, request 32Mi); last 2 log line(s):\nallocating\nstill allocating"
	if got := rec.message(); got != want {
		t.Errorf("message\n got %q\nwant %q", got, want)
	}
	if r, typ := rec.eventReason(); r != "OOMKilled" || typ != corev1.EventTypeWarning {
		t.Errorf("event reason %s %s, want OOMKilled Warning", r, typ)
	}
	e.t.Reason = "Error"
	if rec := buildExitRecord(e, 0); rec.MemoryLimit != "" {
		t.Errorf("memory limit %q on a record that is not an OOM kill", rec.MemoryLimit)
	}
}
