package k8scheck

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Object is one decoded Kubernetes object.
type Object struct {
	// Source says where it came from: a file, or a helm template run,
	// and the document's number in it (from 1).
	Source string
	// APIVersion, Kind and Name are the object's own.
	APIVersion, Kind, Name string
	// Obj is a pointer to its k8s.io/api type (*appsv1.Deployment, ...).
	Obj any
}

// String names the object as error messages do.
func (o Object) String() string { return fmt.Sprintf("%s %s (%s)", o.Kind, o.Name, o.Source) }

// kinds are the types an object may decode into, by apiVersion and kind.
// Anything else is an error: a kind added to the manifests is added here,
// so that it is decoded strictly too.
var kinds = map[[2]string]func() any{
	{"apps/v1", "Deployment"}:                     func() any { return new(appsv1.Deployment) },
	{"v1", "Service"}:                             func() any { return new(corev1.Service) },
	{"v1", "ConfigMap"}:                           func() any { return new(corev1.ConfigMap) },
	{"v1", "Secret"}:                              func() any { return new(corev1.Secret) },
	{"autoscaling/v2", "HorizontalPodAutoscaler"}: func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
	{"policy/v1", "PodDisruptionBudget"}:          func() any { return new(policyv1.PodDisruptionBudget) },
}

// ErrUnknownKind is returned by Decode for an apiVersion and kind that
// kinds does not list.
var ErrUnknownKind = errors.New("k8scheck: unknown apiVersion and kind")

// Split cuts a YAML stream (documents separated by ---) into its
// documents, leaving out those that hold nothing but comments.
func Split(stream []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("cannot split the YAML stream: %w", err)
		}
		var v any
		if err := yaml.Unmarshal(doc, &v); err != nil {
			return nil, fmt.Errorf("document %d: %w", len(docs)+1, err)
		}
		if v != nil {
			docs = append(docs, doc)
		}
	}
}

// Decode decodes one document strictly into the type its apiVersion and
// kind name: a field the type does not have (matched case-sensitively), or
// a key given twice, is an error naming its path.
func Decode(source string, doc []byte) (Object, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return Object{}, fmt.Errorf("%s: %w", source, err)
	}
	o := Object{Source: source, APIVersion: head.APIVersion, Kind: head.Kind, Name: head.Metadata.Name}
	newObj, ok := kinds[[2]string{head.APIVersion, head.Kind}]
	if !ok {
		return o, fmt.Errorf("%s: %w %q %q (known: %v)", source, ErrUnknownKind, head.APIVersion, head.Kind, knownKinds())
	}
	o.Obj = newObj()
	// As the API server's strict field validation does: keys match the
	// types' fields case-sensitively, none is unknown or given twice
	// (sigs.k8s.io/yaml's UnmarshalStrict matches them as encoding/json
	// does, ignoring case).
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return o, fmt.Errorf("%s: %s %s: %w", source, head.Kind, head.Metadata.Name, err)
	}
	strict, err := kjson.UnmarshalStrict(j, o.Obj)
	if err == nil {
		err = errors.Join(strict...)
	}
	if err != nil {
		return o, fmt.Errorf("%s: %s %s: %w", source, head.Kind, head.Metadata.Name, err)
	}
	if o.Name == "" {
		return o, fmt.Errorf("%s: %s without metadata.name", source, head.Kind)
	}
	return o, nil
}

// DecodeAll splits a stream and decodes every document, returning every
// error it meets.
func DecodeAll(source string, stream []byte) ([]Object, error) {
	docs, err := Split(stream)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	var objs []Object
	var errs []error
	for i, doc := range docs {
		o, err := Decode(fmt.Sprintf("%s, document %d", source, i+1), doc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		objs = append(objs, o)
	}
	return objs, errors.Join(errs...)
}

// Kinds lists the objects' kinds, sorted, each once.
func Kinds(objs []Object) []string {
	var ks []string
	for _, o := range objs {
		if !slices.Contains(ks, o.Kind) {
			ks = append(ks, o.Kind)
		}
	}
	slices.Sort(ks)
	return ks
}

func knownKinds() []string {
	var ks []string
	for k := range kinds {
		ks = append(ks, k[0]+" "+k[1])
	}
	slices.Sort(ks)
	return ks
}
