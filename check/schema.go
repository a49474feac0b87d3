package check

import (
	"context"
	"fmt"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	crdvalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"

	"github.com/gracekeeper/gracekeeper/config/crd"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// policySchema validates and defaults policies as the API server does for the
// LifecyclePolicy CRD: structural defaults, the OpenAPI schema, then the CEL
// rules (apiextensions-apiserver pkg/registry/customresource/validator.go).
// Offline, `check` then refuses exactly the policies a cluster would refuse,
// and sees the defaults (validation.action: Deny, maxSeconds: 300) it would see.
type policySchema struct {
	structural *structuralschema.Structural
	openapi    crdvalidation.SchemaValidator
	cel        *cel.Validator // nil when the schema has no CEL rules
}

func newPolicySchema() (*policySchema, error) {
	var def apiextensionsv1.CustomResourceDefinition
	if err := yaml.Unmarshal(crd.LifecyclePolicy(), &def); err != nil {
		return nil, fmt.Errorf("embedded CRD: %w", err)
	}
	var v1schema *apiextensionsv1.JSONSchemaProps
	for _, v := range def.Spec.Versions {
		if v.Name == v1alpha1.GroupVersion.Version && v.Schema != nil {
			v1schema = v.Schema.OpenAPIV3Schema
		}
	}
	if v1schema == nil {
		return nil, fmt.Errorf("embedded CRD has no %s schema", v1alpha1.GroupVersion.Version)
	}
	internal := &apiextensions.JSONSchemaProps{}
	if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v1schema, internal, nil); err != nil {
		return nil, fmt.Errorf("embedded CRD: %w", err)
	}
	ss, err := structuralschema.NewStructural(internal)
	if err != nil {
		return nil, fmt.Errorf("embedded CRD: %w", err)
	}
	openapi, _, err := crdvalidation.NewSchemaValidator(internal)
	if err != nil {
		return nil, fmt.Errorf("embedded CRD: %w", err)
	}
	return &policySchema{structural: ss, openapi: openapi, cel: cel.NewValidator(ss, true, celconfig.PerCallLimit)}, nil
}

// defaultAndValidate defaults obj in place and returns what the API server
// would refuse it for.
func (p *policySchema) defaultAndValidate(ctx context.Context, obj map[string]any) field.ErrorList {
	structuraldefaulting.Default(obj, p.structural)
	errs := crdvalidation.ValidateCustomResource(nil, obj, p.openapi)
	if p.cel != nil {
		celErrs, _ := p.cel.Validate(ctx, nil, p.structural, obj, nil, celconfig.RuntimeCELCostBudget)
		errs = append(errs, celErrs...)
	}
	return errs
}
