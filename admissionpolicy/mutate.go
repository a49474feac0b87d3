package admissionpolicy

import (
	"fmt"
	"slices"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/gracekeeper/gracekeeper/policies"
)

// mutation is the MutatingAdmissionPolicy's variables and its JSONPatch
// expression: policies/mutate.go, step by step. Only the highest selected
// policy's object patches (variables.first), so several policies selecting
// one pod make one merged change, as the engine does.
func (g *gen) mutation(common []admissionregistrationv1.Variable) ([]admissionregistrationv1.Variable, string, error) {
	// What no policy of the set asks for is left out at compile time, so
	// the API server evaluates only what can change the answer: without a
	// postStart no postStart plan, without a fitting terminationGracePeriod
	// the grace period stays (no budget to compute), without a policy that
	// hooks native sidecars no initContainers plan, without finalizers no
	// finalizer edits.
	var hasPost, hasFit, hooksSidecars, hasFin bool
	for _, e := range g.pols {
		hasPost = hasPost || e.postStart != nil
		hasFit = hasFit || (e.p.Spec.TerminationGracePeriod != nil && e.p.Spec.TerminationGracePeriod.Fit)
		hooksSidecars = hooksSidecars || (e.p.Spec.Match.IncludeSidecars && (e.preStop != nil || e.postStart != nil))
		hasFin = hasFin || len(e.p.Spec.Finalizers) > 0 || (e.p.Spec.Cleanup != nil && e.p.Spec.Cleanup.Finalizer != "")
	}
	lists := []string{"ctrs"}
	if hooksSidecars {
		lists = append(lists, "inits")
	}
	vs := slices.Clone(common)
	if hasPost {
		for _, list := range lists {
			w, err := g.winnerChain("c", list == "inits", func(e pol) bool { return e.postStart != nil })
			if err != nil {
				return nil, "", err
			}
			vs = append(vs, g.winnerVariable("postW", list, w, list == "inits"))
		}
	}
	var fit, over, pSleep, postOver, postSleep []string
	for _, e := range g.pols {
		if t := e.p.Spec.TerminationGracePeriod; t != nil {
			maxS := int64(300)
			if t.MaxSeconds != nil {
				maxS = *t.MaxSeconds
			}
			fit = append(fit, fmt.Sprintf("variables.%s ? [%t ? 1 : 0, %d] : ", sv(e.i), t.Fit, maxS))
		}
		over = append(over, fmt.Sprint(e.p.Spec.PreStop != nil && e.p.Spec.PreStop.Overwrite))
		postOver = append(postOver, fmt.Sprint(e.p.Spec.PostStart != nil && e.p.Spec.PostStart.Overwrite))
		pSleep = append(pSleep, sleepOf(e.preStop))
		postSleep = append(postSleep, sleepOf(e.postStart))
	}
	vs = append(vs,
		v("cur", "object.spec.?terminationGracePeriodSeconds.orValue(30) < 0 ? 1 : object.spec.?terminationGracePeriodSeconds.orValue(30)"),
		v("over", "["+strings.Join(over, ", ")+"]"),
		v("pSleep", "["+strings.Join(pSleep, ", ")+"]"),
	)
	if hasPost {
		vs = append(vs,
			v("postOver", "["+strings.Join(postOver, ", ")+"]"),
			v("postSleep", "["+strings.Join(postSleep, ", ")+"]"),
		)
	}
	noPre := "(!has(c.lifecycle) || !has(c.lifecycle.preStop))"
	noPost := "(!has(c.lifecycle) || !has(c.lifecycle.postStart))"
	preEq := func(p string) string {
		return g.eqChain("c.lifecycle.preStop", p, func(e pol) *corev1.LifecycleHandler { return e.preStop })
	}
	if hasFit {
		vs = append(vs,
			v("fitMax", strings.Join(fit, "")+"[0, 300]"),
			v("fit", "variables.fitMax[0] == 1"),
			v("maxSecs", "variables.fitMax[1]"),
			// A sleep the grace period can never reach is dropped before the
			// budget is computed (policies/fit.go fitGrace).
			v("reach", "variables.fit && variables.maxSecs > variables.cur ? variables.maxSecs : variables.cur"),
		)
		for _, list := range lists {
			w := g.winner["preW_"+list]
			plan := "variables.planR_" + list + "[i]"
			vs = append(vs,
				v("planR_"+list, fmt.Sprintf("variables.%s.transformList(i, c, %s >= 0 && (%s || variables.over[%s]) && variables.pSleep[%s] <= variables.reach ? %s : -1)", list, w, noPre, w, w, w)),
				v("mpre_"+list, fmt.Sprintf("variables.%s.transformList(i, c, %s >= 0 ? %s : %s ? 0 : %s)", list, plan, g.plannedSeconds(plan, w), noPre, g.hookSeconds("c.lifecycle.preStop", w))),
			)
		}
		if !hooksSidecars {
			// No policy hooks a sidecar: each keeps the preStop it has.
			budget, err := g.budgetVariables("")
			if err != nil {
				return nil, "", err
			}
			for _, b := range budget {
				if b.Name == "pre_inits" {
					vs = append(vs, b)
				}
			}
			vs = append(vs, v("mpre_inits", "variables.pre_inits"))
		}
		vs = append(vs, totalVariables("variables.mpre_ctrs", "variables.mpre_inits")...)
		vs = append(vs, v("final", "variables.fit && variables.total > variables.cur ? (variables.total < variables.maxSecs ? variables.total : variables.maxSecs > variables.cur ? variables.maxSecs : variables.cur) : variables.cur"))
		for _, list := range lists {
			plan := "variables.planR_" + list + "[i]"
			vs = append(vs, v("planF_"+list, fmt.Sprintf("variables.%s.transformList(i, c, %s >= 0 && variables.pSleep[%s] <= variables.final && (%s || !(%s)) ? %s : -1)",
				list, plan, plan, noPre, preEq(plan), plan)))
		}
	} else {
		// Without fit the grace period is the pod's own (final == cur,
		// reach == cur), so the planned and the final hook are one pass.
		vs = append(vs, v("final", "variables.cur"))
		for _, list := range lists {
			w := g.winner["preW_"+list]
			vs = append(vs, v("planF_"+list, fmt.Sprintf("variables.%s.transformList(i, c, %s >= 0 && (%s || variables.over[%s]) && variables.pSleep[%s] <= variables.cur && (%s || !(%s)) ? %s : -1)",
				list, w, noPre, w, w, noPre, preEq(w), w)))
		}
	}
	if hasPost {
		for _, list := range lists {
			pw := g.winner["postW_"+list]
			vs = append(vs, v("postF_"+list, fmt.Sprintf("variables.%s.transformList(i, c, %s >= 0 && (%s || variables.postOver[%s]) && variables.postSleep[%s] <= variables.final && (%s || !(%s)) ? %s : -1)",
				list, pw, noPost, pw, pw, noPost, g.eqChain("c.lifecycle.postStart", pw, func(e pol) *corev1.LifecycleHandler { return e.postStart }), pw)))
		}
	}
	fins, err := g.finalizerVariables(hasFin)
	if err != nil {
		return nil, "", err
	}
	vs = append(vs, fins...)

	var parts []string
	for _, k := range []struct{ list, field string }{{"ctrs", "containers"}, {"inits", "initContainers"}} {
		if !slices.Contains(lists, k.list) {
			continue
		}
		base := "/spec/" + k.field + "/"
		t := "Object.spec." + k.field + ".lifecycle"
		pre := "variables.planF_" + k.list + "[i]"
		preOp := fmt.Sprintf("(%s < 0 ? [] : [JSONPatch{op: 'add', path: %s + string(i) + '/lifecycle/preStop', value: %s}])",
			pre, str(base), g.handlerChain(pre, t+".preStop", func(e pol) *corev1.LifecycleHandler { return e.preStop }))
		if !hasPost {
			parts = append(parts, fmt.Sprintf("variables.%s.transformList(i, c, %s < 0 ? [] : "+
				"(has(c.lifecycle) ? [] : [JSONPatch{op: 'add', path: %s + string(i) + '/lifecycle', value: %s{}}]) + %s).flatten()",
				k.list, pre, str(base), t, preOp))
			continue
		}
		post := "variables.postF_" + k.list + "[i]"
		parts = append(parts, fmt.Sprintf("variables.%s.transformList(i, c, %s < 0 && %s < 0 ? [] : "+
			"(has(c.lifecycle) ? [] : [JSONPatch{op: 'add', path: %s + string(i) + '/lifecycle', value: %s{}}]) + "+
			"%s + "+
			"(%s < 0 ? [] : [JSONPatch{op: 'add', path: %s + string(i) + '/lifecycle/postStart', value: %s}])).flatten()",
			k.list, pre, post, str(base), t,
			preOp,
			post, str(base), g.handlerChain(post, t+".postStart", func(e pol) *corev1.LifecycleHandler { return e.postStart })))
	}
	if hasFit {
		parts = append(parts, "(variables.final != variables.cur ? [JSONPatch{op: 'add', path: '/spec/terminationGracePeriodSeconds', value: variables.final}] : [])")
	}
	if hasFin {
		parts = append(parts,
			"(size(variables.missing) == 0 ? [] : has(object.metadata.finalizers) ? variables.missing.map(f, JSONPatch{op: 'add', path: '/metadata/finalizers/-', value: f}) : [JSONPatch{op: 'add', path: '/metadata/finalizers', value: variables.missing}])",
			// The label goes with any gracekeeper finalizer, so the finalizer
			// controller's informer (which selects on it) sees the pod.
			fmt.Sprintf("(size(variables.wantFin) > 0 && variables.labels[?%s].orValue('') != 'true' ? (has(object.metadata.labels) ? [JSONPatch{op: 'add', path: %s, value: 'true'}] : [JSONPatch{op: 'add', path: '/metadata/labels', value: {%s: 'true'}}]) : [])",
				str(policies.LabelFinalize), str("/metadata/labels/"+pointer(policies.LabelFinalize)), str(policies.LabelFinalize)),
		)
	}
	ann := fmt.Sprintf("(has(object.metadata.annotations) ? [] : [JSONPatch{op: 'add', path: '/metadata/annotations', value: {}}])"+
		" + (variables.ann[?%s].orValue('') != variables.polAnn ? [JSONPatch{op: 'add', path: %s, value: variables.polAnn}] : [])",
		str(policies.AnnotationPolicies), str("/metadata/annotations/"+pointer(policies.AnnotationPolicies)))
	if hasFin {
		ann += fmt.Sprintf(" + (size(variables.cleanList) > 0 && variables.ann[?%s].orValue('') != variables.cleanAnn ? [JSONPatch{op: 'add', path: %s, value: variables.cleanAnn}] : [])",
			str(policies.AnnotationCleanup), str("/metadata/annotations/"+pointer(policies.AnnotationCleanup)))
	}
	parts = append(parts, ann)
	// Annotations absent means at least gracekeeper.dev/policies is added,
	// so the empty map is never left alone.
	patch := fmt.Sprintf("variables.first != %s ? [] : %s", str(g.self.p.Name), strings.Join(parts, " + "))
	return vs, patch, nil
}

// pointer escapes a JSON Pointer token (RFC 6901).
func pointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

func sleepOf(h *corev1.LifecycleHandler) string {
	if h == nil || h.Sleep == nil {
		return "-1"
	}
	return num(h.Sleep.Seconds)
}

// plannedSeconds is what the hook of policy p (a CEL int) takes when
// planned for a container whose winner is w: preStopSeconds of that
// handler, with the budgetSeconds of the first selected policy whose hook
// it equals.
func (g *gen) plannedSeconds(p, w string) string {
	var sb strings.Builder
	for _, e := range g.pols {
		if e.preStop == nil {
			continue
		}
		fmt.Fprintf(&sb, "%s == %d ? ", p, e.i)
		if e.preStop.Sleep != nil {
			fmt.Fprintf(&sb, "%d : ", e.preStop.Sleep.Seconds)
			continue
		}
		sb.WriteString("(")
		for _, o := range g.pols {
			if o.preBudget != nil && sameHandler(o.preStop, e.preStop) {
				fmt.Fprintf(&sb, "variables.%s ? %d : ", sv(o.i), *o.preBudget)
			}
		}
		if e.preStop.Exec != nil {
			if n, ok := policies.ExecSleepSeconds(e.preStop.Exec.Command); ok {
				fmt.Fprintf(&sb, "%d) : ", n)
				continue
			}
		}
		fmt.Fprintf(&sb, "%s) : ", declared(w))
	}
	sb.WriteString("0")
	return "(" + sb.String() + ")"
}

// byPolicy is a CEL choice on the policy index p (a CEL int): expr of the
// handler of each policy that has one (of), else otherwise.
func (g *gen) byPolicy(p string, of func(pol) *corev1.LifecycleHandler, expr func(*corev1.LifecycleHandler) string, otherwise string) string {
	var sb strings.Builder
	for _, e := range g.pols {
		if hd := of(e); hd != nil {
			fmt.Fprintf(&sb, "%s == %d ? %s : ", p, e.i, expr(hd))
		}
	}
	sb.WriteString(otherwise)
	return "(" + sb.String() + ")"
}

// eqChain is "hook h equals the handler of policy p".
func (g *gen) eqChain(h, p string, of func(pol) *corev1.LifecycleHandler) string {
	return g.byPolicy(p, of, func(hd *corev1.LifecycleHandler) string { return handlerEq(h, hd) }, "false")
}

// handlerChain is the handler of policy p as a typed object of type t, as
// policies.Handler builds it.
func (g *gen) handlerChain(p, t string, of func(pol) *corev1.LifecycleHandler) string {
	return g.byPolicy(p, of, func(hd *corev1.LifecycleHandler) string { return handlerLiteral(hd, t) }, t+"{}")
}

func handlerLiteral(h *corev1.LifecycleHandler, t string) string {
	switch {
	case h.Sleep != nil:
		return fmt.Sprintf("%s{sleep: %s.sleep{seconds: %d}}", t, t, h.Sleep.Seconds)
	case h.Exec != nil:
		return fmt.Sprintf("%s{exec: %s.exec{command: %s}}", t, t, strList(h.Exec.Command))
	case h.HTTPGet != nil:
		g := h.HTTPGet
		fields := []string{"path: " + str(g.Path), "scheme: " + str(string(g.Scheme))}
		if g.Port.Type == 1 {
			fields = append(fields, "port: "+str(g.Port.StrVal))
		} else {
			fields = append(fields, "port: "+num(int64(g.Port.IntVal)))
		}
		if g.Host != "" {
			fields = append(fields, "host: "+str(g.Host))
		}
		if len(g.HTTPHeaders) > 0 {
			var hs []string
			for _, hd := range g.HTTPHeaders {
				hs = append(hs, fmt.Sprintf("%s.httpGet.httpHeaders{name: %s, value: %s}", t, str(hd.Name), str(hd.Value)))
			}
			fields = append(fields, "httpHeaders: ["+strings.Join(hs, ", ")+"]")
		}
		return fmt.Sprintf("%s{httpGet: %s.httpGet{%s}}", t, t, strings.Join(fields, ", "))
	}
	return t + "{}"
}

// finalizerVariables: the finalizers the selected policies add (built-in
// and cleanup, sorted, each once), the missing ones, and the
// gracekeeper.dev/policies and gracekeeper.dev/cleanup annotations
// (policies/merge.go, policies/mutate.go edits).
func (g *gen) finalizerVariables(hasFin bool) ([]admissionregistrationv1.Variable, error) {
	by := map[string][]string{} // finalizer -> selection variables
	cleanups := map[string][]pol{}
	for _, e := range g.pols {
		for _, f := range e.p.Spec.Finalizers {
			by[string(f)] = append(by[string(f)], "variables."+sv(e.i))
		}
		if cl := e.p.Spec.Cleanup; cl != nil && cl.Finalizer != "" {
			by[cl.Finalizer] = append(by[cl.Finalizer], "variables."+sv(e.i))
			cleanups[cl.Finalizer] = append(cleanups[cl.Finalizer], e)
		}
	}
	var fins []string
	for _, f := range sortedKeysOf(by) {
		fins = append(fins, fmt.Sprintf("%s ? [%s] : []", or(by[f]), str(f)))
	}
	want := "[]"
	if len(fins) > 0 {
		want = "[" + strings.Join(fins, ", ") + "].flatten()"
	}
	var cls []string
	for _, f := range sortedKeysOf(cleanups) {
		var sb strings.Builder
		for _, e := range cleanups[f] { // merge order: the highest wins
			j, err := cleanupJSON(e.p)
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(&sb, "variables.%s ? %s : ", sv(e.i), str(j))
		}
		sb.WriteString("''")
		cls = append(cls, sb.String())
	}
	cleanList := "[]"
	if len(cls) > 0 {
		cleanList = "[" + strings.Join(cls, ", ") + "].filter(x, x != '')"
	}
	names := make([]pol, len(g.pols))
	copy(names, g.pols)
	slices.SortFunc(names, func(a, b pol) int { return strings.Compare(a.p.Name, b.p.Name) })
	var ns []string
	for _, e := range names {
		ns = append(ns, fmt.Sprintf("variables.%s ? %s : ''", sv(e.i), str(e.p.Name)))
	}
	polAnn := "[" + strings.Join(ns, ", ") + "].filter(x, x != '').join(',')"
	if len(ns) == 1 {
		polAnn = ns[0] // one name: no list to build
	}
	if !hasFin {
		return []admissionregistrationv1.Variable{v("polAnn", polAnn)}, nil
	}
	return []admissionregistrationv1.Variable{
		v("wantFin", want),
		v("missing", "variables.wantFin.filter(f, !(f in object.metadata.?finalizers.orValue([])))"),
		v("cleanList", cleanList),
		v("cleanAnn", "'[' + variables.cleanList.join(',') + ']'"),
		v("polAnn", polAnn),
	}, nil
}

func sortedKeysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
