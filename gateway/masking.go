package gateway

import (
	"strings"
	"sync"

	"github.com/sluicegw/sluice/masking"
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

func (c *maskerCache) get(entries []string, opts masking.Options) (*masking.Masker, error) {
	key := strings.Join(entries, "\x00")
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
