package policies

import (
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// handler converts a policy hook to the pod's LifecycleHandler, with the
// defaults the API server applies (pkg/apis/core/v1/defaults.go
// SetDefaults_HTTPGetAction: path "/", scheme HTTP). The API server defaults
// the object again after a mutating webhook's patch, so without these a
// reinvoked webhook would see a different handler and patch it again.
func handler(a v1alpha1.HookAction) *corev1.LifecycleHandler {
	switch {
	case a.Sleep != nil:
		return &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: a.Sleep.Seconds}}
	case a.Exec != nil:
		return &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: append([]string(nil), a.Exec.Command...)}}
	case a.HTTPGet != nil:
		g := &corev1.HTTPGetAction{
			Path:   a.HTTPGet.Path,
			Port:   a.HTTPGet.Port,
			Host:   a.HTTPGet.Host,
			Scheme: a.HTTPGet.Scheme,
		}
		if g.Path == "" {
			g.Path = "/"
		}
		if g.Scheme == "" {
			g.Scheme = corev1.URISchemeHTTP
		}
		for _, h := range a.HTTPGet.HTTPHeaders {
			g.HTTPHeaders = append(g.HTTPHeaders, corev1.HTTPHeader{Name: h.Name, Value: h.Value})
		}
		return &corev1.LifecycleHandler{HTTPGet: g}
	}
	return nil
}

// declaredBudget is what a policy's exec/httpGet preStop says it takes.
func declaredBudget(a v1alpha1.HookAction) *int64 {
	switch {
	case a.Exec != nil:
		return a.Exec.BudgetSeconds
	case a.HTTPGet != nil:
		return a.HTTPGet.BudgetSeconds
	}
	return nil
}

// isShell reports the interpreters whose `-c "sleep N"` form is recognised.
func isShell(p string) bool {
	switch p {
	case "sh", "/bin/sh", "/usr/bin/sh", "bash", "/bin/bash", "/usr/bin/bash", "ash", "/bin/ash", "dash", "/bin/dash":
		return true
	}
	return false
}

// isSleep reports the commands recognised as a plain `sleep N`.
func isSleep(p string) bool {
	return p == "sleep" || p == "/bin/sleep" || p == "/usr/bin/sleep"
}

// execSleepSeconds recognises the clear forms of an exec hook that only
// sleeps: ["sleep","5"], ["/bin/sleep","5"] and ["/bin/sh","-c","sleep 5"].
// Anything else (scripts, pipes, "&&" chains, fractions, suffixes) is not
// recognised: its duration is the app's to declare.
func execSleepSeconds(cmd []string) (int64, bool) {
	switch {
	case len(cmd) == 2 && isSleep(cmd[0]):
		return seconds(cmd[1])
	case len(cmd) == 3 && isShell(cmd[0]) && cmd[1] == "-c":
		f := strings.Fields(cmd[2])
		if len(f) == 2 && f[0] == "sleep" {
			return seconds(f[1])
		}
	}
	return 0, false
}

// seconds parses a non-negative whole number of seconds within the range
// the API allows for sleep (86400).
func seconds(s string) (int64, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > maxSeconds {
		return 0, false
	}
	return n, true
}

// maxSeconds bounds every duration the engine accepts from annotations and
// commands, as the CRD schema bounds those of policies.
const maxSeconds = 86400

// Handler is the pod's LifecycleHandler for a policy hook, with the API
// server's defaults, exactly as mutation injects it (admissionpolicy
// compiles the same handler into CEL).
func Handler(a v1alpha1.HookAction) *corev1.LifecycleHandler { return handler(a) }

// ExecSleepSeconds is the recognised `sleep N` of an exec command (ok false:
// not recognised), as the budget counts it.
func ExecSleepSeconds(cmd []string) (int64, bool) { return execSleepSeconds(cmd) }

// IsShell and IsSleep name the interpreters and sleep commands that
// ExecSleepSeconds recognises, so other renderings of the rule agree.
func IsShell(p string) bool { return isShell(p) }
func IsSleep(p string) bool { return isSleep(p) }

// MaxSeconds bounds every duration read from annotations and commands.
const MaxSeconds = maxSeconds
