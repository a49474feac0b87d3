package finalizer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/gracekeeper/gracekeeper/policies"
)

// ControllerName names the controller (logs, metrics of controller-runtime).
const ControllerName = "gracekeeper-finalizer"

// CleanupControllerName names the controller that runs cleanup steps.
const CleanupControllerName = "gracekeeper-finalizer-cleanup"

// Reconciler does the work of gracekeeper's finalizers on deleted pods and
// removes them.
type Reconciler struct {
	client  client.Client // pods from the cache; events and patches to the API server
	reader  client.Reader // uncached: ReplicaSets (owner resolution) and Nodes (node gone)
	opts    Options
	metrics *Metrics
	retries *retries
	// memo: what this replica already did for work still being retried.
	memo *memo
}

// NewReconciler builds the reconciler. c reads pods (a cached client is
// fine: every write is guarded against stale reads) and writes; reader reads
// ReplicaSets and Nodes without a cache (mgr.GetAPIReader()).
func NewReconciler(c client.Client, reader client.Reader, opts Options) (*Reconciler, error) {
	if c == nil || reader == nil {
		return nil, errors.New("finalizer: a client and a reader are required")
	}
	opts = opts.withDefaults()
	m, err := NewMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("finalizer: register metrics: %w", err)
	}
	return &Reconciler{client: c, reader: reader, opts: opts, metrics: m, retries: newRetries(opts.BackoffBase, opts.BackoffMax), memo: newMemo()}, nil
}

// Metrics returns the reconciler's counters.
func (r *Reconciler) Metrics() *Metrics { return r.metrics }

// Setup adds the finalizer controller to mgr. Controllers run only on the
// leader when the manager has leader election on, so two replicas never work
// on the same pod. The manager's cache must be built with CacheOptions().
func Setup(mgr manager.Manager, opts Options) error {
	if opts.Logs == nil {
		l, err := NewLogReader(mgr.GetConfig())
		if err != nil {
			return fmt.Errorf("finalizer: log reader: %w", err)
		}
		opts.Logs = l
	}
	r, err := NewReconciler(mgr.GetClient(), mgr.GetAPIReader(), opts)
	if err != nil {
		return err
	}
	return r.SetupWithManager(mgr)
}

// SetupWithManager adds an already built reconciler to mgr (tests use it to
// wrap the client with faults).
// Two controllers share the pod informer: the termination records, and the
// cleanup POSTs with their own bounded workers, so that slow or hanging
// cleanup endpoints never starve the records (and finalizers) of other pods.
func (r *Reconciler) SetupWithManager(mgr manager.Manager) error {
	// Only deleted pods have work; a running pod's status updates do not.
	deleted := builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetDeletionTimestamp() != nil
	}))
	err := ctrl.NewControllerManagedBy(mgr).Named(ControllerName).For(&corev1.Pod{}, deleted).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.opts.MaxConcurrentReconciles}).
		Complete(r)
	if err != nil {
		return err
	}
	err = ctrl.NewControllerManagedBy(mgr).Named(CleanupControllerName).For(&corev1.Pod{}, deleted).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.opts.CleanupWorkers}).
		Complete(reconcile.Func(r.reconcileCleanups))
	if err != nil {
		return err
	}
	// Container exits of running pods, from the same informer: no webhook
	// on pod UPDATE, only pods whose status shows a terminated instance.
	return ctrl.NewControllerManagedBy(mgr).Named(ExitsControllerName).
		For(&corev1.Pod{}, builder.WithPredicates(predicate.NewPredicateFuncs(hasExits))).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.opts.ExitWorkers}).
		Complete(reconcile.Func(r.reconcileExits))
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	pod := &corev1.Pod{}
	if err := r.client.Get(ctx, req.NamespacedName, pod); err != nil {
		if apierrors.IsNotFound(err) {
			r.retries.done(req.NamespacedName)
			r.memo.forgetPod(req.NamespacedName)
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	pod, err := r.readFull(ctx, pod)
	if err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	after, err := r.finish(ctx, pod, false, terminationStep)
	return reconcile.Result{RequeueAfter: after}, err
}

// reconcileCleanups is the cleanup controller's Reconcile: the cleanup
// steps only, on at most Options.CleanupWorkers pods at once.
func (r *Reconciler) reconcileCleanups(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	pod, err := r.cachedPod(ctx, req.NamespacedName)
	if err != nil || pod == nil {
		return reconcile.Result{}, err
	}
	after, err := r.finish(ctx, pod, false, cleanupSteps)
	return reconcile.Result{RequeueAfter: after}, err
}

// cachedPod reads the pod from the cache, or from the API server when the
// cached copy was cut at a cap; nil when it is gone.
func (r *Reconciler) cachedPod(ctx context.Context, key types.NamespacedName) (*corev1.Pod, error) {
	pod := &corev1.Pod{}
	if err := r.client.Get(ctx, key, pod); err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	pod, err := r.readFull(ctx, pod)
	if err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	return pod, nil
}

// finish does what can be done now for one pod and removes the finalizers
// whose work is done. It returns when to look again (0: no need).
// released: release-finalizers is running (uninstall): every gracekeeper
// finalizer goes now, after recording what can be recorded.
func (r *Reconciler) finish(ctx context.Context, pod *corev1.Pod, released bool, which steps) (time.Duration, error) {
	logger := log.FromContext(ctx).WithValues("uid", pod.UID)
	own := ownedFinalizers(pod)
	if which&cleanupSteps == 0 {
		own.cleanups = nil
	} else {
		for _, s := range own.skipped {
			logger.Info("cleanup record ignored", "reason", s)
		}
	}
	if which&terminationStep == 0 {
		own.termination = false
	}
	if !own.any() || (pod.DeletionTimestamp == nil && !released) {
		return 0, nil
	}
	now := r.opts.Clock.Now()
	cause, wait, err := r.ended(ctx, logger, pod, now, released)
	if err != nil || wait > 0 {
		return wait, err
	}
	w := r.newWork(ctx, logger, pod, cause, now, released)
	var out outcome
	for _, c := range own.cleanups {
		out.add(r.cleanupStep(ctx, w, c))
	}
	if own.termination {
		out.add(r.terminationStep(ctx, w))
	}
	if err := r.removeFinalizers(ctx, pod, out.remove); err != nil {
		out.errs = append(out.errs, err)
	}
	return out.requeue, errors.Join(out.errs...)
}

// steps selects what finish does: the two controllers split the work so
// that cleanups (bounded by their own workers, each POST by its timeout)
// never hold up the termination records of other pods.
type steps int

const (
	terminationStep steps = 1 << iota
	cleanupSteps
	allSteps = terminationStep | cleanupSteps
)

// work is what the steps of one pod share.
type work struct {
	logger   logr.Logger
	pod      *corev1.Pod
	key      types.NamespacedName
	owner    Owner
	rec      Record
	now      time.Time
	stamp    metav1.Time
	released bool
	// alive: release-finalizers runs while the pod has not been deleted.
	alive bool
}

func (r *Reconciler) newWork(ctx context.Context, logger logr.Logger, pod *corev1.Pod, cause Cause, now time.Time, released bool) *work {
	return &work{
		logger: logger, pod: pod, key: types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name},
		owner: resolveOwner(ctx, r.reader, pod), rec: buildRecord(pod, cause),
		now: now, stamp: metav1.NewTime(now), released: released, alive: pod.DeletionTimestamp == nil,
	}
}

// outcome gathers what the steps decided.
type outcome struct {
	remove  []string
	requeue time.Duration
	errs    []error
}

func (o *outcome) add(s outcome) {
	o.remove = append(o.remove, s.remove...)
	o.requeue = minPositive(o.requeue, s.requeue)
	o.errs = append(o.errs, s.errs...)
}

// ended decides whether the deleted pod's containers have ended, and why
// (Cause); wait > 0 says when to look again. When released, it never waits:
// what is not known yet is recorded as such.
func (r *Reconciler) ended(ctx context.Context, logger logr.Logger, pod *corev1.Pod, now time.Time, released bool) (cause Cause, wait time.Duration, err error) {
	if pod.DeletionTimestamp == nil {
		return CauseReleased, 0, nil
	}
	v := evaluate(pod, now, r.opts.NodeGoneMargin)
	switch {
	case v.done:
		return v.cause, 0, nil
	case v.checkNode:
		lost, err := r.nodeLost(ctx, pod.Spec.NodeName)
		if err != nil {
			// Past the grace deadline and the margin the kubelet has had
			// every chance to report; a node that cannot be read (RBAC
			// reduced, say) must not hold the pod: record what is known.
			if _, permanent := refusal(err); !permanent && !released {
				return "", 0, err
			}
			logger.Info("node unreadable past the grace deadline and margin; recording the containers as they are", "node", pod.Spec.NodeName, "error", err.Error())
			lost = true
		}
		if lost {
			return CauseNodeLost, 0, nil
		}
		if !released {
			// Still there and Ready: the kubelet's status update wakes us;
			// this is only the fallback.
			return "", r.opts.NodeGoneMargin, nil
		}
	case !released:
		return "", v.wait, nil
	}
	return CauseReleased, 0, nil
}

// terminationStep writes the pod's one termination record (an Event, else
// the log) and removes the termination-record finalizer.
func (r *Reconciler) terminationStep(ctx context.Context, w *work) outcome {
	done := outcome{remove: []string{TerminationRecord}}
	if w.alive {
		// Nothing ended, so nothing to record: the pod simply no longer
		// waits for gracekeeper.
		return done
	}
	reason, typ := w.rec.eventReason()
	res := r.writeRecord(ctx, w, recordTermination, eventSpec{
		name: TerminationEventName(w.pod), reason: reason, typ: typ, action: "Terminate", message: w.rec.message(w.pod),
	}, "cause", w.rec.Cause, "gracePeriodSeconds", w.rec.GracePeriodSeconds, "overruns", w.rec.Overruns(), "containers", w.rec.Containers)
	if res.retry > 0 || res.err != nil {
		return outcome{requeue: res.retry, errs: errs(res.err)}
	}
	if res.recorded {
		// Counted when this call recorded it: a retry after a crash between
		// the Event and the finalizer patch finds the Event (AlreadyExists)
		// and counts nothing twice.
		r.metrics.observe(w.rec)
		w.logger.Info("termination recorded", "owner", w.owner.Kind+"/"+w.owner.Name, "cause", w.rec.Cause,
			"gracePeriodSeconds", w.rec.GracePeriodSeconds, "overruns", w.rec.Overruns(), "containers", w.rec.Containers)
	}
	return done
}

// cleanupStep runs one cleanup step as the current policy declares it:
// POST, retry with backoff, give up. The POST is cut at the give-up time too.
func (r *Reconciler) cleanupStep(ctx context.Context, w *work, c policies.CleanupRecord) outcome {
	if w.alive {
		// Uninstall while the pod still runs: releasing now would pull the
		// resource from under it; nobody will release it when it ends.
		return r.abandon(ctx, w, c.Policy, c.Finalizer, "was released by `gracekeeper release-finalizers` (uninstall) while the pod was running")
	}
	t, why, err := r.currentTarget(ctx, w.pod, c)
	switch {
	case err != nil && (w.released || !w.now.Before(w.pod.DeletionTimestamp.Add(DefaultPolicyUnreadableGiveUp))):
		return r.abandon(ctx, w, c.Policy, c.Finalizer, fmt.Sprintf("could not be looked up in its policy (%v); nothing was called", err))
	case err != nil:
		return outcome{errs: []error{err}}
	case why != "":
		return r.abandon(ctx, w, c.Policy, c.Finalizer, why+"; nothing was called")
	}
	giveUpAt := time.Time{}
	if t.giveUp > 0 {
		giveUpAt = w.pod.DeletionTimestamp.Add(t.giveUp)
		if !w.now.Before(giveUpAt) {
			return r.abandon(ctx, w, t.policy, t.finalizer, fmt.Sprintf("(%s) got no 2xx answer within giveUpAfterSeconds %d of the deletion", t.url, int64(t.giveUp/time.Second)))
		}
	}
	if due := r.retries.due(w.key, w.pod.UID, t.finalizer); !w.released && w.now.Before(due) {
		return outcome{requeue: due.Sub(w.now)}
	}
	// Answered already, by this replica: the finalizer patch failed, or the
	// cache has not seen it yet. Only remove the finalizer.
	step := deletionStepPrefix(w.key) + string(w.pod.UID) + "/" + t.finalizer
	if r.memo.called(step) {
		return outcome{remove: []string{t.finalizer}}
	}
	timeout := t.timeout
	if !giveUpAt.IsZero() {
		timeout = min(timeout, giveUpAt.Sub(w.now))
	}
	err = post(ctx, r.opts.HTTPClient, t.url, timeout, newCleanupRequest(w.pod, w.owner, w.rec, t))
	if err == nil {
		r.metrics.Cleanups.WithLabelValues("success").Inc()
		w.logger.Info("cleanup done", "finalizer", t.finalizer, "policy", t.policy)
		r.retries.done(w.key, t.finalizer)
		r.memo.markCalled(step)
		return outcome{remove: []string{t.finalizer}}
	}
	r.metrics.Cleanups.WithLabelValues("failure").Inc()
	if w.released {
		return r.abandon(ctx, w, t.policy, t.finalizer, fmt.Sprintf("(%s) failed during `gracekeeper release-finalizers` (uninstall): %v", t.url, err))
	}
	d, _ := r.retries.failed(w.key, w.pod.UID, t.finalizer, w.now)
	if !giveUpAt.IsZero() {
		d = min(d, max(giveUpAt.Sub(r.opts.Clock.Now()), time.Millisecond))
	}
	w.logger.Info("cleanup failed; will retry", "finalizer", t.finalizer, "policy", t.policy, "error", err.Error(), "retryIn", d.String())
	return outcome{requeue: d}
}

// abandon removes a cleanup finalizer without a 2xx answer and records
// that with a Warning (an Event, else the log).
func (r *Reconciler) abandon(ctx context.Context, w *work, policy, finalizer, why string) outcome {
	msg := fmt.Sprintf("pod %s: cleanup %s (policy %q) %s; the finalizer was removed without a 2xx answer, so the release was abandoned", w.pod.Name, finalizer, policy, why)
	res := r.writeRecord(ctx, w, recordAbandon, eventSpec{
		name: AbandonEventName(w.pod, finalizer), reason: "CleanupAbandoned", typ: corev1.EventTypeWarning, action: "Cleanup", message: msg,
	}, "finalizer", finalizer, "policy", policy)
	if res.retry > 0 || res.err != nil {
		return outcome{requeue: res.retry, errs: errs(res.err)}
	}
	if res.recorded {
		r.metrics.Cleanups.WithLabelValues("abandoned").Inc()
		w.logger.Info("cleanup abandoned", "finalizer", finalizer, "policy", policy, "why", why)
	}
	return outcome{remove: []string{finalizer}}
}

// The record label of records_unwritten_total.
const (
	recordTermination = "termination"
	recordAbandon     = "cleanup_abandoned"
)

// written is what writeRecord did.
type written struct {
	// recorded: this call wrote the record (as an Event or to the log);
	// false when an earlier attempt had.
	recorded bool
	// retry > 0: the API server failed transiently; try again then.
	retry time.Duration
	err   error
}

// writeRecord writes a record as its UID-named Event. When the API server
// refuses the Event (namespace terminating, quota, RBAC, an admission
// denial), or fails for longer than EventRetryWindow, or release-finalizers
// runs, the record goes to the structured log with every field instead and
// is counted in records_unwritten_total: the finalizer is removed either
// way, so a record can never hold a pod.
func (r *Reconciler) writeRecord(ctx context.Context, w *work, kind string, e eventSpec, fields ...any) written {
	ctx, cancel := context.WithTimeout(ctx, r.opts.APITimeout)
	defer cancel()
	created, err := createEvent(ctx, r.client, w.pod, w.owner, r.opts.ReportingInstance, w.stamp, e)
	if err == nil {
		r.retries.done(w.key, e.name)
		return written{recorded: created}
	}
	reason, permanent := refusal(err)
	if !permanent && !w.released {
		d, first := r.retries.failed(w.key, w.pod.UID, e.name, w.now)
		if left := first.Add(r.opts.EventRetryWindow).Sub(w.now); left > 0 {
			// Never past the window: the bound is the window plus one call.
			d = min(d, left)
			w.logger.Info("record Event not written; will retry", "event", e.name, "error", err.Error(), "retryIn", d.String())
			return written{retry: d}
		}
	}
	if r.retries.markLogged(w.key, w.pod.UID, e.name) {
		return written{} // logged by an earlier attempt whose finalizer patch failed
	}
	r.metrics.Unwritten.WithLabelValues(kind, reason).Inc()
	kv := []any{"record", kind, "refusal", reason, "namespace", w.pod.Namespace, "pod", w.pod.Name,
		"owner", w.owner, "event", e.name, "eventReason", e.reason, "eventType", e.typ, "message", e.message}
	w.logger.Error(err, "record not written as an Event; it is logged here instead and nothing waits for it", append(kv, fields...)...)
	return written{recorded: true}
}

func errs(err error) []error {
	if err == nil {
		return nil
	}
	return []error{err}
}

// removeFinalizers patches the named finalizers off the pod.
func (r *Reconciler) removeFinalizers(ctx context.Context, pod *corev1.Pod, remove []string) error {
	patch, ok := removalPatch(pod, remove)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.APITimeout)
	defer cancel()
	err := r.client.Patch(ctx, pod, client.RawPatch(types.JSONPatchType, patch))
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("remove finalizers %v from pod %s/%s: %w", remove, pod.Namespace, pod.Name, err)
	}
	r.retries.done(types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}, remove...)
	return nil
}

// nodeLost: the node is gone, or its Ready condition is not True.
func (r *Reconciler) nodeLost(ctx context.Context, name string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.APITimeout)
	defer cancel()
	node := &corev1.Node{}
	if err := r.reader.Get(ctx, types.NamespacedName{Name: name}, node); err != nil {
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, fmt.Errorf("get node %s: %w", name, err)
	}
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status != corev1.ConditionTrue, nil
		}
	}
	return true, nil
}

func minPositive(a, b time.Duration) time.Duration {
	if a <= 0 || (b > 0 && b < a) {
		return b
	}
	return a
}
