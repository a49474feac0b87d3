package audit

import (
	"slices"
	"testing"

	"github.com/gracekeeper/gracekeeper/policies"
)

// The audit lists pods, then the kinds of the registry in policies, the one
// source of which kinds admission judges: the same kinds, each making an
// object of its own kind.
func TestKindsAreTheRegistry(t *testing.T) {
	var want []string
	for _, k := range policies.Kinds() {
		want = append(want, k.GVK.GroupVersion().String()+"/"+k.GVK.Kind)
	}
	var got []string
	for _, k := range kinds()[1:] {
		got = append(got, k.apiVersion+"/"+k.name)
		if gvk := k.obj().GetObjectKind().GroupVersionKind(); gvk.Kind != "" && gvk.Kind != k.name {
			t.Errorf("kind %s makes a %s", k.name, gvk.Kind)
		}
	}
	if kinds()[0].name != "Pod" {
		t.Errorf("the first audited kind is %s, want Pod", kinds()[0].name)
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("audited workload kinds %v, the registry's %v", got, want)
	}
}
