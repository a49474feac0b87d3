package finalizer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// ExitsControllerName names the controller that records container exits of
// running pods and calls the exit cleanups.
const ExitsControllerName = "gracekeeper-exits"

// recordExit is the record label of records_unwritten_total for exit records.
const recordExit = "container_exit"

// exitSettings is what the policy behind a pod's termination-record
// finalizer asks of its container exits.
type exitSettings struct {
	record   bool
	logLines int32
}

// exitSettingsOf reads the settings from the current policies the pod's
// gracekeeper.dev/policies annotation names (an index only: a pod author can
// write it) that still declare the termination-record finalizer and select
// the pod's namespace; the highest priority wins, then the first name.
// None: records on, no log lines (reading logs needs an admin's policy).
func (r *Reconciler) exitSettingsOf(ctx context.Context, pod *corev1.Pod) (exitSettings, error) {
	def := exitSettings{record: true}
	var best *v1alpha1.LifecyclePolicy
	for _, name := range appliedPolicies(pod) {
		pol := &v1alpha1.LifecyclePolicy{}
		if err := r.client.Get(ctx, types.NamespacedName{Name: name}, pol); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return def, fmt.Errorf("get LifecyclePolicy %q: %w", name, err)
		}
		if !slices.Contains(pol.Spec.Finalizers, v1alpha1.TerminationRecordFinalizer) {
			continue
		}
		if ok, err := r.selectsNamespace(ctx, pol, pod.Namespace); err != nil {
			return def, err
		} else if !ok {
			continue
		}
		if best == nil || pol.Spec.Priority > best.Spec.Priority {
			best = pol
		}
	}
	if best == nil || best.Spec.ContainerExits == nil {
		return def, nil
	}
	ce := best.Spec.ContainerExits
	return exitSettings{record: ce.Record == nil || *ce.Record, logLines: min(max(ce.LogLines, 0), 50)}, nil
}

// hasExits: the pod status shows a terminated container instance.
func hasExits(o client.Object) bool {
	pod, ok := o.(*corev1.Pod)
	if !ok {
		return false
	}
	for _, ss := range [][]corev1.ContainerStatus{pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses} {
		for _, s := range ss {
			if s.State.Terminated != nil || s.LastTerminationState.Terminated != nil {
				return true
			}
		}
	}
	return false
}

// reconcileExits is the exits controller's Reconcile.
func (r *Reconciler) reconcileExits(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	pod, err := r.cachedPod(ctx, req.NamespacedName)
	if err != nil || pod == nil {
		return reconcile.Result{}, err
	}
	if !ownedFinalizers(pod).any() || len(pendingExits(pod, parseExitState(pod.Annotations[AnnotationExits]))) == 0 {
		return reconcile.Result{}, nil
	}
	// The cache may not have seen the state this controller wrote last:
	// act only on the pod as the API server has it, so an exit that is done
	// is never recorded or called again.
	fresh, err := r.readLive(ctx, pod)
	if err != nil || fresh == nil {
		return reconcile.Result{}, err
	}
	after, err := r.exits(ctx, fresh)
	return reconcile.Result{RequeueAfter: after}, err
}

func (r *Reconciler) readLive(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.APITimeout)
	defer cancel()
	fresh := &corev1.Pod{}
	if err := r.reader.Get(ctx, client.ObjectKeyFromObject(pod), fresh); err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	if fresh.UID != pod.UID {
		return nil, nil
	}
	return fresh, nil
}

// exits does the pending exits of one pod, oldest first per container, and
// then writes which are done into the pod's exits annotation. It returns
// when to look again (an exit cleanup to retry).
func (r *Reconciler) exits(ctx context.Context, pod *corev1.Pod) (time.Duration, error) {
	logger := log.FromContext(ctx).WithValues("uid", pod.UID)
	own := ownedFinalizers(pod)
	st := parseExitState(pod.Annotations[AnnotationExits])
	pending := pendingExits(pod, st)
	var set exitSettings
	if own.termination {
		var err error
		if set, err = r.exitSettingsOf(ctx, pod); err != nil {
			return 0, err
		}
	}
	var targets []target
	for _, c := range own.cleanups {
		t, why, err := r.currentTarget(ctx, pod, c)
		if err != nil {
			return 0, err
		}
		if why == "" && t.onExit {
			targets = append(targets, t)
		}
	}
	if !set.record && len(targets) == 0 {
		return 0, nil // nothing asked: no state written either
	}
	now := r.opts.Clock.Now()
	x := &exitWork{work: work{logger: logger, pod: pod, key: client.ObjectKeyFromObject(pod),
		owner: resolveOwner(ctx, r.reader, pod), now: now, stamp: metav1.NewTime(now)}, set: set, targets: targets}
	next := maps.Clone(st)
	blocked := map[string]bool{}
	var out outcome
	for _, e := range pending {
		if blocked[e.container.name] {
			continue
		}
		o := r.exit(ctx, x, e, missedBefore(e, st, pending))
		out.add(o)
		if o.requeue > 0 || len(o.errs) > 0 {
			blocked[e.container.name] = true
			continue
		}
		next[e.container.name] = e.restart
	}
	if !maps.Equal(next, st) {
		if err := r.patchExitState(ctx, pod, next); err != nil {
			out.errs = append(out.errs, err)
		} else {
			for _, e := range pending {
				if v, ok := next[e.container.name]; ok && e.restart <= v {
					r.memo.forget(e.key(pod))
				}
			}
		}
	}
	return out.requeue, errors.Join(out.errs...)
}

// exitWork is what the exits of one pod share.
type exitWork struct {
	work
	set     exitSettings
	targets []target
}

// exit records one exit (when asked) and calls its cleanups. It is done
// when the outcome asks for no retry.
func (r *Reconciler) exit(ctx context.Context, x *exitWork, e observedExit, missed int32) outcome {
	pod := x.pod
	key := e.key(pod)
	rec := buildExitRecord(e, missed)
	if x.set.record && x.set.logLines > 0 {
		rec.Log = r.memo.log(key, func() *LogTail { return r.readLogTail(ctx, pod, e, x.set.logLines) })
	}
	if x.set.record {
		w := x.work
		w.owner = Owner{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID}
		reason, typ := rec.eventReason()
		res := r.writeRecord(ctx, &w, recordExit, eventSpec{
			name: ExitEventName(pod, e.container.name, e.restart), reason: reason, typ: typ, action: "Exit", message: rec.message(),
		}, "exit", rec)
		if res.retry > 0 || res.err != nil {
			return outcome{requeue: res.retry, errs: errs(res.err)}
		}
		if res.recorded {
			// Counted when this call recorded it: a retry finds the Event
			// (AlreadyExists) and counts nothing twice.
			r.metrics.Exits.WithLabelValues(reasonLabel(rec.end())).Inc()
			r.metrics.ExitsMissed.Add(float64(rec.MissedExits))
			x.logger.Info("container exit recorded", "namespace", pod.Namespace, "pod", pod.Name, "exit", rec)
			if x.owner.Kind != "Pod" {
				r.aggregateOnOwner(ctx, x, rec)
			}
		}
	}
	var out outcome
	for _, t := range x.targets {
		out.add(r.exitCleanup(ctx, x, e, rec, t))
	}
	return out
}

// exitCleanup calls one exit cleanup for one exit: POST, retry with backoff,
// give up giveUpAfterSeconds after the exit. Once the same container has
// exited again, the exit gets one more try, at once, and is given up if that
// fails: a failing endpoint never holds back the records of later exits.
func (r *Reconciler) exitCleanup(ctx context.Context, x *exitWork, e observedExit, rec ExitRecord, t target) outcome {
	key := e.key(x.pod)
	step := "exit/" + key + "/" + t.finalizer
	if r.memo.called(step) {
		return outcome{}
	}
	var giveUpAt time.Time
	if t.giveUp > 0 && !e.t.FinishedAt.IsZero() {
		giveUpAt = e.t.FinishedAt.Add(t.giveUp)
	}
	if !giveUpAt.IsZero() && !x.now.Before(giveUpAt) {
		return r.abandonExit(ctx, x, e, t, step, fmt.Sprintf("got no 2xx answer within giveUpAfterSeconds %d of the exit", int64(t.giveUp/time.Second)))
	}
	if due := r.retries.due(x.key, x.pod.UID, step); x.now.Before(due) && !e.superseded {
		return outcome{requeue: due.Sub(x.now)}
	}
	timeout := t.timeout
	if !giveUpAt.IsZero() {
		timeout = min(timeout, giveUpAt.Sub(x.now))
	}
	req := CleanupRequest{IdempotencyKey: key, Policy: t.policy, Finalizer: t.finalizer,
		Namespace: x.pod.Namespace, Name: x.pod.Name, UID: x.pod.UID, Owner: x.owner, Node: x.pod.Spec.NodeName,
		Cause: CauseContainerExit, Containers: []ContainerEnd{rec.end()}, Exit: &rec}
	if err := post(ctx, r.opts.HTTPClient, t.url, timeout, req); err != nil {
		r.metrics.ExitCleanups.WithLabelValues("failure").Inc()
		if e.superseded {
			return r.abandonExit(ctx, x, e, t, step, fmt.Sprintf("failed again after the container exited again (%v)", err))
		}
		d, _ := r.retries.failed(x.key, x.pod.UID, step, x.now)
		if !giveUpAt.IsZero() {
			d = min(d, max(giveUpAt.Sub(r.opts.Clock.Now()), time.Millisecond))
		}
		x.logger.Info("exit cleanup failed; will retry", "finalizer", t.finalizer, "policy", t.policy, "container", e.container.name,
			"restartCount", e.restart, "error", err.Error(), "retryIn", d.String())
		return outcome{requeue: d}
	}
	r.metrics.ExitCleanups.WithLabelValues("success").Inc()
	r.retries.done(x.key, step)
	r.memo.markCalled(step)
	x.logger.Info("exit cleanup done", "finalizer", t.finalizer, "policy", t.policy, "container", e.container.name, "restartCount", e.restart)
	return outcome{}
}

// abandonExit gives one exit cleanup up, with a Warning on the pod (an
// Event, else the log).
func (r *Reconciler) abandonExit(ctx context.Context, x *exitWork, e observedExit, t target, step, why string) outcome {
	msg := fmt.Sprintf("pod %s: cleanup %s (policy %q, %s) for the exit of container %s (restart count %d) %s; given up",
		x.pod.Name, t.finalizer, t.policy, t.url, e.container.name, e.restart, why)
	res := r.writeRecord(ctx, &x.work, recordAbandon, eventSpec{
		name: ExitAbandonEventName(x.pod, t.finalizer, e.container.name, e.restart), reason: "CleanupAbandoned",
		typ: corev1.EventTypeWarning, action: "Cleanup", message: msg,
	}, "finalizer", t.finalizer, "policy", t.policy, "container", e.container.name, "restartCount", e.restart)
	if res.retry > 0 || res.err != nil {
		return outcome{requeue: res.retry, errs: errs(res.err)}
	}
	if res.recorded {
		r.metrics.ExitCleanups.WithLabelValues("abandoned").Inc()
	}
	r.retries.done(x.key, step)
	r.memo.markCalled(step)
	return outcome{}
}

// readLogTail reads the end of the exited instance's log and checks
// afterwards that the container has not restarted in between (then the
// log read would be another instance's).
func (r *Reconciler) readLogTail(ctx context.Context, pod *corev1.Pod, e observedExit, lines int32) *LogTail {
	if r.opts.Logs == nil {
		return &LogTail{Unavailable: "gracekeeper has no log reader"}
	}
	if e.t.ContainerID == "" {
		return &LogTail{Unavailable: "the runtime reported no container for this exit"}
	}
	lctx, cancel := context.WithTimeout(ctx, r.opts.APITimeout)
	raw, err := r.opts.Logs.TailLog(lctx, pod.Namespace, pod.Name, e.container.name, e.previous, int64(lines), maxLogReadBytes)
	cancel()
	if err != nil {
		return &LogTail{Unavailable: logUnavailable(err)}
	}
	now, err := r.readLive(ctx, pod)
	if err != nil || now == nil {
		return &LogTail{Unavailable: "the pod could not be read again to confirm the log was this exit's"}
	}
	var same bool
	for _, o := range observedExits(now) {
		if o.container.name == e.container.name && o.previous == e.previous && o.t.ContainerID == e.t.ContainerID {
			same = true
		}
	}
	if !same {
		return &LogTail{Unavailable: "the container restarted again before its log was read"}
	}
	t := logBody(raw, int(lines))
	return &t
}

// logBody is the tail of a log response, or why there is none when the
// body is the kubelet's message that the instance's log is gone.
func logBody(raw []byte, lines int) LogTail {
	if msg := strings.TrimSpace(string(raw)); strings.HasPrefix(msg, kubeletLogGone) && !strings.Contains(msg, "\n") {
		return LogTail{Unavailable: "the kubelet no longer has this instance's log (" + truncate(msg, 160) + ")"}
	}
	return tailOf(raw, lines, maxLogReadBytes)
}

// kubeletLogGone starts what the kubelet writes into the log stream, after
// answering 200, when the container's runtime status or log is gone (the
// kubelet keeps one dead instance per container):
// pkg/kubelet/kuberuntime/kuberuntime_container.go, GetContainerLogs.
const kubeletLogGone = "unable to retrieve container logs for "

// aggregateOnOwner keeps one Event per pod and container on the pod's
// owner (the Deployment of a ReplicaSet's pod): its count is the number of
// exits of that container (its restart count + 1) and its message the last
// one, so `kubectl describe deployment` shows how often each pod's
// containers exit. Its count is set, not added to, so a retry cannot
// inflate it. Best effort: the pod's own Event is the record.
func (r *Reconciler) aggregateOnOwner(ctx context.Context, x *exitWork, rec ExitRecord) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.APITimeout)
	defer cancel()
	name := ExitsOwnerEventName(x.pod, rec.Container)
	_, typ := rec.eventReason()
	msg := fmt.Sprintf("pod %s: %s", x.pod.Name, rec.summary())
	if len(msg) > maxEventMessage {
		msg = msg[:maxEventMessage-3] + "..."
	}
	count := rec.RestartCount + 1
	created, err := createEvent(ctx, r.client, x.pod, x.owner, r.opts.ReportingInstance, x.stamp, eventSpec{
		name: name, reason: "ContainerExits", typ: typ, action: "Exit", message: msg,
	})
	if err == nil && !created {
		patch, _ := json.Marshal(map[string]any{"count": count, "lastTimestamp": x.stamp, "message": msg, "type": typ})
		ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: x.pod.Namespace}}
		err = r.client.Patch(ctx, ev, client.RawPatch(types.MergePatchType, patch))
	} else if err == nil && count > 1 {
		patch, _ := json.Marshal(map[string]any{"count": count})
		ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: x.pod.Namespace}}
		err = r.client.Patch(ctx, ev, client.RawPatch(types.MergePatchType, patch))
	}
	if err != nil {
		x.logger.Info("owner's exit Event not written (the pod's is the record)", "event", name, "error", err.Error())
	}
}

// patchExitState writes the exits annotation: a JSON patch of that one
// annotation, guarded by a "test" of the pod UID, so a pod recreated under
// the same name never inherits another pod's state.
func (r *Reconciler) patchExitState(ctx context.Context, pod *corev1.Pod, st exitState) error {
	ops := []jsonPatchOp{{Op: "test", Path: "/metadata/uid", Value: pod.UID}}
	val := st.encode(pod)
	if pod.Annotations == nil {
		// Adding the whole map would replace annotations written meanwhile:
		// only when the pod is unchanged since it was read.
		ops = append(ops, jsonPatchOp{Op: "test", Path: "/metadata/resourceVersion", Value: pod.ResourceVersion},
			jsonPatchOp{Op: "add", Path: "/metadata/annotations", Value: map[string]string{AnnotationExits: val}})
	} else {
		ops = append(ops, jsonPatchOp{Op: "add", Path: "/metadata/annotations/gracekeeper.dev~1exits", Value: val})
	}
	raw, err := json.Marshal(ops)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.APITimeout)
	defer cancel()
	if err := r.client.Patch(ctx, pod, client.RawPatch(types.JSONPatchType, raw)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("record exits %s on pod %s/%s: %w", val, pod.Namespace, pod.Name, err)
	}
	return nil
}

// ExitEventName names the Event of one container exit after its identity
// (pod UID, container, restart count), so that a second attempt, by this
// replica or the next leader, fails with AlreadyExists instead of doubling it.
func ExitEventName(pod *corev1.Pod, container string, restart int32) string {
	return eventName(pod, fmt.Sprintf("exit-%s-%d", hash32(container), restart))
}

// ExitAbandonEventName names the Warning of an exit cleanup given up.
func ExitAbandonEventName(pod *corev1.Pod, finalizer, container string, restart int32) string {
	return eventName(pod, fmt.Sprintf("exit-%s-%d-cleanup-%s", hash32(container), restart, hash32(finalizer)))
}

// ExitsOwnerEventName names the owner's Event that aggregates one container's exits.
func ExitsOwnerEventName(pod *corev1.Pod, container string) string {
	return eventName(pod, "exits-"+hash32(container))
}

// hash32 keeps Event names within the name limit whatever the container or
// finalizer name (and in the characters a name allows).
func hash32(s string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(s))
	return strconv.FormatUint(uint64(h.Sum32()), 16)
}

// memo keeps what this replica must not do twice while the work is
// retried or the cache lags behind its own writes: per pending exit the log
// it read and the cleanups that answered, and per deleted pod the cleanup
// calls that answered. Entries go when the exit is marked done in the pod or
// the pod is gone; it is bounded, and losing it (a restart) means at most one
// more log read and one more POST with the same idempotency key.
type memo struct {
	mu    sync.Mutex
	logs  map[string]*LogTail
	calls map[string]bool
}

const maxMemo = 4096

func newMemo() *memo {
	return &memo{logs: map[string]*LogTail{}, calls: map[string]bool{}}
}

func (m *memo) log(key string, read func() *LogTail) *LogTail {
	m.mu.Lock()
	l, ok := m.logs[key]
	m.mu.Unlock()
	if ok {
		return l
	}
	l = read()
	m.mu.Lock()
	if len(m.logs) < maxMemo {
		m.logs[key] = l
	}
	m.mu.Unlock()
	return l
}

func (m *memo) called(step string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls[step]
}

func (m *memo) markCalled(step string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.calls) < maxMemo {
		m.calls[step] = true
	}
}

// forget drops what belongs to one exit: its log, and the steps its key
// names ("exit/<key>/...").
func (m *memo) forget(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.logs, key)
	m.dropPrefix("exit/" + key + "/")
}

// forgetPod drops the deletion calls of a pod that is gone.
func (m *memo) forgetPod(key types.NamespacedName) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dropPrefix(deletionStepPrefix(key))
}

func (m *memo) dropPrefix(prefix string) {
	for s := range m.calls {
		if strings.HasPrefix(s, prefix) {
			delete(m.calls, s)
		}
	}
}

// deletionStepPrefix prefixes the memo steps of one pod's deletion calls.
func deletionStepPrefix(key types.NamespacedName) string {
	return "deletion/" + key.Namespace + "/" + key.Name + "/"
}
