package masking

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// Options configure Compile.
type Options struct {
	// PseudonymKey keys the HMAC of the hash strategy. Entries that use
	// hash fail to compile without it (at least 16 bytes). Keep it stable
	// across sessions and gateways: pseudonyms are equal only under one
	// key, which is what keeps joins working.
	PseudonymKey []byte
	// RedactToken replaces redacted text; "[REDACTED]" when empty. In
	// JSON it is written as a JSON string; in non-text columns redaction
	// is NULL.
	RedactToken string
	// Custom are user-defined detectors (see RegexpDetector), enabled by
	// naming them in entries like the built-in ones.
	Custom []Detector
	// MaxValue bounds a JSON string or number the JSON masker holds to
	// inspect (default 1 MiB). A longer string that must be inspected is
	// replaced whole by the redaction token; a longer key or number is an
	// error.
	MaxValue int
	// StreamHold bounds how much a TextStream holds back while a match
	// may still be growing (default 64 KiB).
	StreamHold int
}

// DefaultRedactToken replaces redacted text when Options.RedactToken is
// empty.
const DefaultRedactToken = "[REDACTED]"

// ErrNoKey is returned by Compile when an entry uses the hash strategy and
// Options.PseudonymKey is missing or too short.
var ErrNoKey = errors.New("masking: the hash strategy needs Options.PseudonymKey (at least 16 bytes)")

// OversizeCount is the counts key under which JSON strings too long to
// inspect, and so redacted whole, are reported.
const OversizeCount = "oversize"

// Masker applies the masking compiled from a list of mask entries. It is
// safe for concurrent use; its streams are not.
type Masker struct {
	entries []string
	dets    []detRule
	cols    []colRule
	paths   []pathRule
	ends    endSet // the steps the paths may end at

	builtin candSet          // the built-in detectors among dets
	ruleOf  [numBuiltins]int // a built-in's index in dets
	custom  []int            // the indexes of custom detectors in dets
	// minFind is the length of the shortest value a detector may match
	// in: shorter ones are not looked at.
	minFind int

	token     []byte // redaction token for text
	jsonToken []byte // the same, as a JSON string
	macs      *sync.Pool
	maxValue  int
	hold      int

	// plans caches the plans of the last column sets seen (planFor).
	plans    [4]atomic.Pointer[rowPlan]
	nextPlan atomic.Uint32
}

var (
	_ RowCounter     = (*Masker)(nil)
	_ io.WriteCloser = (*JSONStream)(nil)
	_ io.WriteCloser = (*TextStream)(nil)
)

type detRule struct {
	d     Detector
	entry string
	strat Strategy
}

type colRule struct {
	pat   columnPattern
	entry string
	strat Strategy
}

type pathRule struct {
	path  jsonPath
	entry string
	strat Strategy
}

// Compile builds a Masker from mask entries, the accumulated
// protocol.Decision.Mask (see Entry for the grammar). Every problem is
// reported, and any problem fails the whole compile: an unknown detector,
// a malformed entry, a bad strategy, a hash without a key. When the same
// detector is named twice, the stronger strategy wins; so it does when
// several column or JSON rules match one value.
func Compile(entries []string, opts Options) (*Masker, error) {
	m := &Masker{
		entries:  slices.Clone(entries),
		maxValue: opts.MaxValue,
		hold:     opts.StreamHold,
	}
	if m.maxValue <= 0 {
		m.maxValue = 1 << 20
	}
	if m.hold <= 0 {
		m.hold = 64 << 10
	}
	if m.hold < 2*streamWindow {
		m.hold = 2 * streamWindow
	}
	tok := opts.RedactToken
	if tok == "" {
		tok = DefaultRedactToken
	}
	m.token = []byte(tok)
	m.jsonToken = appendJSONString(nil, m.token)

	var errs []error
	custom := map[string]Detector{}
	for _, d := range opts.Custom {
		name := d.Name()
		switch {
		case !validName(name):
			errs = append(errs, fmt.Errorf("masking: custom detector name %q: want letters, digits, _ and -", name))
		case IsBuiltin(name) || name == "column" || name == "json":
			errs = append(errs, fmt.Errorf("masking: custom detector name %q is taken by a built-in", name))
		case custom[name] != nil:
			errs = append(errs, fmt.Errorf("masking: custom detector %q given twice", name))
		default:
			custom[name] = d
		}
	}
	needKey := ""
	seen := map[string]int{}
	for _, s := range entries {
		e, err := ParseEntry(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("masking: %w", err))
			continue
		}
		if e.Strategy.Kind == Hash && needKey == "" {
			needKey = s
		}
		switch e.Kind {
		case DetectorEntry:
			d, ok := builtins[e.Target]
			if !ok {
				d, ok = custom[e.Target]
			}
			if !ok {
				errs = append(errs, fmt.Errorf("masking: %w %q: unknown detector %q (built-in: %s)",
					ErrEntry, s, e.Target, strings.Join(BuiltinNames(), ", ")))
				continue
			}
			if k, dup := seen[e.Target]; dup {
				if e.Strategy.stronger(m.dets[k].strat) {
					m.dets[k].strat, m.dets[k].entry = e.Strategy, s
				}
				continue
			}
			seen[e.Target] = len(m.dets)
			if id, ok := builtinIDs[e.Target]; ok {
				m.builtin |= 1 << id
				if id == idIP {
					m.builtin |= candIPv4 | candIPv6
				}
				m.ruleOf[id] = len(m.dets)
			} else {
				m.custom = append(m.custom, len(m.dets))
			}
			m.dets = append(m.dets, detRule{d: d, entry: s, strat: e.Strategy})
		case ColumnEntry:
			pat, _ := parseColumnPattern(e.Target)
			m.cols = append(m.cols, colRule{pat: pat, entry: s, strat: e.Strategy})
		case JSONEntry:
			p, _ := parsePath(e.Target)
			m.paths = append(m.paths, pathRule{path: p, entry: s, strat: e.Strategy})
		}
	}
	if needKey != "" {
		if len(opts.PseudonymKey) < 16 {
			errs = append(errs, fmt.Errorf("%w: entry %q", ErrNoKey, needKey))
		} else {
			key := slices.Clone(opts.PseudonymKey)
			m.macs = &sync.Pool{New: func() any { return &macState{h: hmac.New(sha256.New, key)} }}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	m.ends = endsOf(m.paths)
	m.minFind = minCandidate(m.builtin)
	if len(m.custom) > 0 {
		m.minFind = 1
	}
	return m, nil
}

// Entries returns the entries the Masker was compiled from.
func (m *Masker) Entries() []string { return slices.Clone(m.entries) }

// Detectors returns the names of the enabled content detectors.
func (m *Masker) Detectors() []string {
	names := make([]string, len(m.dets))
	for i, r := range m.dets {
		names[i] = r.d.Name()
	}
	return names
}

type macState struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

// mac returns the keyed HMAC-SHA256 of v.
func (m *Masker) mac(v []byte) [sha256.Size]byte {
	st := m.macs.Get().(*macState)
	st.h.Reset()
	st.h.Write(v)
	st.h.Sum(st.sum[:0])
	sum := st.sum
	m.macs.Put(st)
	return sum
}

// pseudonymLen is the length of a text pseudonym: "p_" and 16 hex digits
// (64 bits of the HMAC).
const pseudonymLen = 2 + 16

// appendPseudonym appends the text pseudonym of v.
func (m *Masker) appendPseudonym(dst, v []byte) []byte {
	sum := m.mac(v)
	dst = append(slices.Grow(dst, pseudonymLen), 'p', '_')
	return hex.AppendEncode(dst, sum[:8])
}

// appendPartial appends v with all but its last keep characters starred,
// never showing more than half of its characters.
func appendPartial(dst, v []byte, keep int) []byte {
	n := utf8.RuneCount(v)
	dst = slices.Grow(dst, len(v))
	keep = min(keep, n/2)
	i := 0
	for r := 0; r < n-keep; r++ {
		_, size := utf8.DecodeRune(v[i:])
		i += size
		dst = append(dst, '*')
	}
	return append(dst, v[i:]...)
}

// appendReplacement appends what strategy st makes of v in text. Null
// appends nothing: callers that can express NULL check for it first.
func (m *Masker) appendReplacement(dst, v []byte, st Strategy) []byte {
	switch st.Kind {
	case Redact:
		return append(dst, m.token...)
	case Partial:
		return appendPartial(dst, v, st.Keep)
	case Hash:
		return m.appendPseudonym(dst, v)
	}
	return dst
}

// span is a detector match b[i:j]; rule indexes Masker.dets.
type span struct {
	i, j int
	rule int
}

// findSpans appends every detector match in b to out. The census of the
// value rules most built-in detectors out before they scan;
// the number detectors share one pass over the value's digit runs
// (numberPass); a custom detector always scans.
func (m *Masker) findSpans(b []byte, out []span) []span {
	if len(b) < m.minFind {
		return out
	}
	return m.findSpansIn(b, m.candidates(b), out)
}

// candidates returns the enabled built-in detectors that may match in b.
func (m *Masker) candidates(b []byte) candSet {
	if m.builtin == 0 || len(b) < m.minFind {
		return 0
	}
	return census(b) & m.builtin
}

// findSpansIn is findSpans with the candidates known.
func (m *Masker) findSpansIn(b []byte, c candSet, out []span) []span {
	if c != 0 {
		out = m.findBuiltins(b, c, out)
	}
	for _, k := range m.custom {
		out = appendMatches(m.dets[k].d, b, k, out)
	}
	return out
}

// findBuiltins appends the matches of the built-in detectors in c.
func (m *Masker) findBuiltins(b []byte, c candSet, out []span) []span {
	if c&numberIDs != 0 {
		rules := numberRules{card: -1, ssn: -1, phone: -1, iban: -1, ipv4: -1}
		take := func(id int) int {
			if c&(1<<id) == 0 {
				return -1
			}
			c &^= 1 << id
			return m.ruleOf[id]
		}
		rules.card, rules.ssn, rules.phone, rules.iban = take(idCard), take(idSSN), take(idPhone), take(idIBAN)
		if c&candIPv6 == 0 {
			rules.ipv4 = take(idIP)
		}
		if rules != (numberRules{-1, -1, -1, -1, -1}) {
			out = numberPass(b, rules, out)
		}
	}
	// An AWS key (20 capitals and digits) and a generic secret both lie
	// in a run of minSecret or more token bytes; one look rules both out.
	const _ = uint(20 - minSecret) // (so minSecret must stay at most 20)
	if both := candSet(1<<idAWSKey | 1<<idSecret); c&both != 0 {
		if _, _, ok := nextTokenRun(b, 0, minSecret); !ok {
			c &^= both
		}
	}
	for d := c & candDetectors; d != 0; d &= d - 1 {
		id := bits.TrailingZeros32(uint32(d))
		k := m.ruleOf[id]
		if id == idIP {
			out = appendIPs(b, c, k, out)
		} else {
			out = appendMatches(m.dets[k].d, b, k, out)
		}
	}
	return out
}

// appendMatches appends the matches of d in b (rule k), each search
// starting where the last match ended.
func appendMatches(d Detector, b []byte, k int, out []span) []span {
	for pos := 0; pos < len(b); {
		i, j, ok := d.Find(b, pos)
		if !ok || i < pos || j > len(b) {
			break
		}
		if j <= i {
			pos = i + 1
			continue
		}
		out = append(out, span{i, j, k})
		pos = j
	}
	return out
}

// appendIPs is appendMatches for the IP detector in a value that may hold
// IPv6 addresses (numberPass finds IPv4 addresses in the others): a half
// the census rules out does not scan.
func appendIPs(b []byte, c candSet, k int, out []span) []span {
	v4, v6 := c&candIPv4 != 0, c&candIPv6 != 0
	for pos := 0; pos < len(b); {
		var i4, j4, i6, j6 int
		var ok4, ok6 bool
		if v4 {
			i4, j4, ok4 = findIPv4(b, pos)
		}
		if v6 {
			i6, j6, ok6 = findIPv6(b, pos)
		}
		i, j, ok := firstIP(i4, j4, ok4, i6, j6, ok6)
		if !ok {
			break
		}
		out = append(out, span{i, j, k})
		pos = j
	}
	return out
}

// mergeSpans sorts spans and merges overlapping ones in place; a merged
// span takes the strongest strategy of its parts.
func (m *Masker) mergeSpans(spans []span) []span {
	if len(spans) < 2 {
		return spans
	}
	slices.SortFunc(spans, func(a, b span) int {
		if a.i != b.i {
			return a.i - b.i
		}
		return a.rule - b.rule // deterministic: the first rule keeps a tie
	})
	out := spans[:1]
	for _, s := range spans[1:] {
		last := &out[len(out)-1]
		if s.i < last.j {
			last.j = max(last.j, s.j)
			if m.dets[s.rule].strat.stronger(m.dets[last.rule].strat) {
				last.rule = s.rule
			}
			continue
		}
		out = append(out, s)
	}
	return out
}

// countSpans adds one per distinct rule in spans (once per value).
func (m *Masker) countSpans(spans []span, counts map[string]int) {
	if counts == nil {
		return
	}
	var seen uint64
	for _, s := range spans {
		if s.rule < 64 {
			if seen&(1<<s.rule) != 0 {
				continue
			}
			seen |= 1 << s.rule
		}
		counts[m.dets[s.rule].entry]++
	}
}

// maskSpans returns b with merged spans replaced; null reports that a span
// asks for Null, which callers turn into NULL for the whole value.
func (m *Masker) maskSpans(dst, b []byte, spans []span) (out []byte, null bool) {
	pos := 0
	for _, s := range spans {
		st := m.dets[s.rule].strat
		if st.Kind == Null {
			return dst, true
		}
		dst = append(dst, b[pos:s.i]...)
		dst = m.appendReplacement(dst, b[s.i:s.j], st)
		pos = s.j
	}
	return append(dst, b[pos:]...), false
}

// ErrDetectorPanic is returned when a (custom) detector panics: the value
// it was looking at is not passed on.
var ErrDetectorPanic = errors.New("masking: a detector panicked")

// guard turns a panic in a detector into ErrDetectorPanic. The panic value
// is dropped: it may quote the value.
func guard(err *error) {
	if r := recover(); r != nil {
		*err = ErrDetectorPanic
	}
}

// MaskText masks what the detectors find in text and returns the result
// (text itself when nothing matched) with the number of values replaced
// (overlapping matches count once, as the winning entry). Matches
// whose strategy is null are removed.
func (m *Masker) MaskText(text []byte, counts map[string]int) ([]byte, int) {
	var arr [8]span
	spans := m.findSpans(text, arr[:0])
	if len(spans) == 0 {
		return text, 0
	}
	// Count what is replaced, after overlapping matches merge, as the
	// text stream does: one value found by two detectors is one.
	spans = m.mergeSpans(spans)
	n := len(spans)
	if counts != nil {
		for _, s := range spans {
			counts[m.dets[s.rule].entry]++
		}
	}
	out := make([]byte, 0, len(text)+16)
	pos := 0
	for _, s := range spans {
		out = append(out, text[pos:s.i]...)
		out = m.appendReplacement(out, text[s.i:s.j], m.dets[s.rule].strat)
		pos = s.j
	}
	return append(out, text[pos:]...), n
}
