package check

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// Format is the output format of the objects.
type Format string

const (
	// FormatYAML prints the documents as multi-document YAML; unchanged
	// documents are printed exactly as written (comments included).
	FormatYAML Format = "yaml"
	// FormatJSON prints one v1 List holding every object (Lists flattened).
	FormatJSON Format = "json"
)

// WriteObjects prints the objects as admission would leave them.
func (r *Result) WriteObjects(w io.Writer, f Format) error {
	switch f {
	case FormatYAML, "":
		return r.writeYAML(w)
	case FormatJSON:
		return r.writeJSON(w)
	}
	return fmt.Errorf("unknown output format %q: use yaml or json", f)
}

func (r *Result) writeYAML(w io.Writer) error {
	var buf bytes.Buffer
	for i, d := range r.docs {
		if i > 0 {
			buf.WriteString("---\n")
		}
		out := d.raw
		if d.changed {
			y, err := yaml.JSONToYAML(d.json)
			if err != nil {
				return err
			}
			out = y
		}
		buf.Write(out)
		if len(out) > 0 && out[len(out)-1] != '\n' {
			buf.WriteByte('\n')
		}
	}
	_, err := w.Write(buf.Bytes())
	return err
}

func (r *Result) writeJSON(w io.Writer) error {
	items := []any{}
	for _, d := range r.docs {
		if d.json == nil {
			continue
		}
		var objs []json.RawMessage
		if d.list {
			tm, err := readTypeMeta(d.json)
			if err != nil {
				return err
			}
			objs = tm.Items
		} else {
			objs = []json.RawMessage{d.json}
		}
		for _, o := range objs {
			// Decoding and encoding again sorts the keys, so that the output
			// does not depend on how the input or the patch ordered them.
			dec := json.NewDecoder(bytes.NewReader(o))
			dec.UseNumber()
			var v any
			if err := dec.Decode(&v); err != nil {
				return err
			}
			items = append(items, v)
		}
	}
	list := map[string]any{"apiVersion": "v1", "kind": "List", "items": items}
	out, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(out, '\n'))
	return err
}

// WriteFindings prints one line per finding, in input order, then a summary:
//
//	DENY  deployment/web (doc 2 of app.yaml) container "web": ...  [policy http-drain, BudgetExceeded]
func (r *Result) WriteFindings(w io.Writer, policies int) error {
	return WriteTable(w, r.Objects, policies)
}

// WriteTable prints the findings table of objs (what `check` prints on
// stderr and `audit` on stdout): one line per finding, in the order given,
// then a summary line starting with PASS or FAIL.
func WriteTable(w io.Writer, objs []Object, policies int) error {
	var buf bytes.Buffer
	counts := map[v1alpha1.ValidationAction]int{}
	reviewed, denied, changed := 0, 0, 0
	for _, o := range objs {
		if o.Reviewed {
			reviewed++
		}
		if o.Changed {
			changed++
		}
		if o.Denied() {
			denied++
		}
		for _, f := range o.Findings {
			counts[f.Action]++
			tag := string(f.Reason)
			if f.Policy != "" {
				tag = "policy " + f.Policy + ", " + tag
			}
			fmt.Fprintf(&buf, "%-5s %s (%s) %s  [%s]\n", actionLabel(f.Action), o.Ref(), o.Loc, f.Message, tag)
		}
	}
	verdict := "PASS"
	if denied > 0 {
		verdict = "FAIL"
	}
	fmt.Fprintf(&buf, "%s: %s (%d reviewed, %d changed) against %s: %d denied, %s, %s",
		verdict, plural(len(objs), "object"), reviewed, changed, plural(policies, "policy"),
		denied, plural(counts[v1alpha1.ActionWarn], "warning"), plural(counts[v1alpha1.ActionAudit], "audit finding"))
	if n := len(objs) - reviewed; n > 0 {
		fmt.Fprintf(&buf, "; %d passed through unreviewed", n)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

func actionLabel(a v1alpha1.ValidationAction) string {
	if a == "" {
		return "INFO"
	}
	return strings.ToUpper(string(a))
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	if strings.HasSuffix(word, "y") {
		return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(word, "y"))
	}
	return fmt.Sprintf("%d %ss", n, word)
}
