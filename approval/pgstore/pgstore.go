// Package pgstore keeps approval requests in PostgreSQL, for several
// gateways sharing work: a decision made through one gateway wakes the
// command waiting in another. Its central type is Store.
//
// Updates lock the request row (SELECT ... FOR UPDATE) so that votes cast
// through different gateways at once are applied one after the other;
// every write sends NOTIFY sluice_approval with the request ID, which each
// Store LISTENs for on a connection of its own. The schema (tables
// prefixed sluice_approval_) is created when absent.
package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluicegw/sluice/approval"
	"github.com/sluicegw/sluice/approval/internal/storesql"
)

// Channel is the NOTIFY channel carrying the IDs of changed requests.
const Channel = "sluice_approval"

// Config configures a Store.
type Config struct {
	// ConnString is a libpq-style or URL connection string. The store
	// opens a pool from it and one more connection that LISTENs.
	ConnString string
	// MaxConns caps the pool; 0 takes pgxpool's default.
	MaxConns int32
	// ReconnectDelay is the longest pause between attempts to re-establish
	// the LISTEN connection; 5s.
	ReconnectDelay time.Duration
	Logger         *slog.Logger
}

// Validate reports the first bad field.
func (c *Config) Validate() error {
	if c.ConnString == "" {
		return errors.New("pgstore: Config.ConnString: required")
	}
	if c.MaxConns < 0 || c.ReconnectDelay < 0 {
		return errors.New("pgstore: Config.MaxConns, ReconnectDelay: must not be negative")
	}
	return nil
}

// Store is an approval.Store in PostgreSQL.
type Store struct {
	pool *pgxpool.Pool
	cfg  Config
	log  *slog.Logger

	mu       sync.Mutex
	watchers map[int]func(string)
	nextW    int

	cancel context.CancelFunc
	done   chan struct{}
}

var _ approval.Store = (*Store)(nil)

// Open connects, creates the schema when absent and starts listening.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.ReconnectDelay == 0 {
		cfg.ReconnectDelay = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	pc, err := pgxpool.ParseConfig(cfg.ConnString)
	if err != nil {
		return nil, fmt.Errorf("pgstore: connection string: %w", err)
	}
	if cfg.MaxConns > 0 {
		pc.MaxConns = cfg.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("pgstore: connect: %w", err)
	}
	s := &Store{
		pool:     pool,
		cfg:      cfg,
		log:      cfg.Logger.With("component", "approval-pg"),
		watchers: map[int]func(string){},
		done:     make(chan struct{}),
	}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	// Listen before returning, so no change made after Open is missed.
	lc, err := s.listenConn(ctx)
	if err != nil {
		pool.Close()
		return nil, err
	}
	bg, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.listen(bg, lc)
	return s, nil
}

// schema: times are timestamptz; body is the whole request as jsonb, the
// indexed columns copy what List filters on.
var schema = []string{
	`CREATE TABLE IF NOT EXISTS ` + storesql.SchemaTable + ` (version integer NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS ` + storesql.Table + ` (
		id                text PRIMARY KEY,
		state             text NOT NULL,
		gateway_id        text NOT NULL,
		session_id        text NOT NULL,
		requester_subject text NOT NULL,
		target            text NOT NULL,
		grant_key         text NOT NULL,
		created_at        timestamptz NOT NULL,
		expires_at        timestamptz NOT NULL,
		resolved_at       timestamptz,
		grant_until       timestamptz,
		body              jsonb NOT NULL
	)`,
	`CREATE INDEX IF NOT EXISTS sluice_approval_requests_state ON ` + storesql.Table + ` (state, expires_at)`,
	`CREATE INDEX IF NOT EXISTS sluice_approval_requests_gateway ON ` + storesql.Table + ` (gateway_id, state)`,
	`CREATE INDEX IF NOT EXISTS sluice_approval_requests_grant ON ` + storesql.Table + ` (grant_key, grant_until)`,
}

func (s *Store) migrate(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Gateways starting together would race on CREATE ... IF NOT EXISTS.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('sluice_approval_schema'))"); err != nil {
			return err
		}
		for _, q := range schema {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		var v int
		err := tx.QueryRow(ctx, "SELECT version FROM "+storesql.SchemaTable).Scan(&v)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			_, err = tx.Exec(ctx, "INSERT INTO "+storesql.SchemaTable+" (version) VALUES ($1)", storesql.Version)
			return err
		case err != nil:
			return err
		case v > storesql.Version:
			return fmt.Errorf("schema version %d is newer than this sluice knows (%d): upgrade sluice", v, storesql.Version)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pgstore: create schema: %w", err)
	}
	return nil
}

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// Create implements approval.Store.
func (s *Store) Create(ctx context.Context, r *approval.Request) error {
	if err := storesql.Check(r); err != nil {
		return err
	}
	body, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("pgstore: encode request: %w", err)
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO `+storesql.Table+` (id, state, gateway_id, session_id, requester_subject,
			target, grant_key, created_at, expires_at, resolved_at, grant_until, body)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
			r.ID, string(r.State), r.GatewayID, r.SessionID, r.Requester.Subject, r.Target.Name, r.GrantKey,
			r.CreatedAt, r.ExpiresAt, nullTime(r.ResolvedAt), nullTime(r.GrantUntil), body)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "SELECT pg_notify($1, $2)", Channel, r.ID)
		return err
	})
	if err != nil {
		return fmt.Errorf("pgstore: create request %s: %w", r.ID, err)
	}
	return nil
}

func decode(body []byte) (*approval.Request, error) {
	var r approval.Request
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("pgstore: decode request: %w", err)
	}
	return &r, nil
}

// Get implements approval.Store.
func (s *Store) Get(ctx context.Context, id string) (*approval.Request, error) {
	var body []byte
	err := s.pool.QueryRow(ctx, "SELECT body FROM "+storesql.Table+" WHERE id = $1", id).Scan(&body)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", approval.ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("pgstore: get request %s: %w", id, err)
	}
	return decode(body)
}

// List implements approval.Store.
func (s *Store) List(ctx context.Context, f approval.Filter) ([]*approval.Request, error) {
	where, args := storesql.Where(f, func(n int) string { return fmt.Sprintf("$%d", n) }, func(t time.Time) any { return t })
	rows, err := s.pool.Query(ctx, "SELECT body FROM "+storesql.Table+where, args...)
	if err != nil {
		return nil, fmt.Errorf("pgstore: list requests: %w", err)
	}
	bodies, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, fmt.Errorf("pgstore: list requests: %w", err)
	}
	out := make([]*approval.Request, 0, len(bodies))
	for _, b := range bodies {
		r, err := decode(b)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Update implements approval.Store. The row lock taken by SELECT ... FOR
// UPDATE makes concurrent updates through any gateway apply one at a time.
func (s *Store) Update(ctx context.Context, id string, fn func(*approval.Request) error) (*approval.Request, error) {
	var (
		r    *approval.Request
		ferr error
	)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var body []byte
		err := tx.QueryRow(ctx, "SELECT body FROM "+storesql.Table+" WHERE id = $1 FOR UPDATE", id).Scan(&body)
		if errors.Is(err, pgx.ErrNoRows) {
			ferr = fmt.Errorf("%w: %s", approval.ErrNotFound, id)
			return ferr
		}
		if err != nil {
			return err
		}
		if r, err = decode(body); err != nil {
			return err
		}
		if ferr = fn(r); ferr != nil {
			return ferr
		}
		nb, err := json.Marshal(r)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE `+storesql.Table+` SET state = $1, resolved_at = $2, grant_until = $3,
			expires_at = $4, body = $5 WHERE id = $6`,
			string(r.State), nullTime(r.ResolvedAt), nullTime(r.GrantUntil), r.ExpiresAt, nb, id); err != nil {
			return err
		}
		// Delivered to every listener when the transaction commits.
		_, err = tx.Exec(ctx, "SELECT pg_notify($1, $2)", Channel, id)
		return err
	})
	if ferr != nil {
		return nil, ferr
	}
	if err != nil {
		return nil, fmt.Errorf("pgstore: update request %s: %w", id, err)
	}
	return r, nil
}

// Watch implements approval.Store.
func (s *Store) Watch(fn func(id string)) (stop func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nextW
	s.nextW++
	s.watchers[n] = fn
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.watchers, n)
	}
}

func (s *Store) emit(id string) {
	s.mu.Lock()
	fns := make([]func(string), 0, len(s.watchers))
	for _, fn := range s.watchers {
		fns = append(fns, fn)
	}
	s.mu.Unlock()
	for _, fn := range fns {
		fn(id)
	}
}

func (s *Store) listenConn(ctx context.Context) (*pgx.Conn, error) {
	c, err := pgx.Connect(ctx, s.cfg.ConnString)
	if err != nil {
		return nil, fmt.Errorf("pgstore: listen connection: %w", err)
	}
	if _, err := c.Exec(ctx, "LISTEN "+Channel); err != nil {
		c.Close(context.Background())
		return nil, fmt.Errorf("pgstore: LISTEN %s: %w", Channel, err)
	}
	return c, nil
}

// listen relays notifications to the watchers, reconnecting when the
// connection drops; after a reconnection it emits "" since notifications
// sent meanwhile are lost.
func (s *Store) listen(ctx context.Context, c *pgx.Conn) {
	defer close(s.done)
	delay := 100 * time.Millisecond
	for {
		for c != nil {
			n, err := c.WaitForNotification(ctx)
			if err != nil {
				c.Close(context.Background())
				c = nil
				if ctx.Err() != nil {
					return
				}
				s.log.Warn("pgstore: LISTEN connection lost; reconnecting", "err", err)
				break
			}
			s.emit(n.Payload)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		var err error
		if c, err = s.listenConn(ctx); err != nil {
			delay = min(2*delay, s.cfg.ReconnectDelay)
			continue
		}
		delay = 100 * time.Millisecond
		s.emit("")
	}
}

// Close implements approval.Store.
func (s *Store) Close() error {
	s.cancel()
	<-s.done
	s.pool.Close()
	return nil
}
