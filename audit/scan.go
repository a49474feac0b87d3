package audit

import (
	"context"
	"fmt"
	"sort"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gracekeeper/gracekeeper/check"
	"github.com/gracekeeper/gracekeeper/policies"
)

// Item is one judged object: what check reports of it, plus what a policy
// report needs to point at it.
type Item struct {
	check.Object
	APIVersion string
	UID        types.UID
}

// Namespaces tells the scan what selection knows of a namespace (its labels).
type Namespaces func(name string) policies.Namespace

// Scope narrows a scan.
type Scope struct {
	// Namespace is the one namespace to scan; "" scans all.
	Namespace string
	// Excluded namespaces are not scanned at all (admission never sees them).
	Excluded map[string]bool
}

// Scan lists the pods and workloads in scope from r (a live client or an
// informer cache) and judges each against set. Items are ordered by
// namespace, then kind (pods first), then name. Pods already being deleted
// are left out: they will not be admitted again.
func Scan(ctx context.Context, r client.Reader, set *policies.Set, nsOf Namespaces, scope Scope) ([]Item, error) {
	var out []Item
	// The engine never modifies what it judges (policies.Decision), so the
	// informer cache's objects are read in place: a deep copy of every pod
	// per pass would be the pass's largest allocation.
	opts := []client.ListOption{client.UnsafeDisableDeepCopy}
	if scope.Namespace != "" {
		opts = append(opts, client.InNamespace(scope.Namespace))
	}
	for _, k := range kinds() {
		list := k.list()
		if err := r.List(ctx, list, opts...); err != nil {
			return nil, fmt.Errorf("listing %ss: %w", k.name, err)
		}
		objs, err := meta.ExtractList(list)
		if err != nil {
			return nil, err
		}
		for _, ro := range objs {
			obj, ok := ro.(client.Object)
			if !ok || obj.GetDeletionTimestamp() != nil || scope.Excluded[obj.GetNamespace()] {
				continue
			}
			o, ok := check.ReviewLive(set, obj, k.name, nsOf(obj.GetNamespace()), "namespace "+obj.GetNamespace())
			if !ok {
				continue
			}
			out = append(out, Item{Object: o, APIVersion: k.apiVersion, UID: obj.GetUID()})
		}
	}
	order := map[string]int{}
	for i, k := range kinds() {
		order[k.name] = i
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Kind != b.Kind {
			return order[a.Kind] < order[b.Kind]
		}
		return a.Name < b.Name
	})
	return out, nil
}

// Objects is the check view of items, for check.WriteTable.
func Objects(items []Item) []check.Object {
	out := make([]check.Object, len(items))
	for i, it := range items {
		out[i] = it.Object
	}
	return out
}
