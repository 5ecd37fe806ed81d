package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sluicegw/sluice/protocol"
)

// sourceColumn is where a result column comes from: RowDescription gives
// a table OID and attribute number for a plain column reference (also
// when aliased); the catalog gives their names.
type sourceColumn struct {
	table  string // schema.table
	column string // attname
}

type sourceKey struct {
	database string
	table    uint32
	attnum   uint16
}

// catalog caches source columns per database, so that masking rules
// written against tables and columns apply whatever the query calls them.
// Entries expire, since an OID can be reused after a table is dropped.
type catalog struct {
	mu      sync.Mutex
	entries map[sourceKey]catalogEntry

	// lookups admits one catalog query at a time per target: sessions
	// that miss the cache together (many agents starting the same query)
	// wait for the first one's answer instead of each opening a
	// connection of its own, which at the backend's max_connections
	// fails their masking (found by test/e2e TestLoadMixedSessions).
	lookupsOnce sync.Once
	lookups     chan struct{}
}

// lookupSlot is the one-slot semaphore of catalog queries.
func (c *catalog) lookupSlot() chan struct{} {
	c.lookupsOnce.Do(func() { c.lookups = make(chan struct{}, 1) })
	return c.lookups
}

// cached fills out from the cache and returns the keys it lacks.
func (c *catalog) cached(database string, fields []pgproto3.FieldDescription, out []sourceColumn, now time.Time) []sourceKey {
	var missing []sourceKey
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, f := range fields {
		if f.TableOID == 0 || f.TableAttributeNumber == 0 {
			continue
		}
		k := sourceKey{database, f.TableOID, f.TableAttributeNumber}
		if e, ok := c.entries[k]; ok && now.Sub(e.at) < catalogTTL {
			out[i] = e.src
		} else {
			missing = append(missing, k)
		}
	}
	return missing
}

type catalogEntry struct {
	src sourceColumn
	at  time.Time
}

const (
	catalogTTL     = 5 * time.Minute
	catalogMaxSize = 100000
)

// sources resolves the RowDescription fields that reference a table
// column, querying the backend's catalog (with the gateway's credential,
// on a short-lived connection) for those not cached. Fields that are not
// plain column references get the zero sourceColumn.
func (p *Plugin) sources(ctx context.Context, s protocol.Session, database string, fields []pgproto3.FieldDescription) ([]sourceColumn, error) {
	out := make([]sourceColumn, len(fields))
	now := time.Now()
	missing := p.catalog.cached(database, fields, out, now)
	if len(missing) == 0 {
		return out, nil
	}
	slot := p.catalog.lookupSlot()
	select {
	case slot <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("postgres: waiting for a catalog lookup: %w", ctx.Err())
	}
	defer func() { <-slot }()
	// The lookup this one waited for may have brought what it needs.
	if missing = p.catalog.cached(database, fields, out, now); len(missing) == 0 {
		return out, nil
	}
	found, err := p.queryCatalog(ctx, s, database, missing)
	if err != nil {
		return nil, err
	}
	p.catalog.mu.Lock()
	if p.catalog.entries == nil || len(p.catalog.entries) > catalogMaxSize {
		p.catalog.entries = map[sourceKey]catalogEntry{}
	}
	for k, src := range found {
		p.catalog.entries[k] = catalogEntry{src: src, at: now}
	}
	p.catalog.mu.Unlock()
	for i, f := range fields {
		if src, ok := found[sourceKey{database, f.TableOID, f.TableAttributeNumber}]; ok {
			out[i] = src
		}
	}
	return out, nil
}

func (p *Plugin) queryCatalog(ctx context.Context, s protocol.Session, database string, keys []sourceKey) (map[sourceKey]sourceColumn, error) {
	cred, err := s.Credential(ctx)
	if err != nil {
		return nil, err
	}
	cfg, err := p.backendConfig(cred, database)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: catalog connection: %s", redact(err.Error(), cred.Password.Reveal()))
	}
	defer pc.Close(context.Background())
	rels := make([]string, len(keys))
	atts := make([]string, len(keys))
	for i, k := range keys {
		rels[i] = strconv.FormatUint(uint64(k.table), 10)
		atts[i] = strconv.FormatUint(uint64(k.attnum), 10)
	}
	const q = `SELECT a.attrelid::int8, a.attnum::int4, n.nspname, c.relname, a.attname
FROM unnest($1::oid[], $2::int2[]) AS k(rel, att)
JOIN pg_catalog.pg_attribute a ON a.attrelid = k.rel AND a.attnum = k.att
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace`
	res := pc.ExecParams(ctx, q, [][]byte{[]byte("{" + strings.Join(rels, ",") + "}"), []byte("{" + strings.Join(atts, ",") + "}")}, nil, nil, nil).Read()
	if res.Err != nil {
		return nil, fmt.Errorf("postgres: catalog query: %w", res.Err)
	}
	out := make(map[sourceKey]sourceColumn, len(res.Rows))
	for _, row := range res.Rows {
		rel, err1 := strconv.ParseUint(string(row[0]), 10, 32)
		att, err2 := strconv.ParseUint(string(row[1]), 10, 16)
		if err1 != nil || err2 != nil {
			continue
		}
		out[sourceKey{database, uint32(rel), uint16(att)}] = sourceColumn{table: string(row[2]) + "." + string(row[3]), column: string(row[4])}
	}
	return out, nil
}
