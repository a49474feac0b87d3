package finalizer

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// MaxCleanupTimeout is the CRD's maximum timeoutSeconds, enforced here too:
// a policy applied before the schema had it must not hold a worker longer.
const MaxCleanupTimeout = 60 * time.Second

// target is a cleanup step as an admin declared it: read from the current
// LifecyclePolicy, never from the pod. The pod's gracekeeper.dev/cleanup
// annotation only says which policy a cleanup finalizer came from; a pod
// author can write it, so nothing in it (URL, timeouts) is ever used.
type target struct {
	policy, finalizer, url string
	timeout                time.Duration
	// giveUp is counted from the deletion (from the exit, for an exit
	// call); 0 never gives up.
	giveUp time.Duration
	// onExit: the policy asks to be called on container exits too.
	onExit bool
}

// currentTarget looks up the cleanup step the pod's finalizer stands for in
// the current policy. why != "" says why there is none: the policy is gone,
// no longer declares this finalizer, no longer selects the pod's namespace
// (namespace labels are the admins'; pod labels are the author's and prove
// nothing), or names a URL gracekeeper will not call. err: the policy or
// namespace could not be read now (try again).
func (r *Reconciler) currentTarget(ctx context.Context, pod *corev1.Pod, rec policies.CleanupRecord) (t target, why string, err error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.APITimeout)
	defer cancel()
	pol := &v1alpha1.LifecyclePolicy{}
	if err := r.client.Get(ctx, types.NamespacedName{Name: rec.Policy}, pol); err != nil {
		if apierrors.IsNotFound(err) {
			return t, fmt.Sprintf("policy %q no longer exists", rec.Policy), nil
		}
		return t, "", fmt.Errorf("get LifecyclePolicy %q: %w", rec.Policy, err)
	}
	cl := pol.Spec.Cleanup
	if cl == nil || cl.Finalizer != rec.Finalizer {
		return t, fmt.Sprintf("policy %q no longer declares cleanup %s", rec.Policy, rec.Finalizer), nil
	}
	if ok, err := r.selectsNamespace(ctx, pol, pod.Namespace); err != nil {
		return t, "", err
	} else if !ok {
		return t, fmt.Sprintf("policy %q does not select namespace %q", rec.Policy, pod.Namespace), nil
	}
	if err := checkURL(cl.URL); err != nil {
		return t, fmt.Sprintf("policy %q: %v", rec.Policy, err), nil
	}
	t = target{policy: pol.Name, finalizer: cl.Finalizer, url: cl.URL,
		timeout: time.Duration(cl.TimeoutSeconds) * time.Second, giveUp: 600 * time.Second}
	if t.timeout <= 0 {
		t.timeout = r.opts.DefaultCleanupTimeout
	}
	t.timeout = min(t.timeout, MaxCleanupTimeout)
	if g := cl.GiveUpAfterSeconds; g != nil {
		t.giveUp = time.Duration(*g) * time.Second
	}
	t.onExit = slices.Contains(cl.When, v1alpha1.CleanupOnContainerExit)
	return t, "", nil
}

// selectsNamespace: the policy's namespaceSelector (the admins' labels)
// selects the namespace. A namespace that cannot be found has only its name label.
func (r *Reconciler) selectsNamespace(ctx context.Context, pol *v1alpha1.LifecyclePolicy, namespace string) (bool, error) {
	sel := pol.Spec.Match.NamespaceSelector
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		return true, nil
	}
	ns := &corev1.Namespace{}
	if err := r.client.Get(ctx, types.NamespacedName{Name: namespace}, ns); err != nil && !apierrors.IsNotFound(err) {
		return false, fmt.Errorf("get namespace %q: %w", namespace, err)
	}
	ns.Name = namespace
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && s.Matches(nsLabelSet(ns)), nil
}

// nsLabelSet is the namespace's labels plus kubernetes.io/metadata.name,
// which the API server sets on every namespace (NamespaceDefaultLabelName).
func nsLabelSet(ns *corev1.Namespace) labels.Set {
	m := labels.Set{corev1.LabelMetadataName: ns.Name}
	for k, v := range ns.Labels {
		m[k] = v
	}
	return m
}

// checkURL is the CRD's rule again (https, or plain http only to a
// cluster-local Service), for policies applied before the rule existed.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("url: %v", err)
	}
	switch {
	case u.Scheme == "https" && u.Host != "":
	case u.Scheme == "http" && (strings.HasSuffix(u.Hostname(), ".svc") || strings.HasSuffix(u.Hostname(), ".svc.cluster.local")):
	default:
		return fmt.Errorf("url %q must be https, or plain http only to a cluster-local Service", raw)
	}
	return nil
}
