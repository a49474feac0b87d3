package check

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// loadedPolicy is a policy and where it was read.
type loadedPolicy struct {
	policy v1alpha1.LifecyclePolicy
	loc    Location
}

// expandPaths expands -f and -p arguments: a file stands for itself, a
// directory for its *.yaml, *.yml (and *.json) files, not recursive, in name
// order so that runs are reproducible, as `kubectl apply -f DIR` reads them.
// "-" (stdin) stands for itself.
func expandPaths(paths []string) ([]string, error) {
	var files []string
	for _, p := range paths {
		if p == "-" {
			files = append(files, p)
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			return nil, &InputError{Loc: Location{Source: p}, Err: pathErr(err)}
		}
		if !fi.IsDir() {
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, &InputError{Loc: Location{Source: p}, Err: err}
		}
		var found []string
		for _, e := range entries {
			ext := strings.ToLower(filepath.Ext(e.Name()))
			if !e.IsDir() && (ext == ".yaml" || ext == ".yml" || ext == ".json") {
				found = append(found, filepath.Join(p, e.Name()))
			}
		}
		if len(found) == 0 {
			// A mistyped directory would otherwise check against no policy and pass.
			return nil, &InputError{Loc: Location{Source: p}, Err: errors.New("directory holds no *.yaml, *.yml or *.json file")}
		}
		sort.Strings(found)
		files = append(files, found...)
	}
	return files, nil
}

// loadPolicies reads LifecyclePolicy documents (and Lists of them) strictly:
// an unknown or duplicated field is an error, as it would be for
// `kubectl apply --validate=strict`, because a misspelt field silently
// changes what the policy does.
func (c *codecs) loadPolicies(ctx context.Context, schema *policySchema, paths []string) ([]loadedPolicy, error) {
	files, err := expandPaths(paths)
	if err != nil {
		return nil, err
	}
	var out []loadedPolicy
	byName := map[string]Location{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, &InputError{Loc: Location{Source: f}, Err: pathErr(err)}
		}
		docs, err := splitDocuments(f, bytes.NewReader(data))
		if err != nil {
			return nil, err
		}
		for _, d := range docs {
			if d.json == nil {
				continue
			}
			if d.duplicate != nil {
				return nil, &InputError{Loc: d.loc, Err: fmt.Errorf("invalid LifecyclePolicy: %w", d.duplicate)}
			}
			pols, err := c.decodePolicies(ctx, schema, d)
			if err != nil {
				return nil, err
			}
			for _, p := range pols {
				if prev, dup := byName[p.policy.Name]; dup {
					return nil, &InputError{Loc: p.loc, Err: fmt.Errorf("policy %q is also defined in %s; policy names are cluster-wide and must be unique", p.policy.Name, prev)}
				}
				byName[p.policy.Name] = p.loc
				out = append(out, p)
			}
		}
	}
	return out, nil
}

func (c *codecs) decodePolicies(ctx context.Context, schema *policySchema, d document) ([]loadedPolicy, error) {
	tm, err := readTypeMeta(d.json)
	if err != nil {
		return nil, &InputError{Loc: d.loc, Err: err}
	}
	if tm.isList() {
		var out []loadedPolicy
		for i, item := range tm.Items {
			loc := d.loc
			loc.Item = i + 1
			p, err := c.decodePolicy(ctx, schema, loc, item)
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
		return out, nil
	}
	p, err := c.decodePolicy(ctx, schema, d.loc, d.json)
	if err != nil {
		return nil, err
	}
	return []loadedPolicy{p}, nil
}

func (c *codecs) decodePolicy(ctx context.Context, schema *policySchema, loc Location, js []byte) (loadedPolicy, error) {
	tm, err := readTypeMeta(js)
	if err != nil {
		return loadedPolicy{}, &InputError{Loc: loc, Err: err}
	}
	want := v1alpha1.GroupVersion.WithKind("LifecyclePolicy")
	if tm.APIVersion != want.GroupVersion().String() || tm.Kind != want.Kind {
		return loadedPolicy{}, &InputError{Loc: loc, Err: fmt.Errorf("%s %s is not a policy: -p takes %s %s objects", tm.APIVersion, tm.Kind, want.GroupVersion(), want.Kind)}
	}
	var p v1alpha1.LifecyclePolicy
	if _, _, err := c.strict.Decode(js, nil, &p); err != nil {
		return loadedPolicy{}, &InputError{Loc: loc, Err: fmt.Errorf("invalid LifecyclePolicy: %w", err)}
	}
	if p.Name == "" {
		return loadedPolicy{}, &InputError{Loc: loc, Err: errors.New("invalid LifecyclePolicy: metadata.name is required")}
	}
	// The API server names custom resources as DNS subdomains.
	if errs := validation.IsDNS1123Subdomain(p.Name); len(errs) > 0 {
		return loadedPolicy{}, &InputError{Loc: loc, Err: fmt.Errorf("LifecyclePolicy %q: metadata.name: %s", p.Name, strings.Join(errs, "; "))}
	}
	// Default and validate as the API server would, then read the defaulted
	// policy: the engine sees what it would see in the cluster.
	var u map[string]any
	if err := utiljson.Unmarshal(js, &u); err != nil {
		return loadedPolicy{}, &InputError{Loc: loc, Err: fmt.Errorf("invalid LifecyclePolicy: %w", err)}
	}
	if errs := schema.defaultAndValidate(ctx, u); len(errs) > 0 {
		return loadedPolicy{}, &InputError{Loc: loc, Err: fmt.Errorf("LifecyclePolicy %q would be refused by the API server: %v", p.Name, errs.ToAggregate())}
	}
	defaulted, err := json.Marshal(u)
	if err != nil {
		return loadedPolicy{}, &InputError{Loc: loc, Err: err}
	}
	p = v1alpha1.LifecyclePolicy{}
	if _, _, err := c.lenient.Decode(defaulted, nil, &p); err != nil {
		return loadedPolicy{}, &InputError{Loc: loc, Err: fmt.Errorf("invalid LifecyclePolicy: %w", err)}
	}
	return loadedPolicy{policy: p, loc: loc}, nil
}

// readInput reads one -f argument; "-" is stdin.
func readInput(name string, stdin io.Reader) ([]document, error) {
	if name == "-" {
		if stdin == nil {
			return nil, &InputError{Loc: Location{Source: "stdin"}, Err: errors.New("no standard input")}
		}
		return splitDocuments("stdin", stdin)
	}
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, &InputError{Loc: Location{Source: name}, Err: pathErr(err)}
	}
	return splitDocuments(name, bytes.NewReader(data))
}

// pathErr drops the path from an *os.PathError: InputError already names it.
func pathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
