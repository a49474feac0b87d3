package admissionpolicy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// Config is what every compiled object shares: the same exclusions as the
// webhook configurations and the engine.
type Config struct {
	// ExcludedNamespaces are never selected (gracekeeper's own included).
	ExcludedNamespaces []string
	// IgnoreLabel: namespaces with this label set to "true" are never selected.
	IgnoreLabel string
	// Mutate compiles the MutatingAdmissionPolicy too (apiserver mode).
	Mutate bool
}

// Objects are what one policy compiles to. MAP and MAPBinding are nil
// unless Config.Mutate.
type Objects struct {
	VAP        *admissionregistrationv1.ValidatingAdmissionPolicy
	VAPBinding *admissionregistrationv1.ValidatingAdmissionPolicyBinding
	MAP        *admissionregistrationv1.MutatingAdmissionPolicy
	MAPBinding *admissionregistrationv1.MutatingAdmissionPolicyBinding
}

// LabelCompiled marks every object gracekeeper compiles, so that orphans
// (a policy gone while gracekeeper was down, a mode switched back to
// webhook) are found and removed.
const (
	LabelCompiled = "gracekeeper.dev/compiled"
	// AnnotationPolicy names the policy an object was compiled from (a
	// policy name may be longer than a label value may).
	AnnotationPolicy = "gracekeeper.dev/policy"
)

// Name is the name of the objects compiled from the policy: "gracekeeper-"
// and the policy's name, or its hash where that would exceed the 253
// characters of an object name.
func Name(policy string) string {
	n := "gracekeeper-" + policy
	if len(n) <= 253 {
		return n
	}
	h := sha256.Sum256([]byte(policy))
	return "gracekeeper-" + policy[:200] + "-" + hex.EncodeToString(h[:8])
}

// pol is one policy of the set, in merge order (policies/merge.go: priority
// descending, then name): index i is its variable variables.s<i>.
type pol struct {
	i                  int
	p                  *v1alpha1.LifecyclePolicy
	preStop, postStart *corev1.LifecycleHandler
	preBudget          *int64
}

// gen builds the CEL of one policy over the whole set: which policies
// select a pod, and so what the merged policies ask, depends on all of
// them, as in the engine (policies.Set).
type gen struct {
	pols []pol
	self *pol
	cfg  Config
	// winner is the CEL of the winning policy's index for container i of a
	// list, by hook and list ("preW_ctrs"): a list variable indexed by i,
	// or one scalar where no policy tests the container's name.
	winner map[string]string
}

// winnerVariable is the variable name holding the winners w (the CEL of
// winnerChain over container c) for a list: when w does not read c
// (no policy of the set narrows its containers) every regular container
// has the same winner, so one scalar replaces a pass over the list.
func (g *gen) winnerVariable(name, list, w string, sidecar bool) admissionregistrationv1.Variable {
	if g.winner == nil {
		g.winner = map[string]string{}
	}
	if !sidecar && !strings.Contains(w, "c.") {
		g.winner[name+"_"+list] = "variables." + name + "1_" + list
		return v(name+"1_"+list, w)
	}
	g.winner[name+"_"+list] = "variables." + name + "_" + list + "[i]"
	expr := fmt.Sprintf("variables.%s.map(c, %s)", list, w)
	if sidecar {
		expr = fmt.Sprintf("variables.%s.map(c, c.?restartPolicy.orValue('') == 'Always' ? %s : -1)", list, w)
	}
	return v(name+"_"+list, expr)
}

// Compile compiles policy p, one of the set all (which it is in, or is
// added to), into a ValidatingAdmissionPolicy and its binding and, with
// cfg.Mutate, a MutatingAdmissionPolicy and its binding, owned by p. The
// objects of each policy carry the whole set's selection, so that where
// several policies select a pod exactly one of them acts, with the merged
// values the engine computes: the validation of the policy whose action
// decides (the highest that sets validation.action, else the highest
// selected), the mutation of the highest selected policy. A policy the
// engine refuses (policies.ValidatePolicy) is an error.
func Compile(p *v1alpha1.LifecyclePolicy, all []v1alpha1.LifecyclePolicy, cfg Config) (Objects, error) {
	if errs := policies.ValidatePolicy(p); len(errs) > 0 {
		return Objects{}, errs.ToAggregate()
	}
	g := &gen{cfg: cfg}
	var set []*v1alpha1.LifecyclePolicy
	seen := map[string]bool{}
	for i := range all {
		q := &all[i]
		if q.Name == p.Name || seen[q.Name] || len(policies.ValidatePolicy(q)) > 0 {
			continue // the engine leaves out invalid policies and second copies
		}
		seen[q.Name] = true
		set = append(set, q)
	}
	set = append(set, p)
	slices.SortFunc(set, func(a, b *v1alpha1.LifecyclePolicy) int {
		if a.Spec.Priority != b.Spec.Priority {
			if a.Spec.Priority > b.Spec.Priority {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	for i, q := range set {
		e := pol{i: i, p: q}
		if h := q.Spec.PreStop; h != nil {
			e.preStop = policies.Handler(h.HookAction)
			switch {
			case h.Exec != nil:
				e.preBudget = h.Exec.BudgetSeconds
			case h.HTTPGet != nil:
				e.preBudget = h.HTTPGet.BudgetSeconds
			}
		}
		if h := q.Spec.PostStart; h != nil {
			e.postStart = policies.Handler(h.HookAction)
		}
		g.pols = append(g.pols, e)
	}
	for i := range g.pols {
		if g.pols[i].p == p {
			g.self = &g.pols[i]
		}
	}
	return g.objects()
}

func (g *gen) objects() (Objects, error) {
	name := Name(g.self.p.Name)
	vars, err := g.commonVariables()
	if err != nil {
		return Objects{}, err
	}
	nsSel, podSel := g.bindingSelectors()
	meta := func() metav1.ObjectMeta {
		return metav1.ObjectMeta{
			Name:        name,
			Labels:      map[string]string{LabelCompiled: "true"},
			Annotations: map[string]string{AnnotationPolicy: g.self.p.Name},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: v1alpha1.GroupVersion.String(), Kind: "LifecyclePolicy",
				Name: g.self.p.Name, UID: g.self.p.UID, Controller: ptr(true),
			}},
		}
	}
	match := &admissionregistrationv1.MatchResources{
		ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
			Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"},
				Resources: []string{"pods"}, Scope: ptr(admissionregistrationv1.NamespacedScope)},
		}}},
		MatchPolicy: ptr(admissionregistrationv1.Equivalent),
		// The API server's defaults, written out so that the reconciler
		// finds the stored object equal to the compiled one and does not
		// update it on every reconcile.
		NamespaceSelector: &metav1.LabelSelector{},
		ObjectSelector:    &metav1.LabelSelector{},
	}
	conds := []admissionregistrationv1.MatchCondition{{
		// A mirror pod is the API server's copy of a static pod: left
		// alone (pkg/kubelet/pod/mirror_client.go), as by the engine.
		Name:       "not-a-mirror-pod",
		Expression: fmt.Sprintf("!(%s in object.metadata.?annotations.orValue({}))", str(corev1.MirrorPodAnnotationKey)),
	}}
	bindingMatch := &admissionregistrationv1.MatchResources{NamespaceSelector: nsSel, ObjectSelector: podSel, MatchPolicy: ptr(admissionregistrationv1.Equivalent)}

	budget, err := g.budgetVariables("")
	if err != nil {
		return Objects{}, err
	}
	vvars := append(slices.Clone(vars), budget...)
	vvars = append(vvars, g.messageVariables()...)
	action := v1alpha1.ActionDeny
	if v := g.self.p.Spec.Validation; v != nil && v.Action != "" {
		action = v.Action
	}
	check := fmt.Sprintf("variables.actionFrom != %s || variables.total <= variables.grace", str(g.self.p.Name))
	message := "variables.message"
	vvars = inlineVariables(vvars, &check, &message)
	o := Objects{
		VAP: &admissionregistrationv1.ValidatingAdmissionPolicy{
			ObjectMeta: meta(),
			Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
				MatchConstraints: match.DeepCopy(),
				MatchConditions:  conds,
				Variables:        vvars,
				// An evaluation error must not let a pod past a Deny
				// policy; the inputs are bounded by the pod's size.
				FailurePolicy: ptr(admissionregistrationv1.Fail),
				Validations: []admissionregistrationv1.Validation{{
					Expression:        check,
					MessageExpression: message,
					Reason:            ptr(metav1.StatusReasonForbidden),
				}},
			},
		},
		VAPBinding: &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
			ObjectMeta: meta(),
			Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
				PolicyName:        name,
				ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.ValidationAction(action)},
				MatchResources:    bindingMatch.DeepCopy(),
			},
		},
	}
	if !g.cfg.Mutate {
		return o, nil
	}
	mvars, patch, err := g.mutation(vars)
	if err != nil {
		return Objects{}, err
	}
	mvars = inlineVariables(mvars, &patch)
	o.MAP = &admissionregistrationv1.MutatingAdmissionPolicy{
		ObjectMeta: meta(),
		Spec: admissionregistrationv1.MutatingAdmissionPolicySpec{
			MatchConstraints: match.DeepCopy(),
			MatchConditions:  conds,
			Variables:        mvars,
			Mutations: []admissionregistrationv1.Mutation{{
				PatchType: admissionregistrationv1.PatchTypeJSONPatch,
				JSONPatch: &admissionregistrationv1.JSONPatch{Expression: patch},
			}},
			// As the mutating webhook's default: a pod is better created
			// without hooks than not at all.
			FailurePolicy: ptr(admissionregistrationv1.Ignore),
			// Another mutation that adds a container after ours gets it
			// hooked too; the patch is empty on a second pass.
			ReinvocationPolicy: admissionregistrationv1.IfNeededReinvocationPolicy,
		},
	}
	o.MAPBinding = &admissionregistrationv1.MutatingAdmissionPolicyBinding{
		ObjectMeta: meta(),
		Spec: admissionregistrationv1.MutatingAdmissionPolicyBindingSpec{
			PolicyName:     name,
			MatchResources: bindingMatch.DeepCopy(),
		},
	}
	return o, nil
}

// bindingSelectors are the binding's selectors: the policy's own, with the
// excluded namespaces and the ignore label, so the API server leaves those
// pods out before any CEL runs (the webhook configurations' namespaceSelector).
func (g *gen) bindingSelectors() (*metav1.LabelSelector, *metav1.LabelSelector) {
	ns := &metav1.LabelSelector{}
	if s := g.self.p.Spec.Match.NamespaceSelector; s != nil {
		ns = s.DeepCopy()
	}
	if len(g.cfg.ExcludedNamespaces) > 0 {
		ns.MatchExpressions = append(ns.MatchExpressions, metav1.LabelSelectorRequirement{
			Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: slices.Clone(g.cfg.ExcludedNamespaces)})
	}
	if g.cfg.IgnoreLabel != "" {
		ns.MatchExpressions = append(ns.MatchExpressions, metav1.LabelSelectorRequirement{
			Key: g.cfg.IgnoreLabel, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"true"}})
	}
	pod := &metav1.LabelSelector{}
	if s := g.self.p.Spec.Match.PodSelector; s != nil {
		pod = s.DeepCopy()
	}
	return ns, pod
}

func v(name, expr string) admissionregistrationv1.Variable {
	return admissionregistrationv1.Variable{Name: name, Expression: expr}
}

// numRe is what strconv.ParseInt accepts and policies' seconds() keeps
// (0..86400), written so that int() on it cannot overflow.
const numRe = `^[+-]?0*[0-9]{1,6}$`

// secondsOf is the CEL of policies' seconds(): the annotation or argument
// s as a whole number 0..86400, else -1.
func secondsOf(s string) string {
	return fmt.Sprintf("(%s.matches(%s) && int(%s) >= 0 && int(%s) <= %d ? int(%s) : -1)", s, str(numRe), s, s, policies.MaxSeconds, s)
}

// commonVariables are shared by the validating and mutating policies:
// selection of every policy of the set, and the merged values validation
// and the budget read.
func (g *gen) commonVariables() ([]admissionregistrationv1.Variable, error) {
	vs := []admissionregistrationv1.Variable{
		v("labels", "object.metadata.?labels.orValue({})"),
		v("nsLabels", "namespaceObject.metadata.?labels.orValue({})"),
		v("ann", "object.metadata.?annotations.orValue({})"),
		// strconv.ParseBool's true values (policies/select.go applicable).
		v("skip", fmt.Sprintf("variables.ann[?%s].orValue('') in ['1', 't', 'T', 'TRUE', 'true', 'True']", str(policies.AnnotationSkip))),
	}
	for _, e := range g.pols {
		nsSel, err := selectorCEL(e.p.Spec.Match.NamespaceSelector, "variables.nsLabels")
		if err != nil {
			return nil, fmt.Errorf("policy %q: spec.match.namespaceSelector: %w", e.p.Name, err)
		}
		podSel, err := selectorCEL(e.p.Spec.Match.PodSelector, "variables.labels")
		if err != nil {
			return nil, fmt.Errorf("policy %q: spec.match.podSelector: %w", e.p.Name, err)
		}
		sel := nsSel + " && " + podSel
		if e.p.Spec.AllowOptOut {
			sel += " && !variables.skip"
		}
		vs = append(vs, v(sv(e.i), sel))
	}
	var notLower, shutdown, action []string
	first := ""
	for _, e := range g.pols {
		if !e.p.Spec.AllowLowerBudget {
			notLower = append(notLower, "variables."+sv(e.i))
		}
		if s := e.p.Spec.ShutdownSeconds; s != nil {
			shutdown = append(shutdown, fmt.Sprintf("variables.%s ? %d : ", sv(e.i), *s))
		}
		if a := e.p.Spec.Validation; a != nil && a.Action != "" {
			action = append(action, fmt.Sprintf("variables.%s ? %s : ", sv(e.i), str(e.p.Name)))
		}
		first += fmt.Sprintf("variables.%s ? %s : ", sv(e.i), str(e.p.Name))
	}
	vs = append(vs,
		v("lowerOK", "!"+or(notLower)),
		v("polShutdown", strings.Join(shutdown, "")+"0"),
		v("annShutdown", fmt.Sprintf("%s in variables.ann ? %s : -1", str(policies.AnnotationShutdownSeconds), secondsOf("variables.ann["+str(policies.AnnotationShutdownSeconds)+"]"))),
		v("shutdown", "variables.annShutdown >= 0 && (variables.annShutdown >= variables.polShutdown || variables.lowerOK) ? variables.annShutdown : variables.polShutdown"),
		v("annPre", fmt.Sprintf("%s in variables.ann ? %s : -1", str(policies.AnnotationPreStopSeconds), secondsOf("variables.ann["+str(policies.AnnotationPreStopSeconds)+"]"))),
		// The highest selected policy (merge order), and the one whose
		// validation action decides (policies/merge.go).
		v("first", first+"''"),
		v("actionFrom", strings.Join(action, "")+"variables.first"),
		v("ctrs", "object.spec.containers"),
		v("inits", "object.spec.?initContainers.orValue([])"),
		v("sideIdx", "lists.range(size(variables.inits)).filter(i, variables.inits[i].?restartPolicy.orValue('') == 'Always')"),
		// floors[j]: the preStop seconds policy j's own hook takes (sleep
		// or budgetSeconds), -1 for none: the least a prestop-seconds
		// annotation may declare without allowLowerBudget.
		v("floors", g.floors()),
	)
	for _, k := range []struct {
		list    string
		sidecar bool
	}{{"ctrs", false}, {"inits", true}} {
		w, err := g.winnerChain("c", k.sidecar, func(e pol) bool { return e.preStop != nil })
		if err != nil {
			return nil, err
		}
		vs = append(vs, g.winnerVariable("preW", k.list, w, k.sidecar))
	}
	return vs, nil
}

func sv(i int) string { return fmt.Sprintf("s%d", i) }

func (g *gen) floors() string {
	fs := make([]string, len(g.pols))
	for _, e := range g.pols {
		fs[e.i] = "-1"
		switch {
		case e.preStop == nil:
		case e.preStop.Sleep != nil:
			fs[e.i] = num(e.preStop.Sleep.Seconds)
		case e.preBudget != nil:
			fs[e.i] = num(*e.preBudget)
		}
	}
	return "[" + strings.Join(fs, ", ") + "]"
}

// winnerChain is the index of the highest selected policy that has the
// hook (has) and targets container c (a regular container, or a native
// sidecar), -1 for none (policies/merge.go preStopFor).
func (g *gen) winnerChain(c string, sidecar bool, has func(pol) bool) (string, error) {
	var sb strings.Builder
	for _, e := range g.pols {
		if !has(e) || (sidecar && !e.p.Spec.Match.IncludeSidecars) {
			continue
		}
		t, err := g.targetCEL(e, c+".name")
		if err != nil {
			return "", err
		}
		if t == "true" {
			fmt.Fprintf(&sb, "variables.%s ? %d : ", sv(e.i), e.i)
		} else {
			fmt.Fprintf(&sb, "variables.%s && %s ? %d : ", sv(e.i), t, e.i)
		}
	}
	sb.WriteString("-1")
	return "(" + sb.String() + ")", nil
}

// targetCEL is policies' selectsContainer: not excluded, and included
// (all by default).
func (g *gen) targetCEL(e pol, name string) (string, error) {
	m := e.p.Spec.Match
	ex, err := globsCEL(m.ExcludeContainers, name)
	if err != nil {
		return "", err
	}
	inc := "true"
	if len(m.Containers) > 0 && !slices.Contains(m.Containers, "*") {
		if inc, err = globsCEL(m.Containers, name); err != nil {
			return "", err
		}
	}
	switch {
	case ex == "false" && inc == "true":
		return "true", nil // every container: nothing to evaluate
	case ex == "false":
		return inc, nil
	}
	return fmt.Sprintf("(!%s && %s)", ex, inc), nil
}

// handlerEq is "hook h equals handler want" as equality.Semantic judges
// it on the fields the API server keeps (policies/budget.go preStopSeconds).
func handlerEq(h string, want *corev1.LifecycleHandler) string {
	var es []string
	switch {
	case want.Sleep != nil:
		es = append(es, "has("+h+".sleep)", fmt.Sprintf("%s.sleep.seconds == %d", h, want.Sleep.Seconds), "!has("+h+".exec)", "!has("+h+".httpGet)")
	case want.Exec != nil:
		es = append(es, "has("+h+".exec)", fmt.Sprintf("%s.exec.?command.orValue([]) == %s", h, strList(want.Exec.Command)), "!has("+h+".sleep)", "!has("+h+".httpGet)")
	case want.HTTPGet != nil:
		w := want.HTTPGet
		port := num(int64(w.Port.IntVal))
		if w.Port.StrVal != "" || w.Port.Type == 1 {
			port = str(w.Port.StrVal)
		}
		es = append(es, "has("+h+".httpGet)", "!has("+h+".sleep)", "!has("+h+".exec)",
			fmt.Sprintf("%s.httpGet.?path.orValue('') == %s", h, str(w.Path)),
			fmt.Sprintf("%s.httpGet.port == %s", h, port),
			fmt.Sprintf("%s.httpGet.?host.orValue('') == %s", h, str(w.Host)),
			fmt.Sprintf("%s.httpGet.?scheme.orValue('') == %s", h, str(string(w.Scheme))),
			fmt.Sprintf("size(%s.httpGet.?httpHeaders.orValue([])) == %d", h, len(w.HTTPHeaders)))
		for i, hd := range w.HTTPHeaders {
			es = append(es, fmt.Sprintf("%s.httpGet.httpHeaders[%d].name == %s && %s.httpGet.httpHeaders[%d].value == %s", h, i, str(hd.Name), h, i, str(hd.Value)))
		}
	}
	es = append(es, "!has("+h+".tcpSocket)")
	return and(es)
}

// execSleepCEL is policies.ExecSleepSeconds over the command list cmd:
// the seconds, or -1. strings.Fields splits on unicode.IsSpace, the White_Space
// property: \p{Z} and the ASCII controls \t\n\v\f\r plus U+0085.
func execSleepCEL(cmd string) string {
	const ws = `[\t\n\v\f\r\x{85}\p{Z}]`
	shell := fmt.Sprintf(`^%s*sleep%s+[+-]?0*[0-9]{1,6}%s*$`, ws, ws, ws)
	arg := cmd + "[2].find('[+-]?[0-9]+')"
	return fmt.Sprintf("(size(%s) == 2 && %s[0] in %s ? %s : size(%s) == 3 && %s[0] in %s && %s[1] == '-c' && %s[2].matches(%s) ? %s : -1)",
		cmd, cmd, strList(SleepCommands()), secondsOf(cmd+"[1]"),
		cmd, cmd, strList(Shells()), cmd, cmd, str(shell), secondsOf(arg))
}

// Shells and SleepCommands are the interpreters and sleep commands the
// budget recognises (policies.IsShell, policies.IsSleep; a test holds them equal).
func Shells() []string {
	return []string{"sh", "/bin/sh", "/usr/bin/sh", "bash", "/bin/bash", "/usr/bin/bash", "ash", "/bin/ash", "dash", "/bin/dash"}
}
func SleepCommands() []string { return []string{"sleep", "/bin/sleep", "/usr/bin/sleep"} }

// hookSeconds is policies' preStopSeconds over the CEL hook h (a
// LifecycleHandler that exists) of a container whose winning policy is
// the CEL int w: a sleep; the budgetSeconds of a selected policy whose
// hook it is; a recognised `sleep N` exec; the declared
// prestop-seconds (never below the winner's floor unless lowering is
// allowed); else 0.
func (g *gen) hookSeconds(h, w string) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "(has(%s.sleep) ? %s.sleep.seconds : ", h, h)
	for _, e := range g.pols {
		if e.preBudget != nil {
			fmt.Fprintf(&sb, "variables.%s && %s ? %d : ", sv(e.i), handlerEq(h, e.preStop), *e.preBudget)
		}
	}
	fmt.Fprintf(&sb, "has(%s.exec) && %s >= 0 ? %s : ", h, execSleepCEL(h+".exec.?command.orValue([])"), execSleepCEL(h+".exec.?command.orValue([])"))
	fmt.Fprintf(&sb, "%s)", declared(w))
	return sb.String()
}

// declared is policies' declaredFor: the prestop-seconds annotation where
// valid, raised to the winner's floor unless lowering is allowed; else 0.
func declared(w string) string {
	floor := fmt.Sprintf("(%s >= 0 ? variables.floors[%s] : -1)", w, w)
	return fmt.Sprintf("(variables.annPre < 0 ? 0 : %s >= 0 && variables.annPre < %s && !variables.lowerOK ? %s : variables.annPre)", floor, floor, floor)
}

// budgetVariables compute the pod's shutdown budget (policies/budget.go)
// from the preStop seconds of each container: pre_ctrs and pre_inits,
// each -1 where the container takes no part. prefix names a variant (the
// mutating policy computes it for the hooks it plans).
func (g *gen) budgetVariables(prefix string) ([]admissionregistrationv1.Variable, error) {
	pre := func(list string) string {
		return fmt.Sprintf("variables.%s.transformList(i, c, !has(c.lifecycle) || !has(c.lifecycle.preStop) ? 0 : %s)",
			list, g.hookSeconds("c.lifecycle.preStop", g.winner["preW_"+list]))
	}
	return []admissionregistrationv1.Variable{
		v("pre_ctrs", pre("ctrs")),
		v("pre_inits", pre("inits")),
		v("grace", "object.spec.?terminationGracePeriodSeconds.orValue(30) < 0 ? 1 : object.spec.?terminationGracePeriodSeconds.orValue(30)"),
	}, nil
}

// totalVariables: regular containers stop together (t0 = the largest
// preStop + shutdown); native sidecars then stop last first, T = max(T,
// preStop(s)) + shutdown, whose closed form for the sidecar at spec
// position k of n is ends[k] = max(t0 + (n-k)·d, max over k' >= k of
// preStop(k') + (k'-k+1)·d); the total is ends[0].
func totalVariables(preCtrs, preInits string) []admissionregistrationv1.Variable {
	return []admissionregistrationv1.Variable{
		v("need", fmt.Sprintf("%s.map(p, p + variables.shutdown)", preCtrs)),
		// max(p + d) == max(p) + d: one pass fewer than over need.
		v("t0", fmt.Sprintf("size(%s) == 0 ? 0 : %s.max() + variables.shutdown", preCtrs, preCtrs)),
		v("sp", fmt.Sprintf("variables.sideIdx.map(i, %s[i])", preInits)),
		v("ends", "lists.range(size(variables.sp)).map(k, [variables.t0 + (size(variables.sp) - k) * variables.shutdown, lists.range(size(variables.sp) - k).map(m, variables.sp[k + m] + (m + 1) * variables.shutdown).max()].max())"),
		// A pod without initContainers has no sidecar: no pass over them.
		v("total", "size(variables.inits) == 0 || size(variables.sp) == 0 ? variables.t0 : variables.ends[0]"),
	}
}

// messageVariables word the BudgetExceeded finding exactly as
// policies/validate.go does.
func (g *gen) messageVariables() []admissionregistrationv1.Variable {
	vs := totalVariables("variables.pre_ctrs", "variables.pre_inits")
	q := func(s string) string { return `'"' + ` + s + ` + '"'` }
	vs = append(vs,
		v("w", "variables.need.indexOf(variables.t0)"),
		v("widest", q("variables.ctrs[variables.w].name")+" + ': preStop ' + string(variables.pre_ctrs[variables.w]) + 's + shutdown ' + string(variables.shutdown) + 's'"),
		v("steps", "lists.range(size(variables.sp)).map(j, size(variables.sp) - 1 - j).map(k, "+
			q("variables.inits[variables.sideIdx[k]].name")+" + ' max(' + string(k == size(variables.sp) - 1 ? variables.t0 : variables.ends[k + 1]) + 's, preStop ' + string(variables.sp[k]) + 's) + shutdown ' + string(variables.shutdown) + 's = ' + string(variables.ends[k]) + 's').join(', ')"),
		v("message", "'gracekeeper: ' + (size(variables.sp) == 0 ? "+
			"'container ' + variables.widest + ' = ' + string(variables.total) + 's > terminationGracePeriodSeconds ' + string(variables.grace) + 's; raise it to at least ' + string(variables.total) + ' or shorten the preStop'"+
			" : 'sidecar ' + "+q("variables.inits[variables.sideIdx[0]].name")+" + ' stops last: containers need ' + string(variables.t0) + 's (' + variables.widest + '), then sidecars stop in reverse order: ' + variables.steps + '; total ' + string(variables.total) + 's > terminationGracePeriodSeconds ' + string(variables.grace) + 's; raise it to at least ' + string(variables.total) + ' or shorten the preStop')"),
	)
	return vs
}

// cleanupJSON is one policy's element of the gracekeeper.dev/cleanup
// annotation, as policies/merge.go writes it.
func cleanupJSON(p *v1alpha1.LifecyclePolicy) (string, error) {
	cl := p.Spec.Cleanup
	r := policies.CleanupRecord{Policy: p.Name, Finalizer: cl.Finalizer, URL: cl.URL, TimeoutSeconds: cl.TimeoutSeconds, GiveUpAfterSeconds: 600}
	if r.TimeoutSeconds == 0 {
		r.TimeoutSeconds = 5
	}
	if cl.GiveUpAfterSeconds != nil {
		r.GiveUpAfterSeconds = *cl.GiveUpAfterSeconds
	}
	b, err := json.Marshal(r)
	return string(b), err
}

func ptr[T any](v T) *T { return &v }

func sortStrings(s []string) { slices.Sort(s) }

// sameHandler reports equal handlers as the engine compares them.
func sameHandler(a, b *corev1.LifecycleHandler) bool { return equality.Semantic.DeepEqual(a, b) }

// inlineVariables writes the cheap variables into the expressions that
// read them and drops every variable no expression needs, so the API
// server sets up only what can be evaluated. exprs are the policy's own
// expressions (validations, messages, the patch), rewritten in place.
func inlineVariables(vars []admissionregistrationv1.Variable, exprs ...*string) []admissionregistrationv1.Variable {
	ref := func(name string) *regexp.Regexp {
		return regexp.MustCompile(`variables\.` + regexp.QuoteMeta(name) + `\b`)
	}
	// The cheap variables cost less to repeat than a variable does: each
	// variable the API server resolves is a program evaluation of its
	// own, with its own activation and cost tracking
	// (k8s.io/apiserver/pkg/admission/plugin/cel/composition.go), while a
	// field path, a constant or a choice among the (cached) selections of
	// the policies is a few map lookups.
	cheapVariables := []string{"labels", "nsLabels", "ann", "ctrs", "inits", "cur", "grace", "over", "pSleep", "postOver", "postSleep",
		"floors", "fitMax", "fit", "maxSecs", "preW1_ctrs", "postW1_ctrs", "lowerOK", "first", "actionFrom"}
	var kept []admissionregistrationv1.Variable
	inlined := map[string]string{}
	apply := func(e string) string {
		for _, n := range cheapVariables {
			if x, ok := inlined[n]; ok {
				e = ref(n).ReplaceAllLiteralString(e, "("+x+")")
			}
		}
		return e
	}
	for _, v := range vars {
		v.Expression = apply(v.Expression)
		if slices.Contains(cheapVariables, v.Name) {
			inlined[v.Name] = v.Expression
			continue
		}
		kept = append(kept, v)
	}
	for _, e := range exprs {
		*e = apply(*e)
	}
	// Keep what the expressions read, and what that reads, in order.
	need := map[string]bool{}
	var mark func(e string)
	mark = func(e string) {
		for i := len(kept) - 1; i >= 0; i-- {
			if n := kept[i].Name; !need[n] && ref(n).MatchString(e) {
				need[n] = true
				mark(kept[i].Expression)
			}
		}
	}
	for _, e := range exprs {
		mark(*e)
	}
	out := kept[:0]
	for _, v := range kept {
		if need[v.Name] {
			out = append(out, v)
		}
	}
	return out
}
