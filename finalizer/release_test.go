package finalizer

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestReleaseAll is the uninstall path: no controller runs; every
// gracekeeper finalizer goes, after recording what can be, and nothing else
// is touched. A dry run changes nothing; a second run finds nothing to do.
func TestReleaseAll(t *testing.T) {
	ep := &endpoint{bodies: map[string][]CleanupRequest{}, keys: map[string][]string{}, calls: map[string]*atomic.Int32{}}
	srv := httpsServer(t, ep)
	c := cluster(t)
	ctx := context.Background()
	ns := newNamespace(t)
	rec := createPolicy(t, "ipam-release-all", "example.com/release-ip", srv.URL+"/ok", 5, 600)
	ann := cleanupJSON(t, rec)
	ours := []string{TerminationRecord, keep, rec.Finalizer}

	alive := createPod(t, ns, podSpec{name: "alive", node: "node-a", grace: 30, finalizers: ours, cleanup: ann})
	ended := createPod(t, ns, podSpec{name: "ended", node: "node-a", grace: 30, finalizers: ours, cleanup: ann})
	setStatus(t, ended, corev1.PodSucceeded, terminated(0, "Completed", time.Now()))
	deletePod(t, ended)
	dying := createPod(t, ns, podSpec{name: "dying", node: "node-a", grace: 30, finalizers: []string{TerminationRecord, keep}})
	setStatus(t, dying, corev1.PodRunning, corev1.ContainerState{Running: &corev1.ContainerStateRunning{}})
	deletePod(t, dying)
	foreign := createPod(t, ns, podSpec{name: "foreign", grace: 30, finalizers: []string{keep}})

	opts := ReleaseOptions{Options: Options{HTTPClient: srv.Client()}}
	opts.DryRun = true
	rep, err := ReleaseAll(ctx, c, opts)
	if err != nil {
		t.Fatal(err)
	}
	// Other tests' namespaces may hold labelled pods too: count only ours.
	if rep.Released < 3 || rep.Finalizers < 2+2+1 {
		t.Errorf("dry run report = %v, want at least 3 pods and 5 finalizers", rep)
	}
	for _, p := range []*corev1.Pod{alive, ended} {
		waitFinalizers(t, ns, p.Name, ours, time.Second)
	}
	waitFinalizers(t, ns, dying.Name, []string{TerminationRecord, keep}, time.Second)
	if ev := ourEvents(t, ns); len(ev) != 0 || ep.count("/ok") != 0 {
		t.Errorf("dry run wrote %d events and made %d POSTs", len(ev), ep.count("/ok"))
	}

	opts.DryRun = false
	rep, err = ReleaseAll(ctx, c, opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Released < 3 || rep.Failed != 0 {
		t.Errorf("report = %v", rep)
	}
	for _, p := range []*corev1.Pod{alive, ended, dying, foreign} {
		waitFinalizers(t, ns, p.Name, []string{keep}, time.Second)
	}
	// The ended pod was released by its endpoint; the running pod's cleanup
	// was abandoned (releasing under a running pod would be wrong).
	if n := ep.count("/ok"); n != 1 {
		t.Errorf("POSTs = %d, want 1 (the ended pod only)", n)
	}
	events := map[string]corev1.Event{}
	for _, e := range ourEvents(t, ns) {
		events[e.Name] = e
	}
	if e, ok := events[TerminationEventName(ended)]; !ok || e.Reason != "PodTerminated" {
		t.Errorf("ended pod: termination event %+v", e)
	}
	if e, ok := events[TerminationEventName(dying)]; !ok || !strings.Contains(e.Message, "still terminating") || !strings.Contains(e.Message, "web state unknown") {
		t.Errorf("dying pod: termination event %q", e.Message)
	}
	if _, ok := events[TerminationEventName(alive)]; ok {
		t.Error("a running pod got a termination event")
	}
	if e, ok := events[AbandonEventName(alive, rec.Finalizer)]; !ok || e.Type != corev1.EventTypeWarning || !strings.Contains(e.Message, "uninstall") {
		t.Errorf("running pod: abandon event %+v", e)
	}
	if len(events) != 3 {
		t.Errorf("events = %d, want 3", len(events))
	}

	// Again: nothing of ours is left in this namespace.
	before := len(ourEvents(t, ns))
	if _, err := ReleaseAll(ctx, c, opts); err != nil {
		t.Fatal(err)
	}
	if after := len(ourEvents(t, ns)); after != before {
		t.Errorf("second run wrote %d more events", after-before)
	}
	for _, p := range []*corev1.Pod{alive, ended, dying, foreign} {
		if err := c.Delete(ctx, p, client.GracePeriodSeconds(0)); err != nil {
			t.Fatal(err)
		}
		removeFinalizer(t, p, keep)
	}
}
