package policies

import (
	"path"
	"strings"

	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// ValidatePolicy is the one validation of a LifecyclePolicy: everything the
// engine relies on, each error naming its field (e.g.
// "spec.preStop.httpGet.port: Invalid value: 0: must be between 1 and 65535,
// inclusive"). The policy webhook refuses a policy it finds errors in, the
// engine leaves such a policy out (NewSet), and `gracekeeper check` refuses
// it, all with these messages. The CRD schema and its CEL rules say part of
// the same earlier; this function says all of it, for policies that never
// went through an API server too.
func ValidatePolicy(p *v1alpha1.LifecyclePolicy) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	m := spec.Child("match")
	errs = append(errs, selectorErrors(p.Spec.Match.NamespaceSelector, m.Child("namespaceSelector"))...)
	errs = append(errs, selectorErrors(p.Spec.Match.PodSelector, m.Child("podSelector"))...)
	errs = append(errs, globErrors(p.Spec.Match.Containers, m.Child("containers"))...)
	errs = append(errs, globErrors(p.Spec.Match.ExcludeContainers, m.Child("excludeContainers"))...)
	if h := p.Spec.PreStop; h != nil {
		errs = append(errs, hookErrors(h.HookAction, true, spec.Child("preStop"))...)
	}
	if h := p.Spec.PostStart; h != nil {
		errs = append(errs, hookErrors(h.HookAction, false, spec.Child("postStart"))...)
	}
	if a := p.Spec.Validation; a != nil && a.Action != "" && !validAction(a.Action) {
		errs = append(errs, field.NotSupported(spec.Child("validation", "action"), a.Action,
			[]string{string(v1alpha1.ActionDeny), string(v1alpha1.ActionWarn), string(v1alpha1.ActionAudit)}))
	}
	for i, f := range p.Spec.Finalizers {
		if f != v1alpha1.TerminationRecordFinalizer {
			errs = append(errs, field.NotSupported(spec.Child("finalizers").Index(i), f, []string{string(v1alpha1.TerminationRecordFinalizer)}))
		}
	}
	if cl := p.Spec.Cleanup; cl != nil {
		errs = append(errs, finalizerErrors(cl.Finalizer, spec.Child("cleanup", "finalizer"))...)
		for _, f := range p.Spec.Finalizers {
			if string(f) == cl.Finalizer {
				errs = append(errs, field.Duplicate(spec.Child("cleanup", "finalizer"), cl.Finalizer))
			}
		}
	}
	return errs
}

// selectorErrors is metav1validation.ValidateLabelSelector, as the API
// server checks selectors: label keys and values valid, In and NotIn with
// values, Exists and DoesNotExist without.
func selectorErrors(ls *metav1.LabelSelector, fld *field.Path) field.ErrorList {
	if ls == nil {
		return nil
	}
	return metav1validation.ValidateLabelSelector(ls, metav1validation.LabelSelectorValidationOptions{}, fld)
}

// globErrors rejects patterns path.Match would fail on (path.ErrBadPattern),
// so that matching later cannot fail silently.
func globErrors(globs []string, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, g := range globs {
		if strings.TrimSpace(g) == "" {
			errs = append(errs, field.Required(fld.Index(i), "a container name or glob"))
			continue
		}
		if _, err := path.Match(g, ""); err != nil {
			errs = append(errs, field.Invalid(fld.Index(i), g, "not a valid glob (path.Match syntax): "+err.Error()))
		}
	}
	return errs
}

// hookErrors checks a policy hook as the API server will check it on every
// pod it is injected into (handlerErrors, after the defaults handler
// applies), plus what the budget needs: an exec or httpGet preStop says how
// long it takes; a postStart has no budget.
func hookErrors(a v1alpha1.HookAction, preStop bool, fld *field.Path) field.ErrorList {
	n := 0
	for _, set := range []bool{a.Sleep != nil, a.Exec != nil, a.HTTPGet != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return field.ErrorList{field.Invalid(fld, n, "exactly one of sleep, exec or httpGet must be set")}
	}
	var errs field.ErrorList
	if a.Sleep != nil && (a.Sleep.Seconds < 0 || a.Sleep.Seconds > maxSeconds) {
		errs = append(errs, field.Invalid(fld.Child("sleep", "seconds"), a.Sleep.Seconds, "must be between 0 and 86400"))
	}
	// The policy's httpGet has the pod's field names, so the paths agree.
	errs = append(errs, handlerErrors(handler(a), nil, fld)...)
	budget := declaredBudget(a)
	kind := "exec"
	if a.HTTPGet != nil {
		kind = "httpGet"
	}
	switch {
	case a.Sleep != nil:
	case preStop && budget == nil:
		errs = append(errs, field.Required(fld.Child(kind, "budgetSeconds"), "how long the "+kind+" takes counts in the shutdown budget"))
	case !preStop && budget != nil:
		errs = append(errs, field.Forbidden(fld.Child(kind, "budgetSeconds"), "budgetSeconds applies only to preStop"))
	case budget != nil && (*budget < 0 || *budget > maxSeconds):
		errs = append(errs, field.Invalid(fld.Child(kind, "budgetSeconds"), *budget, "must be between 0 and 86400"))
	}
	return errs
}

// finalizerErrors checks a finalizer name exactly as the API server checks
// a pod's metadata.finalizers (apimachinery ValidateFinalizers: a qualified
// name, whose domain prefix is a DNS subdomain of at most 253 characters),
// and that it has the domain prefix a finalizer of one's own needs.
func finalizerErrors(name string, fld *field.Path) field.ErrorList {
	errs := apimachineryvalidation.ValidateFinalizerName(name, fld)
	if len(errs) == 0 && !strings.Contains(name, "/") {
		errs = append(errs, field.Invalid(fld, name, "must be domain-qualified, e.g. example.com/release-ip"))
	}
	return errs
}
