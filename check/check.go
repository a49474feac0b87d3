package check

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// Result is what a check run found: every object in input order, and the
// documents to print.
type Result struct {
	Objects []Object
	docs    []outDoc
}

// outDoc is one input document and what admission makes of it.
type outDoc struct {
	raw     []byte // as written
	json    []byte // after the change; nil for an empty document
	changed bool
	list    bool
}

// Changed is the number of objects the policies change.
func (r *Result) Changed() int {
	n := 0
	for _, o := range r.Objects {
		if o.Changed {
			n++
		}
	}
	return n
}

// Denied reports whether any object is denied.
func (r *Result) Denied() bool {
	for _, o := range r.Objects {
		if o.Denied() {
			return true
		}
	}
	return false
}

// Check reads every file ("-" is stdin) and reviews every object. Bad input
// is reported as one or more *InputError (joined), and then nothing else is
// returned: a partly read input must not look like a pass.
func (c *Checker) Check(files []string, stdin io.Reader) (*Result, error) {
	type input struct {
		docs []document
		errs []error
	}
	var inputs []input
	files, err := expandPaths(files)
	if err != nil {
		return nil, err
	}
	stdinUsed := false
	for _, f := range files {
		if f == "-" {
			if stdinUsed {
				inputs = append(inputs, input{errs: []error{&InputError{Loc: Location{Source: "stdin"}, Err: errors.New(`"-" given more than once; standard input can be read only once`)}}})
				continue
			}
			stdinUsed = true
		}
		docs, err := readInput(f, stdin)
		inputs = append(inputs, input{docs: docs, errs: flatten(err)})
	}
	// Namespaces declared in the input carry their own labels, as they
	// will in the cluster once applied.
	var all []document
	for _, in := range inputs {
		all = append(all, in.docs...)
	}
	declared := namespacesIn(all)

	res := &Result{}
	var errs []error
	for _, in := range inputs {
		fileErrs := in.errs
		for _, d := range in.docs {
			od, objs, err := c.checkDocument(d, declared)
			if err != nil {
				fileErrs = append(fileErrs, flatten(err)...)
				continue
			}
			res.docs = append(res.docs, od)
			res.Objects = append(res.Objects, objs...)
		}
		errs = append(errs, sortByLocation(fileErrs)...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return res, nil
}

func (c *Checker) checkDocument(d document, declared map[string]map[string]string) (outDoc, []Object, error) {
	od := outDoc{raw: d.raw, json: d.json}
	if d.json == nil {
		return od, nil, nil
	}
	tm, err := readTypeMeta(d.json)
	if err != nil {
		return od, nil, &InputError{Loc: d.loc, Err: err}
	}
	var (
		objs []Object
		ops  []patchOp
		errs []error
	)
	if tm.isList() {
		od.list = true
		for i, item := range tm.Items {
			loc := d.loc
			loc.Item = i + 1
			o, p, err := c.reviewObject(loc, item, fmt.Sprintf("/items/%d", i), declared)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			objs = append(objs, o)
			ops = append(ops, p...)
		}
	} else {
		o, p, err := c.reviewObject(d.loc, d.json, "", declared)
		if err != nil {
			return od, nil, err
		}
		objs, ops = []Object{o}, p
	}
	if len(errs) > 0 {
		return od, nil, errors.Join(errs...)
	}
	if d.duplicate != nil && len(objs) > 0 {
		objs[0].Findings = append([]policies.Finding{{
			Action:  v1alpha1.ActionWarn,
			Reason:  ReasonDuplicateField,
			Message: fmt.Sprintf("%v: the last one is used here; the API server's strict field validation (kubectl's default) refuses the object", d.duplicate),
		}}, objs[0].Findings...)
	}
	if len(ops) > 0 {
		out, err := applyPatch(d.json, ops)
		if err != nil {
			return od, nil, &InputError{Loc: d.loc, Err: err}
		}
		od.json, od.changed = out, true
	}
	return od, objs, nil
}

// flatten undoes errors.Join, so that each error can be sorted and printed.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// sortByLocation orders one file's errors by document and item, so that they
// read top to bottom as the file does.
func sortByLocation(errs []error) []error {
	key := func(e error) (int, int) {
		var ie *InputError
		if errors.As(e, &ie) {
			return ie.Loc.Doc, ie.Loc.Item
		}
		return 0, 0
	}
	sort.SliceStable(errs, func(i, j int) bool {
		di, ii := key(errs[i])
		dj, ij := key(errs[j])
		return di < dj || (di == dj && ii < ij)
	})
	return errs
}

// namespacesIn returns the labels of the v1 Namespaces among docs (Lists
// included), by name. Malformed documents are left to the review to report.
func namespacesIn(docs []document) map[string]map[string]string {
	type nsDoc struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name   string            `json:"name"`
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
	}
	out := map[string]map[string]string{}
	add := func(js []byte) {
		var n nsDoc
		if json.Unmarshal(js, &n) == nil && n.APIVersion == "v1" && n.Kind == "Namespace" && n.Metadata.Name != "" {
			out[n.Metadata.Name] = n.Metadata.Labels
		}
	}
	for _, d := range docs {
		if d.json == nil {
			continue
		}
		tm, err := readTypeMeta(d.json)
		if err != nil {
			continue
		}
		if tm.isList() {
			for _, item := range tm.Items {
				add(item)
			}
			continue
		}
		add(d.json)
	}
	return out
}
