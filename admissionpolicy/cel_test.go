package admissionpolicy

import (
	"path"
	"regexp"
	"testing"

	"github.com/gracekeeper/gracekeeper/policies"
)

// TestGlobRegexpMatchesPathMatch: a container glob compiled to RE2 selects
// exactly the names path.Match does (the engine's rule).
func TestGlobRegexpMatchesPathMatch(t *testing.T) {
	globs := []string{"*", "web", "web-*", "*-proxy", "a?c", "[abc]x", "[^abc]x", "[a-c]*", `\*x`, "istio-*", "x[a\\-]y", "*.*", "[\\]a]"}
	names := []string{"web", "web-1", "web-", "istio-proxy", "abc", "axc", "ax", "bx", "dx", "-x", "*x", "zz", "x-y", "a.b", "proxy", ""}
	for _, g := range globs {
		re, err := globRegexp(g)
		if err != nil {
			t.Fatalf("%q: %v", g, err)
		}
		r := regexp.MustCompile(re)
		for _, n := range names {
			want, _ := path.Match(g, n)
			if got := r.MatchString(n); got != want {
				t.Errorf("glob %q (regexp %s) on %q: %v, path.Match says %v", g, re, n, got, want)
			}
		}
	}
	for _, bad := range []string{"[a", "x[-]y", `a\`} {
		if _, err := globRegexp(bad); err == nil {
			t.Errorf("%q: path.Match refuses it, so must this", bad)
		}
	}
}

// TestRecognisedCommandsAgree: the command lists compiled into CEL are the
// engine's.
func TestRecognisedCommandsAgree(t *testing.T) {
	for _, s := range Shells() {
		if !policies.IsShell(s) {
			t.Errorf("%q is not a shell to the engine", s)
		}
		if _, ok := policies.ExecSleepSeconds([]string{s, "-c", "sleep 3"}); !ok {
			t.Errorf("%q -c 'sleep 3' not recognised by the engine", s)
		}
	}
	for _, s := range SleepCommands() {
		if !policies.IsSleep(s) {
			t.Errorf("%q is not a sleep command to the engine", s)
		}
	}
	for _, s := range []string{"zsh", "/bin/zsh", "usleep", "busybox", "/sbin/sleep"} {
		if policies.IsShell(s) || policies.IsSleep(s) {
			t.Errorf("%q is recognised by the engine but not listed here", s)
		}
	}
}
