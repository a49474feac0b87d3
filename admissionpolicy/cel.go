package admissionpolicy

import (
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// This file holds the small CEL builders: literals, label selectors and
// container-name globs as CEL expressions over the Kubernetes CEL library
// (k8s.io/apiserver/pkg/cel/environment/base.go: optional types, regex,
// the strings, lists and two-variable comprehension extensions).

// str is a CEL string literal. strconv.Quote's escapes (\", \\, \n, \xNN,
// \uNNNN) are all valid in CEL double-quoted strings.
func str(s string) string { return strconv.Quote(s) }

// strList is a CEL list of string literals.
func strList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = str(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func num(n int64) string { return strconv.FormatInt(n, 10) }

// or joins expressions with ||; an empty list is false.
func or(es []string) string {
	if len(es) == 0 {
		return "false"
	}
	return "(" + strings.Join(es, " || ") + ")"
}

// and joins expressions with &&; an empty list is true.
func and(es []string) string {
	if len(es) == 0 {
		return "true"
	}
	return "(" + strings.Join(es, " && ") + ")"
}

// selectorCEL is a label selector over the label map expression m, as
// labels.Selector.Matches judges it (k8s.io/apimachinery/pkg/labels
// Requirement.Matches): NotIn and DoesNotExist hold for an absent key. A
// nil or empty selector selects everything.
func selectorCEL(ls *metav1.LabelSelector, m string) (string, error) {
	if ls == nil {
		return "true", nil
	}
	var es []string
	for _, k := range sortedKeys(ls.MatchLabels) {
		es = append(es, fmt.Sprintf("(%s in %s && %s[%s] == %s)", str(k), m, m, str(k), str(ls.MatchLabels[k])))
	}
	for _, r := range ls.MatchExpressions {
		k := str(r.Key)
		switch r.Operator {
		case metav1.LabelSelectorOpIn:
			es = append(es, fmt.Sprintf("(%s in %s && %s[%s] in %s)", k, m, m, k, strList(r.Values)))
		case metav1.LabelSelectorOpNotIn:
			es = append(es, fmt.Sprintf("(!(%s in %s) || !(%s[%s] in %s))", k, m, m, k, strList(r.Values)))
		case metav1.LabelSelectorOpExists:
			es = append(es, fmt.Sprintf("(%s in %s)", k, m))
		case metav1.LabelSelectorOpDoesNotExist:
			es = append(es, fmt.Sprintf("!(%s in %s)", k, m))
		default:
			return "", fmt.Errorf("label selector operator %q", r.Operator)
		}
	}
	return and(es), nil
}

// globRegexp translates a path.Match pattern into an anchored RE2 pattern
// that matches the same names: * is any run of non-'/' characters, ? one
// non-'/' character, [...] and [^...] classes with ranges, \ escapes.
// Patterns were checked with path.Match when the policy was validated, so
// a malformed one is an error here too.
func globRegexp(g string) (string, error) {
	if _, err := path.Match(g, ""); err != nil {
		return "", fmt.Errorf("glob %q: %w", g, err)
	}
	var sb strings.Builder
	sb.WriteString("^")
	rs := []rune(g)
	for i := 0; i < len(rs); i++ {
		switch c := rs[i]; c {
		case '*':
			sb.WriteString("[^/]*")
		case '?':
			sb.WriteString("[^/]")
		case '\\':
			i++
			if i >= len(rs) {
				return "", fmt.Errorf("glob %q: trailing backslash", g)
			}
			sb.WriteString(regexp.QuoteMeta(string(rs[i])))
		case '[':
			i++
			neg := false
			if i < len(rs) && rs[i] == '^' {
				neg = true
				i++
			}
			sb.WriteString("[")
			if neg {
				// path.Match's negated class never matches '/'.
				sb.WriteString("^/")
			}
			n := 0
			for ; i < len(rs) && (rs[i] != ']' || n == 0); i++ {
				ch := rs[i]
				if ch == '\\' {
					i++
					if i >= len(rs) {
						return "", fmt.Errorf("glob %q: unterminated class", g)
					}
					ch = rs[i]
				}
				if ch == '-' && n > 0 {
					sb.WriteString("-")
				} else {
					sb.WriteString(classChar(ch))
				}
				n++
			}
			if i >= len(rs) {
				return "", fmt.Errorf("glob %q: unterminated class", g)
			}
			sb.WriteString("]")
		default:
			sb.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	sb.WriteString("$")
	if _, err := regexp.Compile(sb.String()); err != nil {
		return "", fmt.Errorf("glob %q: %w", g, err)
	}
	return sb.String(), nil
}

// classChar is one character inside an RE2 character class.
func classChar(r rune) string {
	switch r {
	case '\\', ']', '[', '^', '-':
		return `\` + string(r)
	}
	return string(r)
}

// globsCEL is "name matches one of the globs" (false for none).
func globsCEL(globs []string, name string) (string, error) {
	var es []string
	for _, g := range globs {
		if g == "*" {
			return "true", nil
		}
		re, err := globRegexp(g)
		if err != nil {
			return "", err
		}
		es = append(es, fmt.Sprintf("%s.matches(%s)", name, str(re)))
	}
	return or(es), nil
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sortStrings(out)
	return out
}
