package policies

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

func TestSelection(t *testing.T) {
	web := metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	prodNS := metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}
	cases := map[string]struct {
		pols []v1alpha1.LifecyclePolicy
		cfg  Config
		pod  *corev1.Pod
		ns   Namespace
		want []string
	}{
		"empty selectors match every pod": {
			pols: []v1alpha1.LifecyclePolicy{pol("all", nil)},
			pod:  podWith(nil, "c"), ns: Namespace{Name: "shop"},
			want: []string{"all"},
		},
		"pod label selector matches": {
			pols: []v1alpha1.LifecyclePolicy{pol("web", func(s *v1alpha1.LifecyclePolicySpec) { s.Match.PodSelector = &web })},
			pod:  podWith(map[string]string{"app": "web", "tier": "fe"}, "c"), ns: Namespace{Name: "shop"},
			want: []string{"web"},
		},
		"pod label selector misses": {
			pols: []v1alpha1.LifecyclePolicy{pol("web", func(s *v1alpha1.LifecyclePolicySpec) { s.Match.PodSelector = &web })},
			pod:  podWith(map[string]string{"app": "db"}, "c"), ns: Namespace{Name: "shop"},
		},
		"namespace label selector matches": {
			pols: []v1alpha1.LifecyclePolicy{pol("prod", func(s *v1alpha1.LifecyclePolicySpec) { s.Match.NamespaceSelector = &prodNS })},
			pod:  podWith(nil, "c"), ns: Namespace{Name: "shop", Labels: map[string]string{"env": "prod"}},
			want: []string{"prod"},
		},
		"namespace label selector misses": {
			pols: []v1alpha1.LifecyclePolicy{pol("prod", func(s *v1alpha1.LifecyclePolicySpec) { s.Match.NamespaceSelector = &prodNS })},
			pod:  podWith(nil, "c"), ns: Namespace{Name: "shop", Labels: map[string]string{"env": "dev"}},
		},
		"namespace name via kubernetes.io/metadata.name without the label given": {
			pols: []v1alpha1.LifecyclePolicy{pol("shop", func(s *v1alpha1.LifecyclePolicySpec) {
				s.Match.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: "shop"}}
			})},
			pod: podWith(nil, "c"), ns: Namespace{Name: "shop"},
			want: []string{"shop"},
		},
		"namespace falls back to the pod's namespace": {
			pols: []v1alpha1.LifecyclePolicy{pol("shop", func(s *v1alpha1.LifecyclePolicySpec) {
				s.Match.NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: []string{"shop", "cart"}}}}
			})},
			pod:  podWith(nil, "c"),
			want: []string{"shop"},
		},
		"both selectors must match": {
			pols: []v1alpha1.LifecyclePolicy{pol("both", func(s *v1alpha1.LifecyclePolicySpec) {
				s.Match.PodSelector, s.Match.NamespaceSelector = &web, &prodNS
			})},
			pod: podWith(map[string]string{"app": "web"}, "c"), ns: Namespace{Name: "shop", Labels: map[string]string{"env": "dev"}},
		},
		"Exists expression is not indexable but still selects": {
			pols: []v1alpha1.LifecyclePolicy{pol("jobs", func(s *v1alpha1.LifecyclePolicySpec) {
				s.Match.PodSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: "batch.kubernetes.io/job-name", Operator: metav1.LabelSelectorOpExists}}}
			})},
			pod: podWith(map[string]string{"batch.kubernetes.io/job-name": "nightly"}, "c"), ns: Namespace{Name: "shop"},
			want: []string{"jobs"},
		},
		"order is priority then name": {
			pols: []v1alpha1.LifecyclePolicy{
				pol("b-low", nil),
				pol("z-high", func(s *v1alpha1.LifecyclePolicySpec) { s.Priority = 10 }),
				pol("a-low", nil),
				pol("m-web", func(s *v1alpha1.LifecyclePolicySpec) { s.Priority = 5; s.Match.PodSelector = &web }),
			},
			pod: podWith(map[string]string{"app": "web"}, "c"), ns: Namespace{Name: "shop"},
			want: []string{"z-high", "m-web", "a-low", "b-low"},
		},
		"excluded namespace is never touched": {
			pols: []v1alpha1.LifecyclePolicy{pol("all", nil)},
			cfg:  Config{ExcludedNamespaces: []string{"kube-system"}},
			pod:  podWith(nil, "c"), ns: Namespace{Name: "kube-system"},
		},
		"namespace with the ignore label is never touched": {
			pols: []v1alpha1.LifecyclePolicy{pol("all", nil)},
			cfg:  Config{IgnoreLabel: "example.com/skip"},
			pod:  podWith(nil, "c"), ns: Namespace{Name: "shop", Labels: map[string]string{"example.com/skip": "true"}},
		},
		"another label than the configured ignore label selects as usual": {
			pols: []v1alpha1.LifecyclePolicy{pol("all", nil)},
			cfg:  Config{IgnoreLabel: "example.com/skip"},
			pod:  podWith(nil, "c"), ns: Namespace{Name: "shop", Labels: map[string]string{DefaultIgnoreLabel: "true", "example.com/skip": "false"}},
			want: []string{"all"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s, fs := NewSet(tc.cfg, tc.pols)
			if len(fs) > 0 {
				t.Fatalf("NewSet: %+v", fs)
			}
			var got []string
			for _, c := range s.selectPolicies(tc.pod, tc.ns, nil) {
				got = append(got, c.name)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("selected %v, want %v", got, tc.want)
			}
			if d := s.Validate(tc.pod, tc.ns); !reflect.DeepEqual(d.Policies, tc.want) {
				t.Fatalf("Validate policies %v, want %v", d.Policies, tc.want)
			}
		})
	}
}

func TestContainerTargets(t *testing.T) {
	cases := map[string]struct {
		match   v1alpha1.Match
		name    string
		sidecar bool
		want    bool
	}{
		"absent containers means all":           {name: "web", want: true},
		"glob matches":                          {match: v1alpha1.Match{Containers: []string{"web-*"}}, name: "web-1", want: true},
		"glob misses":                           {match: v1alpha1.Match{Containers: []string{"web-*"}}, name: "db", want: false},
		"exclusion wins over inclusion":         {match: v1alpha1.Match{Containers: []string{"*"}, ExcludeContainers: []string{"istio-*"}}, name: "istio-proxy", want: false},
		"sidecar not targeted by default":       {name: "proxy", sidecar: true, want: false},
		"sidecar targeted with includeSidecars": {match: v1alpha1.Match{IncludeSidecars: true}, name: "proxy", sidecar: true, want: true},
		"sidecar still subject to exclusions":   {match: v1alpha1.Match{IncludeSidecars: true, ExcludeContainers: []string{"linkerd-proxy"}}, name: "linkerd-proxy", sidecar: true, want: false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p := pol("p", func(s *v1alpha1.LifecyclePolicySpec) { s.Match = tc.match })
			c, err := compile(&p)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.target(tc.name, tc.sidecar); got != tc.want {
				t.Fatalf("target(%q, sidecar=%v) = %v, want %v", tc.name, tc.sidecar, got, tc.want)
			}
		})
	}
}

func TestInvalidPolicies(t *testing.T) {
	cases := map[string]func(*v1alpha1.LifecyclePolicySpec){
		"bad selector operator": func(s *v1alpha1.LifecyclePolicySpec) {
			s.Match.PodSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Near"}}}
		},
		"bad namespace selector value": func(s *v1alpha1.LifecyclePolicySpec) {
			s.Match.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"a": "not a valid value!"}}
		},
		"bad container glob":        func(s *v1alpha1.LifecyclePolicySpec) { s.Match.Containers = []string{"["} },
		"bad exclusion glob":        func(s *v1alpha1.LifecyclePolicySpec) { s.Match.ExcludeContainers = []string{"a\\"} },
		"empty glob":                func(s *v1alpha1.LifecyclePolicySpec) { s.Match.Containers = []string{" "} },
		"preStop with no action":    func(s *v1alpha1.LifecyclePolicySpec) { s.PreStop = &v1alpha1.PreStopHook{} },
		"postStart with no action":  func(s *v1alpha1.LifecyclePolicySpec) { s.PostStart = &v1alpha1.PostStartHook{} },
		"unknown validation action": func(s *v1alpha1.LifecyclePolicySpec) { s.Validation = &v1alpha1.Validation{Action: "Explode"} },
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			s, fs := NewSet(Config{}, []v1alpha1.LifecyclePolicy{pol("bad", edit), pol("good", nil)})
			if s.Len() != 1 {
				t.Fatalf("Len = %d, want 1 (the bad policy left out)", s.Len())
			}
			if len(fs) != 1 || fs[0].Reason != ReasonInvalidPolicy || fs[0].Policy != "bad" || fs[0].Message == "" {
				t.Fatalf("findings %+v, want one InvalidPolicy for \"bad\"", fs)
			}
			if d := s.Review(podWith(nil, "c"), Namespace{Name: "shop"}); !reflect.DeepEqual(d.Policies, []string{"good"}) {
				t.Fatalf("policies %v, want [good]", d.Policies)
			}
		})
	}
	t.Run("duplicate names keep the first", func(t *testing.T) {
		s, fs := NewSet(Config{}, []v1alpha1.LifecyclePolicy{pol("x", nil), pol("x", nil)})
		if s.Len() != 1 || len(fs) != 1 || fs[0].Reason != ReasonInvalidPolicy {
			t.Fatalf("Len %d findings %+v", s.Len(), fs)
		}
	})
}

func TestOptOut(t *testing.T) {
	cases := map[string]struct {
		allow    bool
		value    string
		wantPols []string
		want     []Reason
	}{
		"allowed and true":     {allow: true, value: "true", want: []Reason{ReasonOptedOut}},
		"allowed and false":    {allow: true, value: "false", wantPols: []string{"p"}, want: []Reason{}},
		"not allowed and true": {value: "true", wantPols: []string{"p"}, want: []Reason{ReasonOptOutNotAllowed}},
		"unparsable value":     {allow: true, value: "yes please", wantPols: []string{"p"}, want: []Reason{ReasonBadAnnotation}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s := mustSet(t, pol("p", func(s *v1alpha1.LifecyclePolicySpec) { s.AllowOptOut = tc.allow; s.PreStop = sleepPreStop(1) }))
			pod := podWith(nil, "c")
			pod.Annotations = map[string]string{AnnotationSkip: tc.value}
			d := s.Validate(pod, Namespace{Name: "shop"})
			if !reflect.DeepEqual(d.Policies, tc.wantPols) || !reflect.DeepEqual(reasons(d.Findings), tc.want) {
				t.Fatalf("policies %v findings %+v; want %v %v", d.Policies, d.Findings, tc.wantPols, tc.want)
			}
			for _, f := range d.Findings {
				if f.Reason != ReasonBadAnnotation && f.Action != v1alpha1.ActionAudit {
					t.Errorf("%s has action %s, want Audit", f.Reason, f.Action)
				}
			}
			m := s.Mutate(pod, Namespace{Name: "shop"})
			if m.Changed != (len(tc.wantPols) > 0) || len(m.Findings) != 0 {
				t.Fatalf("Mutate changed=%v findings=%+v", m.Changed, m.Findings)
			}
		})
	}
}

// TestIndexNarrowsCandidates checks that selection with many indexable
// policies looks only at those filed under the pod's labels.
func TestIndexNarrowsCandidates(t *testing.T) {
	s := benchSet(t, 1000)
	pod := benchPod()
	cand := 0
	for k, v := range pod.Labels {
		cand += len(s.ix.pod[kv{k, v}])
	}
	cand += len(s.ix.always)
	if cand != 1 {
		t.Fatalf("%d candidate policies for one matching pod out of 1000, want 1", cand)
	}
	if got := s.selectPolicies(pod, Namespace{Name: "shop"}, nil); len(got) != 1 || got[0].name != "svc-0000" {
		t.Fatalf("selected %d policies", len(got))
	}
}

// TestNoMatchAllocatesNothing: the common path (no policy applies) must not
// allocate, whatever the number of policies.
func TestNoMatchAllocatesNothing(t *testing.T) {
	s := benchSet(t, 1000)
	pod := benchPod()
	pod.Labels = map[string]string{"app": "nobody", "tier": "x"}
	ns := Namespace{Name: "shop", Labels: map[string]string{"env": "prod"}}
	if n := testing.AllocsPerRun(100, func() { s.Mutate(pod, ns) }); n != 0 {
		t.Fatalf("Mutate with no match: %v allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { s.Validate(pod, ns) }); n != 0 {
		t.Fatalf("Validate with no match: %v allocations, want 0", n)
	}
}

func TestSelectsIn(t *testing.T) {
	team := func(name string, sel map[string]string) v1alpha1.LifecyclePolicy {
		p := v1alpha1.LifecyclePolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if sel != nil {
			p.Spec.Match.NamespaceSelector = &metav1.LabelSelector{MatchLabels: sel}
		}
		return p
	}
	cfg := Config{ExcludedNamespaces: []string{"kube-system"}, IgnoreLabel: DefaultIgnoreLabel}
	for desc, tc := range map[string]struct {
		pols []v1alpha1.LifecyclePolicy
		ns   Namespace
		want bool
	}{
		"no policy":                          {nil, Namespace{Name: "a"}, false},
		"a policy for every namespace":       {[]v1alpha1.LifecyclePolicy{team("all", nil)}, Namespace{Name: "a"}, true},
		"excluded namespace":                 {[]v1alpha1.LifecyclePolicy{team("all", nil)}, Namespace{Name: "kube-system"}, false},
		"ignore label":                       {[]v1alpha1.LifecyclePolicy{team("all", nil)}, Namespace{Name: "a", Labels: map[string]string{DefaultIgnoreLabel: "true"}}, false},
		"selector matches":                   {[]v1alpha1.LifecyclePolicy{team("t", map[string]string{"team": "x"})}, Namespace{Name: "a", Labels: map[string]string{"team": "x"}}, true},
		"selector does not match":            {[]v1alpha1.LifecyclePolicy{team("t", map[string]string{"team": "x"})}, Namespace{Name: "a", Labels: map[string]string{"team": "y"}}, false},
		"selector on the name label matches": {[]v1alpha1.LifecyclePolicy{team("t", map[string]string{"kubernetes.io/metadata.name": "a"})}, Namespace{Name: "a"}, true},
		"one of two matches":                 {[]v1alpha1.LifecyclePolicy{team("t", map[string]string{"team": "x"}), team("u", map[string]string{"team": "y"})}, Namespace{Name: "a", Labels: map[string]string{"team": "y"}}, true},
	} {
		t.Run(desc, func(t *testing.T) {
			s, _ := NewSet(cfg, tc.pols)
			if got := s.SelectsIn(tc.ns); got != tc.want {
				t.Errorf("SelectsIn(%+v) = %v, want %v", tc.ns, got, tc.want)
			}
		})
	}
}
