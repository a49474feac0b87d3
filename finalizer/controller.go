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
)

// ControllerName names the controller (logs, metrics of controller-runtime).
const ControllerName = "gracekeeper-finalizer"

// Reconciler does the work of gracekeeper's finalizers on deleted pods and
// removes them.
type Reconciler struct {
	client  client.Client // pods from the cache; events and patches to the API server
	reader  client.Reader // uncached: ReplicaSets (owner resolution) and Nodes (node gone)
	opts    Options
	metrics *Metrics
	backoff *backoff
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
	return &Reconciler{client: c, reader: reader, opts: opts, metrics: m, backoff: newBackoff(opts.BackoffBase, opts.BackoffMax)}, nil
}

// Metrics returns the reconciler's counters.
func (r *Reconciler) Metrics() *Metrics { return r.metrics }

// Setup adds the finalizer controller to mgr. Controllers run only on the
// leader when the manager has leader election on, so two replicas never work
// on the same pod. The manager's cache must be built with CacheOptions().
func Setup(mgr manager.Manager, opts Options) error {
	r, err := NewReconciler(mgr.GetClient(), mgr.GetAPIReader(), opts)
	if err != nil {
		return err
	}
	return r.SetupWithManager(mgr)
}

// SetupWithManager adds an already built reconciler to mgr (tests use it to
// wrap the client with faults).
func (r *Reconciler) SetupWithManager(mgr manager.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named(ControllerName).
		// Only deleted pods have work; a running pod's status updates do not.
		For(&corev1.Pod{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetDeletionTimestamp() != nil
		}))).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.opts.MaxConcurrentReconciles}).
		Complete(r)
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	pod := &corev1.Pod{}
	if err := r.client.Get(ctx, req.NamespacedName, pod); err != nil {
		if apierrors.IsNotFound(err) {
			r.backoff.done(req.NamespacedName)
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	after, err := r.finish(ctx, pod, false)
	return reconcile.Result{RequeueAfter: after}, err
}

// finish does what can be done now for one pod and removes the finalizers
// whose work is done. It returns when to look again (0: no need).
// released: release-finalizers is running (uninstall): every gracekeeper
// finalizer goes now, after recording what can be recorded.
func (r *Reconciler) finish(ctx context.Context, pod *corev1.Pod, released bool) (time.Duration, error) {
	logger := log.FromContext(ctx).WithValues("uid", pod.UID)
	own := ownedFinalizers(pod)
	for _, s := range own.skipped {
		logger.Info("cleanup record ignored", "reason", s)
	}
	if !own.any() || (pod.DeletionTimestamp == nil && !released) {
		return 0, nil
	}
	now := r.opts.Clock.Now()
	var requeue time.Duration
	cause := CauseReleased
	if pod.DeletionTimestamp != nil {
		v := evaluate(pod, now, r.opts.NodeGoneMargin)
		switch {
		case v.done:
			cause = v.cause
		case v.checkNode:
			lost, err := nodeLost(ctx, r.reader, pod.Spec.NodeName)
			if err != nil && !released {
				return 0, err
			}
			if lost {
				cause = CauseNodeLost
			} else if !released {
				// Still there and Ready: the kubelet's status update wakes us;
				// this is only the fallback.
				return r.opts.NodeGoneMargin, nil
			}
		case !released:
			return v.wait, nil
		}
	}
	alive := pod.DeletionTimestamp == nil
	owner := resolveOwner(ctx, r.reader, pod)
	rec := buildRecord(pod, cause)
	key := types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}
	stamp := metav1.NewTime(now)
	var remove []string
	var errs []error

	for _, c := range own.cleanups {
		giveUpAt := time.Time{}
		if c.GiveUpAfterSeconds > 0 && pod.DeletionTimestamp != nil {
			giveUpAt = pod.DeletionTimestamp.Add(time.Duration(c.GiveUpAfterSeconds) * time.Second)
		}
		abandon := func(why string) {
			msg := fmt.Sprintf("pod %s: cleanup %s (policy %q, %s) %s; the finalizer was removed without a 2xx answer, so the release was abandoned", pod.Name, c.Finalizer, c.Policy, c.URL, why)
			created, err := createEvent(ctx, r.client, pod, owner, r.opts.ReportingInstance, stamp, eventSpec{
				name: AbandonEventName(pod, c.Finalizer), reason: "CleanupAbandoned", typ: corev1.EventTypeWarning, action: "Cleanup", message: msg,
			})
			if err != nil {
				errs = append(errs, err)
				return
			}
			if created {
				r.metrics.Cleanups.WithLabelValues("abandoned").Inc()
				logger.Info("cleanup abandoned", "finalizer", c.Finalizer, "policy", c.Policy, "why", why)
			}
			remove = append(remove, c.Finalizer)
		}
		switch {
		case alive:
			// Uninstall while the pod still runs: releasing now would pull the
			// resource from under it; nobody will release it when it ends.
			abandon("was released by `gracekeeper release-finalizers` (uninstall) while the pod was running")
			continue
		case !giveUpAt.IsZero() && !now.Before(giveUpAt):
			abandon(fmt.Sprintf("got no 2xx answer within giveUpAfterSeconds %d of the deletion", c.GiveUpAfterSeconds))
			continue
		}
		if due := r.backoff.due(key, pod.UID, c.Finalizer); !released && now.Before(due) {
			requeue = minPositive(requeue, due.Sub(now))
			continue
		}
		timeout := time.Duration(c.TimeoutSeconds) * time.Second
		if timeout <= 0 {
			timeout = r.opts.DefaultCleanupTimeout
		}
		err := post(ctx, r.opts.HTTPClient, c.URL, timeout, newCleanupRequest(pod, owner, rec, c))
		if err == nil {
			r.metrics.Cleanups.WithLabelValues("success").Inc()
			logger.Info("cleanup done", "finalizer", c.Finalizer, "policy", c.Policy)
			r.backoff.done(key, c.Finalizer)
			remove = append(remove, c.Finalizer)
			continue
		}
		r.metrics.Cleanups.WithLabelValues("failure").Inc()
		if released {
			abandon(fmt.Sprintf("failed during `gracekeeper release-finalizers` (uninstall): %v", err))
			continue
		}
		d := r.backoff.failed(key, pod.UID, c.Finalizer, now)
		if !giveUpAt.IsZero() {
			d = min(d, max(giveUpAt.Sub(now), time.Millisecond))
		}
		requeue = minPositive(requeue, d)
		logger.Info("cleanup failed; will retry", "finalizer", c.Finalizer, "policy", c.Policy, "error", err.Error(), "retryIn", d.String())
	}

	if own.termination {
		if alive {
			// Nothing ended, so nothing to record: the pod simply no longer
			// waits for gracekeeper.
			remove = append(remove, TerminationRecord)
		} else if err := r.record(ctx, logger, pod, owner, rec, stamp); err != nil {
			errs = append(errs, err)
		} else {
			remove = append(remove, TerminationRecord)
		}
	}

	if patch, ok := removalPatch(pod, remove); ok {
		err := r.client.Patch(ctx, pod, client.RawPatch(types.JSONPatchType, patch))
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove finalizers %v from pod %s/%s: %w", remove, pod.Namespace, pod.Name, err))
		}
	}
	return requeue, errors.Join(errs...)
}

// record writes the pod's one termination Event and, when this call created
// it, the metrics and the log line: a retry after a crash between the Event
// and the finalizer patch finds the Event and records nothing twice.
func (r *Reconciler) record(ctx context.Context, logger logr.Logger, pod *corev1.Pod, owner Owner, rec Record, now metav1.Time) error {
	reason, typ := rec.eventReason()
	created, err := createEvent(ctx, r.client, pod, owner, r.opts.ReportingInstance, now, eventSpec{
		name: TerminationEventName(pod), reason: reason, typ: typ, action: "Terminate", message: rec.message(pod),
	})
	if err != nil || !created {
		return err
	}
	r.metrics.observe(rec)
	logger.Info("termination recorded", "owner", owner.Kind+"/"+owner.Name, "cause", rec.Cause,
		"gracePeriodSeconds", rec.GracePeriodSeconds, "overruns", rec.Overruns(), "containers", rec.Containers)
	return nil
}

// nodeLost: the node is gone, or its Ready condition is not True.
func nodeLost(ctx context.Context, reader client.Reader, name string) (bool, error) {
	node := &corev1.Node{}
	if err := reader.Get(ctx, types.NamespacedName{Name: name}, node); err != nil {
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
