package audit

import (
	"context"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gracekeeper/gracekeeper/check"
	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// CLIOptions are one `gracekeeper audit` run against a live cluster.
type CLIOptions struct {
	// Namespace is the namespace to audit; ignored with AllNamespaces.
	Namespace     string
	AllNamespaces bool
	// Excluded namespaces are never judged (the webhook's exclusions).
	Excluded []string
	Stdout   io.Writer
	Stderr   io.Writer
}

// RunCLI reads the policies, namespaces, pods and workloads through c (only
// get and list: it never writes), judges them as `check` does, prints
// check's findings table on Stdout and returns check's exit code: 1 when a
// policy denies something, 2 when the cluster cannot be read.
func RunCLI(ctx context.Context, c client.Reader, o CLIOptions) int {
	fail := func(err error) int {
		fmt.Fprintf(o.Stderr, "gracekeeper audit: %v\n", err)
		return check.ExitBadInput
	}
	var pols v1alpha1.LifecyclePolicyList
	if err := c.List(ctx, &pols); err != nil {
		if apierrors.IsNotFound(err) {
			return fail(fmt.Errorf("the LifecyclePolicy API (gracekeeper.dev/v1alpha1) is not installed in this cluster: %w", err))
		}
		return fail(fmt.Errorf("listing LifecyclePolicies: %w", err))
	}
	set, invalid := policies.NewSet(policies.Config{ExcludedNamespaces: o.Excluded}, pols.Items)
	for _, f := range invalid {
		// The webhook leaves the same policies out.
		fmt.Fprintf(o.Stderr, "warning: %s\n", f.Message)
	}
	scope := Scope{Excluded: map[string]bool{}}
	for _, n := range o.Excluded {
		scope.Excluded[n] = true
	}
	if !o.AllNamespaces {
		scope.Namespace = o.Namespace
	}
	nsOf, err := readNamespaces(ctx, c, scope.Namespace)
	if err != nil {
		return fail(err)
	}
	items, err := Scan(ctx, c, set, nsOf, scope)
	if err != nil {
		return fail(err)
	}
	if set.Len() == 0 {
		fmt.Fprintln(o.Stderr, "note: the cluster has no LifecyclePolicies: nothing is mutated or validated")
	}
	objs := Objects(items)
	if err := check.WriteTable(o.Stdout, objs, set.Len()); err != nil {
		return fail(err)
	}
	if (&check.Result{Objects: objs}).Denied() {
		return check.ExitDenied
	}
	return check.ExitPass
}

// readNamespaces returns the labels of the namespaces in scope: one Get for
// a single namespace (a user may not list namespaces), else one List.
func readNamespaces(ctx context.Context, c client.Reader, only string) (Namespaces, error) {
	labels := map[string]map[string]string{}
	if only != "" {
		var ns corev1.Namespace
		if err := c.Get(ctx, client.ObjectKey{Name: only}, &ns); err != nil {
			return nil, fmt.Errorf("reading namespace %q: %w", only, err)
		}
		labels[ns.Name] = ns.Labels
	} else {
		var list corev1.NamespaceList
		if err := c.List(ctx, &list); err != nil {
			return nil, fmt.Errorf("listing namespaces: %w", err)
		}
		for _, ns := range list.Items {
			labels[ns.Name] = ns.Labels
		}
	}
	return func(name string) policies.Namespace { return policies.Namespace{Name: name, Labels: labels[name]} }, nil
}
