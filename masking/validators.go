package masking

import "slices"

// validators are the named match validators a policy file's detectors may
// use (validate: NAME), for patterns that need a checksum to tell a real
// value from a look-alike.
var validators = map[string]func([]byte) bool{
	// luhn: the match's digits (spaces and dashes between them allowed)
	// pass the Luhn checksum of payment cards and many account numbers.
	"luhn": luhnMatch,
	// iban: the match is an IBAN (grouped by four with spaces, or not)
	// of its country's length with a valid mod-97 check.
	"iban": ibanMatch,
}

// NamedValidator returns the validator called name, for RegexpDetector.
func NamedValidator(name string) (func([]byte) bool, bool) {
	v, ok := validators[name]
	return v, ok
}

// ValidatorNames lists the named validators, sorted.
func ValidatorNames() []string {
	names := make([]string, 0, len(validators))
	for n := range validators {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func luhnMatch(m []byte) bool {
	var buf [64]byte
	d := buf[:0]
	for _, c := range m {
		switch {
		case isDigit(c):
			d = append(d, c)
		case c == ' ' || c == '-':
		default:
			return false
		}
	}
	return len(d) >= 2 && luhn(d)
}

func ibanMatch(m []byte) bool {
	if len(m) < 4 || !isUpper(m[0]) || !isUpper(m[1]) {
		return false
	}
	j, ok := ibanAt(m, 0)
	return ok && j == len(m)
}
