package gateway

import (
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/sluicegw/sluice/masking"
	"github.com/sluicegw/sluice/policy"
)

// maxCachedMaskers bounds the compiled maskers kept; policies produce few
// distinct mask lists, so the cache is simply emptied when it fills.
const maxCachedMaskers = 256

// maskerCache keeps maskers compiled from mask entry lists, so a masker is
// compiled once per distinct list rather than once per command.
type maskerCache struct {
	mu sync.Mutex
	m  map[string]maskerResult
}

type maskerResult struct {
	m   *masking.Masker
	err error
}

func (c *maskerCache) get(entries []string, opts masking.Options, gen uint64) (*masking.Masker, error) {
	key := strconv.FormatUint(gen, 10) + "\x01" + strings.Join(entries, "\x00")
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.m[key]; ok {
		return r.m, r.err
	}
	m, err := masking.Compile(entries, opts)
	if c.m == nil || len(c.m) >= maxCachedMaskers {
		c.m = map[string]maskerResult{}
	}
	c.m[key] = maskerResult{m: m, err: err}
	return m, err
}

// masker compiles (or finds) the masker for a decision's mask entries,
// with the detectors the configuration adds and those the policy defines
// (policy.DetectorSource); a policy reload brings a new set.
func (g *Gateway) masker(entries []string) (*masking.Masker, error) {
	opts := g.cfg.Masking
	var gen uint64
	if src, ok := g.cfg.Decider.(policy.DetectorSource); ok {
		var dets []masking.Detector
		gen, dets = src.Detectors()
		if len(dets) > 0 {
			opts.Custom = append(slices.Clone(opts.Custom), dets...)
		}
	}
	return g.maskers.get(entries, opts, gen)
}
