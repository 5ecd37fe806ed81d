package policy

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"gopkg.in/yaml.v3"

	"github.com/sluicegw/sluice/masking"
)

// detectorSpec is one user-defined content detector of a policy file:
//
//	detectors:
//	  - name: employee_id
//	    pattern: '\bEMP-[0-9]{6}\b'   # Go RE2 syntax
//	    validate: luhn                # optional: luhn or iban
//
// Rules enable it by name in their mask entries, like a built-in detector
// (mask: [employee_id, "employee_id=partial:4"]).
type detectorSpec struct {
	file, name, pattern, validate string
	line                          int
}

var detectorKeys = []string{"name", "pattern", "validate"}

func parseDetectors(file string, val *yaml.Node) ([]detectorSpec, []error) {
	errAt := func(line int, format string, args ...any) error {
		return &RuleError{File: file, Line: line, Field: "detectors", Msg: fmt.Sprintf(format, args...)}
	}
	if val.Kind == yaml.ScalarNode && val.Tag == "!!null" {
		return nil, nil
	}
	if val.Kind != yaml.SequenceNode {
		return nil, []error{errAt(val.Line, "want a list of detectors, got %s", kindName(val))}
	}
	var out []detectorSpec
	var errs []error
	for _, item := range val.Content {
		item = deref(item)
		if item.Kind != yaml.MappingNode {
			errs = append(errs, errAt(item.Line, "want a mapping with keys %s, got %s", strings.Join(detectorKeys, ", "), kindName(item)))
			continue
		}
		d := detectorSpec{file: file, line: item.Line}
		for i := 0; i+1 < len(item.Content); i += 2 {
			k, v := item.Content[i], deref(item.Content[i+1])
			if v.Kind != yaml.ScalarNode {
				errs = append(errs, errAt(v.Line, "%s: want a string, got %s", k.Value, kindName(v)))
				continue
			}
			switch k.Value {
			case "name":
				d.name = v.Value
			case "pattern":
				d.pattern = v.Value
			case "validate":
				d.validate = v.Value
			default:
				errs = append(errs, errAt(k.Line, "unknown key %q (want %s)", k.Value, strings.Join(detectorKeys, ", ")))
			}
		}
		if d.name == "" || d.pattern == "" {
			errs = append(errs, errAt(item.Line, "name and pattern are required"))
			continue
		}
		out = append(out, d)
	}
	return out, errs
}

// compileDetector builds the detector a spec defines.
func compileDetector(d detectorSpec) (masking.Detector, error) {
	var validate func([]byte) bool
	if d.validate != "" {
		v, ok := masking.NamedValidator(d.validate)
		if !ok {
			return nil, &RuleError{File: d.file, Line: d.line, Field: "detectors", Msg: fmt.Sprintf("%s: validate: %q is not one of %s", d.name, d.validate, strings.Join(masking.ValidatorNames(), ", "))}
		}
		validate = v
	}
	det, err := masking.RegexpDetector(d.name, d.pattern, validate)
	if err != nil {
		return nil, &RuleError{File: d.file, Line: d.line, Field: "detectors", Msg: strings.TrimPrefix(err.Error(), "masking: ")}
	}
	return det, nil
}

// engineGen numbers compiled engines, so that a cache of maskers built
// with an engine's detectors can tell one policy's set from the next.
var engineGen atomic.Uint64

// Detectors returns the content detectors the policy files define, and a
// number that changes whenever the set might (each compiled policy has its
// own). The gateway compiles maskers with them.
func (e *Engine) Detectors() (uint64, []masking.Detector) {
	return e.gen, slices.Clone(e.detectors)
}

// Detectors returns the current policy's detectors (see Engine.Detectors).
func (l *Live) Detectors() (uint64, []masking.Detector) { return l.Engine().Detectors() }

// DetectorSource is implemented by deciders whose policies define content
// detectors (Engine, Live).
type DetectorSource interface {
	Detectors() (uint64, []masking.Detector)
}

// UnknownDetectors lists the detector names that mask entries use but
// that are neither built in nor defined by the policy. A program that adds
// no detectors of its own (through masking.Options.Custom) should refuse
// such a policy: the maskers would fail to compile, and every command
// asking for them would be refused.
func (e *Engine) UnknownDetectors() []string {
	known := map[string]bool{}
	for _, d := range e.detectors {
		known[d.Name()] = true
	}
	var out []string
	for _, r := range e.rules {
		for _, m := range r.mask {
			en, err := masking.ParseEntry(m)
			if err != nil || en.Kind != masking.DetectorEntry {
				continue
			}
			if !masking.IsBuiltin(en.Target) && !known[en.Target] && !slices.Contains(out, en.Target) {
				out = append(out, en.Target)
			}
		}
	}
	return out
}
