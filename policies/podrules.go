package policies

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// This file holds the API server's rules for the pod fields gracekeeper
// writes, as kube-apiserver applies them at pod CREATE
// (pkg/apis/core/validation/validation.go), built on the same
// k8s.io/apimachinery helpers. Policies are checked against them when
// applied (ValidatePolicy), and every mutated pod again before it is
// answered (touchedErrors), so that gracekeeper never produces a pod the API
// server refuses.

// handlerErrors checks a lifecycle handler as validateHandler does. grace is
// the pod's terminationGracePeriodSeconds, which bounds a sleep
// (validateSleepAction); nil leaves that to the pod.
func handlerErrors(h *corev1.LifecycleHandler, grace *int64, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	n := 0
	if h.Exec != nil {
		n++
		if len(h.Exec.Command) == 0 {
			errs = append(errs, field.Required(fld.Child("exec", "command"), ""))
		}
	}
	if h.HTTPGet != nil {
		n++
		errs = append(errs, httpGetErrors(h.HTTPGet, fld.Child("httpGet"))...)
	}
	if h.TCPSocket != nil {
		n++
		errs = append(errs, portErrors(h.TCPSocket.Port, fld.Child("tcpSocket", "port"))...)
	}
	if h.Sleep != nil {
		n++
		if s := h.Sleep.Seconds; s < 0 || (grace != nil && s > *grace) {
			limit := "terminationGracePeriodSeconds"
			if grace != nil {
				limit = fmt.Sprintf("terminationGracePeriodSeconds (%d)", *grace)
			}
			errs = append(errs, field.Invalid(fld.Child("sleep"), s, "must be non-negative and less than "+limit))
		}
	}
	switch {
	case n == 0:
		errs = append(errs, field.Required(fld, "must specify a handler type"))
	case n > 1:
		errs = append(errs, field.Forbidden(fld, "may not specify more than 1 handler type"))
	}
	return errs
}

// httpGetErrors is validateHTTPGetAction: a path, a port number or name, a
// scheme of HTTP or HTTPS, and header names as HTTP allows them.
func httpGetErrors(g *corev1.HTTPGetAction, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	if g.Path == "" {
		errs = append(errs, field.Required(fld.Child("path"), ""))
	}
	errs = append(errs, portErrors(g.Port, fld.Child("port"))...)
	if g.Scheme != corev1.URISchemeHTTP && g.Scheme != corev1.URISchemeHTTPS {
		errs = append(errs, field.NotSupported(fld.Child("scheme"), g.Scheme, []string{string(corev1.URISchemeHTTP), string(corev1.URISchemeHTTPS)}))
	}
	for i, h := range g.HTTPHeaders {
		for _, msg := range validation.IsHTTPHeaderName(h.Name) {
			errs = append(errs, field.Invalid(fld.Child("httpHeaders").Index(i).Child("name"), h.Name, msg))
		}
	}
	return errs
}

// portErrors is ValidatePortNumOrName.
func portErrors(p intstr.IntOrString, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	if p.Type == intstr.String {
		for _, msg := range validation.IsValidPortName(p.StrVal) {
			errs = append(errs, field.Invalid(fld, p.StrVal, msg))
		}
		return errs
	}
	for _, msg := range validation.IsValidPortNum(p.IntValue()) {
		errs = append(errs, field.Invalid(fld, p.IntValue(), msg))
	}
	return errs
}

// touchedErrors checks the fields mutation changed from before to after
// against the API server's pod rules: each changed container's lifecycle
// (on a regular container or a native sidecar only: validateInitContainers
// forbids it on plain init containers; sleeps within the final grace
// period), the grace period itself (ValidateNonnegativeField), and the
// metadata gracekeeper writes: finalizers (ValidateFinalizers), labels and
// annotations (size included: ValidateAnnotations).
func touchedErrors(before, after *corev1.Pod) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	g := gracePeriod(&after.Spec)
	grace := &g
	if t := after.Spec.TerminationGracePeriodSeconds; t != nil && *t < 0 && !equality.Semantic.DeepEqual(before.Spec.TerminationGracePeriodSeconds, t) {
		errs = append(errs, field.Invalid(spec.Child("terminationGracePeriodSeconds"), *t, "must be greater than or equal to 0"))
	}
	check := func(bs, as []corev1.Container, fld *field.Path, init bool) {
		for i := range as {
			c := &as[i]
			var was *corev1.Lifecycle
			if i < len(bs) {
				was = bs[i].Lifecycle
			}
			if c.Lifecycle == nil || equality.Semantic.DeepEqual(was, c.Lifecycle) {
				continue
			}
			lf := fld.Index(i).Child("lifecycle")
			if init && !isSidecar(c) {
				errs = append(errs, field.Forbidden(lf, "may not be set for init containers without restartPolicy=Always"))
				continue
			}
			if c.Lifecycle.PreStop != nil {
				errs = append(errs, handlerErrors(c.Lifecycle.PreStop, grace, lf.Child("preStop"))...)
			}
			if c.Lifecycle.PostStart != nil {
				errs = append(errs, handlerErrors(c.Lifecycle.PostStart, grace, lf.Child("postStart"))...)
			}
		}
	}
	check(before.Spec.Containers, after.Spec.Containers, spec.Child("containers"), false)
	check(before.Spec.InitContainers, after.Spec.InitContainers, spec.Child("initContainers"), true)
	// Sleeps the grace period bounds: a lowered grace period would make a
	// container's own sleep invalid too.
	if !equality.Semantic.DeepEqual(before.Spec.TerminationGracePeriodSeconds, after.Spec.TerminationGracePeriodSeconds) {
		for i := range after.Spec.Containers {
			if lc := after.Spec.Containers[i].Lifecycle; lc != nil {
				lf := spec.Child("containers").Index(i).Child("lifecycle")
				for _, h := range []struct {
					name string
					h    *corev1.LifecycleHandler
				}{{"preStop", lc.PreStop}, {"postStart", lc.PostStart}} {
					if h.h != nil && h.h.Sleep != nil && h.h.Sleep.Seconds > *grace {
						errs = append(errs, field.Invalid(lf.Child(h.name, "sleep"), h.h.Sleep.Seconds, fmt.Sprintf("must be non-negative and less than terminationGracePeriodSeconds (%d)", *grace)))
					}
				}
			}
		}
	}
	// Metadata is checked as a whole (the annotations' total size counts),
	// but only errors the input pod did not have already are ours.
	meta := field.NewPath("metadata")
	metaErrs := func(p *corev1.Pod) field.ErrorList {
		var errs field.ErrorList
		errs = append(errs, apimachineryvalidation.ValidateFinalizers(p.Finalizers, meta.Child("finalizers"))...)
		errs = append(errs, metav1validation.ValidateLabels(p.Labels, meta.Child("labels"))...)
		return append(errs, apimachineryvalidation.ValidateAnnotations(p.Annotations, meta.Child("annotations"))...)
	}
	if !slices.Equal(before.Finalizers, after.Finalizers) || !equality.Semantic.DeepEqual(before.Labels, after.Labels) ||
		!equality.Semantic.DeepEqual(before.Annotations, after.Annotations) {
		had := map[string]bool{}
		for _, e := range metaErrs(before) {
			had[e.Error()] = true
		}
		for _, e := range metaErrs(after) {
			if !had[e.Error()] {
				errs = append(errs, e)
			}
		}
	}
	return errs
}

// PodRuleErrors is what the API server would refuse in after, of the fields
// that differ from before (the check the engine runs on every mutated pod).
// Exported for tests that hold it against a real API server.
func PodRuleErrors(before, after *corev1.Pod) field.ErrorList { return touchedErrors(before, after) }
