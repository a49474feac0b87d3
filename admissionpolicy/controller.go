package admissionpolicy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// Mode says where pod admission happens.
type Mode string

const (
	// ModeWebhook: gracekeeper's webhooks mutate and validate pods; no
	// admission policy is compiled (any left from apiserver mode is removed).
	ModeWebhook Mode = "webhook"
	// ModeAPIServer: each policy is compiled to a ValidatingAdmissionPolicy
	// and a MutatingAdmissionPolicy the API server evaluates itself.
	ModeAPIServer Mode = "apiserver"
)

// ControllerName names the controller (logs, metrics).
const ControllerName = "admission-policies"

// resync re-applies the compiled objects now and then, so a hand edit or
// deletion is undone without watching objects gracekeeper does not cache.
const resync = 10 * time.Minute

// Reconciler keeps the compiled objects in step with the policies: on
// every policy change it compiles the whole set (each policy's objects
// depend on the others), creates or updates what differs and deletes
// every object it labelled that is no longer wanted. It runs on the
// leader only (controller-runtime's default for controllers).
type Reconciler struct {
	// Client writes; Reader lists the compiled objects uncached (no
	// informer on them: their API may not be served in webhook mode).
	Client client.Client
	Reader client.Reader
	Mode   Mode
	Config Config
	Log    logr.Logger
}

// Setup adds the Reconciler to mgr, triggered by any LifecyclePolicy
// event and once at start (orphans of an earlier run are removed then).
func Setup(mgr manager.Manager, r *Reconciler) error {
	one := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: "policies"}}}
	})
	return ctrl.ControllerManagedBy(mgr).Named(ControllerName).
		Watches(&v1alpha1.LifecyclePolicy{}, one).
		WatchesRawSource(startOnce()).
		Complete(r)
}

// Reconcile compiles and applies the set; the request's name is ignored.
func (r *Reconciler) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	var list v1alpha1.LifecyclePolicyList
	if err := r.Client.List(ctx, &list); err != nil {
		return reconcile.Result{}, err
	}
	want := map[string]bool{} // kind/name
	var errs []error
	if r.Mode == ModeAPIServer {
		cfg := r.Config
		cfg.Mutate = true
		// A policy being deleted is out of the set already, as for the engine.
		live := list.Items[:0:0]
		for _, p := range list.Items {
			if p.DeletionTimestamp.IsZero() {
				live = append(live, p)
			}
		}
		for i := range live {
			p := &live[i]
			o, err := Compile(p, live, cfg)
			if err != nil {
				// The policy webhook refuses such a policy; one that got in
				// anyway is left out, as the engine leaves it out.
				r.Log.Info("policy not compiled", "policy", p.Name, "error", err.Error())
				continue
			}
			for _, obj := range []client.Object{o.VAP, o.VAPBinding, o.MAP, o.MAPBinding} {
				want[key(obj)] = true
				if err := r.apply(ctx, obj); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", key(obj), err))
				}
			}
		}
	}
	if err := r.prune(ctx, want); err != nil {
		errs = append(errs, err)
	}
	return reconcile.Result{RequeueAfter: resync}, errors.Join(errs...)
}

func key(o client.Object) string { return fmt.Sprintf("%T/%s", o, o.GetName()) }

// apply creates obj or updates the existing object where its labels,
// owner or spec differ.
func (r *Reconciler) apply(ctx context.Context, obj client.Object) error {
	cur := obj.DeepCopyObject().(client.Object)
	err := r.Reader.Get(ctx, client.ObjectKeyFromObject(obj), cur)
	if apierrors.IsNotFound(err) {
		return r.Client.Create(ctx, obj)
	}
	if err != nil {
		return err
	}
	if cur.GetLabels()[LabelCompiled] == "true" && equality.Semantic.DeepEqual(cur.GetOwnerReferences(), obj.GetOwnerReferences()) && SameSpec(cur, obj) {
		return nil
	}
	obj.SetResourceVersion(cur.GetResourceVersion())
	return r.Client.Update(ctx, obj)
}

// SameSpec reports whether two compiled objects of one kind have equal specs.
func SameSpec(a, b client.Object) bool { return equality.Semantic.DeepEqual(specOf(a), specOf(b)) }

func specOf(o client.Object) any {
	switch x := o.(type) {
	case *admissionregistrationv1.ValidatingAdmissionPolicy:
		return x.Spec
	case *admissionregistrationv1.ValidatingAdmissionPolicyBinding:
		return x.Spec
	case *admissionregistrationv1.MutatingAdmissionPolicy:
		return x.Spec
	case *admissionregistrationv1.MutatingAdmissionPolicyBinding:
		return x.Spec
	}
	return nil
}

// prune deletes every labelled object not in want. An API the server does
// not serve (MutatingAdmissionPolicy before Kubernetes 1.36) holds none.
func (r *Reconciler) prune(ctx context.Context, want map[string]bool) error {
	lists := []client.ObjectList{
		&admissionregistrationv1.ValidatingAdmissionPolicyBindingList{},
		&admissionregistrationv1.ValidatingAdmissionPolicyList{},
		&admissionregistrationv1.MutatingAdmissionPolicyBindingList{},
		&admissionregistrationv1.MutatingAdmissionPolicyList{},
	}
	var errs []error
	for _, l := range lists {
		if err := r.Reader.List(ctx, l, client.MatchingLabels{LabelCompiled: "true"}); err != nil {
			if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
				continue
			}
			errs = append(errs, err)
			continue
		}
		items, err := meta.ExtractList(l)
		if err != nil {
			return err
		}
		for _, it := range items {
			o := it.(client.Object)
			if want[key(o)] {
				continue
			}
			if err := r.Client.Delete(ctx, o); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
				continue
			}
			r.Log.Info("removed a compiled admission object no policy wants", "object", key(o))
		}
	}
	return errors.Join(errs...)
}

// Validate says whether m is a mode.
func (m Mode) Validate() error {
	switch m {
	case ModeWebhook, ModeAPIServer:
		return nil
	}
	return fmt.Errorf("%q: must be webhook or apiserver", string(m))
}

// startOnce enqueues the one request when the controller starts, so that
// objects left by an earlier run are pruned even with no policy at all.
func startOnce() source.Func {
	return func(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Name: "policies"}})
		return nil
	}
}

// RemoveAll deletes every object gracekeeper compiled (the label), for
// `gracekeeper release-finalizers` before an uninstall: policies usually
// outlive the release (the chart keeps the CRD), and a
// MutatingAdmissionPolicy left behind would go on adding finalizers that
// no controller removes any more.
func RemoveAll(ctx context.Context, c client.Client) error {
	return (&Reconciler{Client: c, Reader: c}).prune(ctx, nil)
}
