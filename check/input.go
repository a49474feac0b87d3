package check

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Location says where an object was read: the file as given ("stdin" for
// "-"), the 1-based document number in it, and the 1-based item number when
// the object sits in a List (0 otherwise). A Location with no Doc is a
// place that is not a file (`audit` uses "namespace NAME") and prints as Source.
type Location struct {
	Source string
	Doc    int
	Item   int
}

func (l Location) String() string {
	if l.Doc == 0 {
		return l.Source
	}
	s := fmt.Sprintf("doc %d of %s", l.Doc, l.Source)
	if l.Item > 0 {
		s += fmt.Sprintf(", item %d", l.Item)
	}
	return s
}

// InputError is bad input: unreadable files, invalid YAML, unknown kinds,
// policies that fail strict decoding. It makes `check` exit 2.
type InputError struct {
	Loc Location // Doc is 0 when the error is about the whole file
	Err error
}

func (e *InputError) Error() string {
	if e.Loc.Doc == 0 {
		return fmt.Sprintf("%s: %v", e.Loc.Source, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Loc, e.Err)
}

func (e *InputError) Unwrap() error { return e.Err }

// document is one YAML document of an input.
type document struct {
	loc  Location
	raw  []byte // as written, for echoing unchanged documents
	json []byte // nil for an empty document (only comments or whitespace)
	// duplicate is set when a mapping repeats a key: converting to JSON
	// keeps the last, while the API server's strict field validation
	// refuses the object.
	duplicate error
}

// maxDocumentBytes bounds one document: the API server refuses request bodies
// over 3 MiB, so a larger document is a mistake (a missing `---`, a generated
// blob), better reported than parsed slowly.
const maxDocumentBytes = 16 << 20

// splitDocuments reads a multi-document YAML stream. Documents are numbered as
// the `---` separators cut them, so the numbers in messages match what a
// reader counts in the file. A document that is not valid YAML is reported
// and the rest are still read, so that one run names every bad document.
func splitDocuments(source string, r io.Reader) ([]document, error) {
	yr := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var (
		docs []document
		errs []error
	)
	for n := 1; ; n++ {
		chunk, err := yr.Read()
		if errors.Is(err, io.EOF) {
			return docs, errors.Join(errs...)
		}
		loc := Location{Source: source, Doc: n}
		if err != nil {
			// The stream cannot be split further (a bad separator line).
			return nil, errors.Join(append(errs, &InputError{Loc: loc, Err: fmt.Errorf("reading YAML: %w", err)})...)
		}
		if len(chunk) > maxDocumentBytes {
			return nil, errors.Join(append(errs, &InputError{Loc: loc, Err: fmt.Errorf("document is larger than %d bytes", maxDocumentBytes)})...)
		}
		js, err := yaml.YAMLToJSON(chunk)
		if err != nil {
			errs = append(errs, &InputError{Loc: loc, Err: fmt.Errorf("invalid YAML: %w", err)})
			continue
		}
		if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
			js = nil
		}
		d := document{loc: loc, raw: chunk, json: js}
		if _, err := yaml.YAMLToJSONStrict(chunk); err != nil {
			d.duplicate = oneLine(err)
		}
		docs = append(docs, d)
	}
}

// typeMeta is what is needed of an object before it is decoded.
type typeMeta struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Items      []json.RawMessage `json:"items"`
}

func readTypeMeta(js []byte) (typeMeta, error) {
	var tm typeMeta
	if len(js) == 0 || js[0] != '{' {
		return tm, errors.New("not a Kubernetes object: expected a mapping with apiVersion and kind")
	}
	if err := json.Unmarshal(js, &tm); err != nil {
		return tm, fmt.Errorf("not a Kubernetes object: %w", err)
	}
	if tm.APIVersion == "" || tm.Kind == "" {
		return tm, errors.New("not a Kubernetes object: apiVersion and kind must be set")
	}
	return tm, nil
}

// isList reports whether the object is a list of objects: the v1 List that
// `kubectl get -o yaml` prints, or a typed list such as PodList.
func (tm typeMeta) isList() bool {
	return tm.Kind == "List" || (strings.HasSuffix(tm.Kind, "List") && tm.Items != nil)
}

// oneLine turns yaml's multi-line "unmarshal errors" into one line, so each
// finding stays on one line of output.
func oneLine(err error) error {
	s := strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:")
	var parts []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return errors.New(strings.Join(parts, "; ") + " (lines count from the document's start)")
}
