// Package sqlitestore keeps approval requests in an SQLite file under the
// gateway's data directory: the embedded default approval.Store. Its
// central type is Store.
//
// It uses modernc.org/sqlite (pure Go, no cgo) in WAL mode with a busy
// timeout. Writes run in BEGIN IMMEDIATE transactions, so votes are
// serialized across every process sharing the file; Watch sees changes
// made in this process at once and those of other processes (a CLI, a
// second gateway on the same host) within Config.PollInterval.
package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/sluicegw/sluice/approval"
	"github.com/sluicegw/sluice/approval/internal/storesql"
)

// DefaultFile is the store's file name in the data directory.
const DefaultFile = "approvals.db"

// Config configures a Store.
type Config struct {
	// Path is the database file; its directory is created (0700) when
	// missing. Use filepath.Join(dataDir, DefaultFile).
	Path string
	// BusyTimeout is how long a write waits for another process's write
	// to finish; 5s.
	BusyTimeout time.Duration
	// PollInterval is how often the store looks for changes made by other
	// processes sharing the file; 1s. Negative: never (only this process
	// writes).
	PollInterval time.Duration
	// MaxOpenConns caps the connections (readers run concurrently in WAL
	// mode); 8.
	MaxOpenConns int
	Logger       *slog.Logger
}

// Validate reports the first bad field.
func (c *Config) Validate() error {
	switch {
	case c.Path == "":
		return errors.New("sqlitestore: Config.Path: required (e.g. <data dir>/" + DefaultFile + ")")
	case c.BusyTimeout < 0:
		return errors.New("sqlitestore: Config.BusyTimeout: negative")
	case c.MaxOpenConns < 0:
		return errors.New("sqlitestore: Config.MaxOpenConns: negative")
	}
	return nil
}

// Store is an approval.Store in an SQLite file.
type Store struct {
	db   *sql.DB
	log  *slog.Logger
	wsem chan struct{} // serializes this process's writes; BEGIN IMMEDIATE does it across processes

	mu       sync.Mutex
	watchers map[int]func(string)
	nextW    int
	lastSeq  int64 // highest change seen, by this process's writes (when contiguous) or the poller

	cancel context.CancelFunc
	done   chan struct{}
}

var _ approval.Store = (*Store)(nil)

// Open opens (creating when absent) the store at cfg.Path.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.BusyTimeout == 0 {
		cfg.BusyTimeout = 5 * time.Second
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.MaxOpenConns == 0 {
		cfg.MaxOpenConns = 8
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o700); err != nil {
		return nil, fmt.Errorf("sqlitestore: create data directory: %w", err)
	}
	// Requests hold the commands people ran: keep the file private.
	f, err := os.OpenFile(cfg.Path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: open %s: %w", cfg.Path, err)
	}
	f.Close()
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", cfg.BusyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	dsn := "file:" + (&url.URL{Path: cfg.Path}).EscapedPath() + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: open %s: %w", cfg.Path, err)
	}
	db.SetMaxOpenConns(cfg.MaxOpenConns)
	db.SetMaxIdleConns(cfg.MaxOpenConns)
	s := &Store{
		db:       db,
		log:      cfg.Logger.With("component", "approval-sqlite"),
		wsem:     make(chan struct{}, 1),
		watchers: map[int]func(string){},
		done:     make(chan struct{}),
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlitestore: %s: %w", cfg.Path, err)
	}
	if err := db.QueryRowContext(ctx, "SELECT COALESCE(MAX(seq), 0) FROM "+storesql.Table).Scan(&s.lastSeq); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlitestore: %s: %w", cfg.Path, err)
	}
	bg, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	if cfg.PollInterval > 0 {
		go s.poll(bg, cfg.PollInterval)
	} else {
		close(s.done)
	}
	return s, nil
}

// schema is the store's schema. Times are Unix microseconds (UTC), 0 for
// none; body is the whole request as JSON, the indexed columns copy what
// List filters on; seq orders changes for other processes' pollers.
var schema = []string{
	`CREATE TABLE IF NOT EXISTS ` + storesql.SchemaTable + ` (version INTEGER NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS ` + storesql.Table + ` (
		id                TEXT PRIMARY KEY,
		seq               INTEGER NOT NULL,
		state             TEXT NOT NULL,
		gateway_id        TEXT NOT NULL,
		session_id        TEXT NOT NULL,
		requester_subject TEXT NOT NULL,
		target            TEXT NOT NULL,
		grant_key         TEXT NOT NULL,
		created_at        INTEGER NOT NULL,
		expires_at        INTEGER NOT NULL,
		resolved_at       INTEGER NOT NULL DEFAULT 0,
		grant_until       INTEGER NOT NULL DEFAULT 0,
		body              TEXT NOT NULL
	)`,
	`CREATE UNIQUE INDEX IF NOT EXISTS sluice_approval_requests_seq ON ` + storesql.Table + ` (seq)`,
	`CREATE INDEX IF NOT EXISTS sluice_approval_requests_state ON ` + storesql.Table + ` (state, expires_at)`,
	`CREATE INDEX IF NOT EXISTS sluice_approval_requests_gateway ON ` + storesql.Table + ` (gateway_id, state)`,
	`CREATE INDEX IF NOT EXISTS sluice_approval_requests_grant ON ` + storesql.Table + ` (grant_key, grant_until)`,
}

func (s *Store) migrate(ctx context.Context) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		for _, q := range schema {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("create schema: %w", err)
			}
		}
		var v int
		err := tx.QueryRowContext(ctx, "SELECT version FROM "+storesql.SchemaTable).Scan(&v)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			_, err = tx.ExecContext(ctx, "INSERT INTO "+storesql.SchemaTable+" (version) VALUES (?)", storesql.Version)
			return err
		case err != nil:
			return err
		case v > storesql.Version:
			return fmt.Errorf("schema version %d is newer than this sluice knows (%d): upgrade sluice", v, storesql.Version)
		}
		return nil
	})
}

// write runs fn in a BEGIN IMMEDIATE transaction, one at a time in this
// process.
func (s *Store) write(ctx context.Context, fn func(*sql.Tx) error) error {
	select {
	case s.wsem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.wsem }()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func nextSeq(ctx context.Context, tx *sql.Tx) (int64, error) {
	var seq int64
	err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(seq), 0) + 1 FROM "+storesql.Table).Scan(&seq)
	return seq, err
}

// Create implements approval.Store.
func (s *Store) Create(ctx context.Context, r *approval.Request) error {
	if err := storesql.Check(r); err != nil {
		return err
	}
	body, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("sqlitestore: encode request: %w", err)
	}
	var seq int64
	err = s.write(ctx, func(tx *sql.Tx) error {
		if seq, err = nextSeq(ctx, tx); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO `+storesql.Table+` (id, seq, state, gateway_id, session_id,
			requester_subject, target, grant_key, created_at, expires_at, resolved_at, grant_until, body)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.ID, seq, string(r.State), r.GatewayID, r.SessionID, r.Requester.Subject, r.Target.Name, r.GrantKey,
			micros(r.CreatedAt), micros(r.ExpiresAt), micros(r.ResolvedAt), micros(r.GrantUntil), string(body))
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlitestore: create request %s: %w", r.ID, err)
	}
	s.changed(r.ID, seq)
	return nil
}

func decode(body string) (*approval.Request, error) {
	var r approval.Request
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		return nil, fmt.Errorf("sqlitestore: decode request: %w", err)
	}
	return &r, nil
}

// Get implements approval.Store.
func (s *Store) Get(ctx context.Context, id string) (*approval.Request, error) {
	var body string
	err := s.db.QueryRowContext(ctx, "SELECT body FROM "+storesql.Table+" WHERE id = ?", id).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", approval.ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: get request %s: %w", id, err)
	}
	return decode(body)
}

// List implements approval.Store.
func (s *Store) List(ctx context.Context, f approval.Filter) ([]*approval.Request, error) {
	where, args := storesql.Where(f, func(int) string { return "?" }, func(t time.Time) any { return micros(t) })
	rows, err := s.db.QueryContext(ctx, "SELECT body FROM "+storesql.Table+where, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: list requests: %w", err)
	}
	defer rows.Close()
	var out []*approval.Request
	for rows.Next() {
		var body string
		if err := rows.Scan(&body); err != nil {
			return nil, fmt.Errorf("sqlitestore: list requests: %w", err)
		}
		r, err := decode(body)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlitestore: list requests: %w", err)
	}
	return out, nil
}

// Update implements approval.Store.
func (s *Store) Update(ctx context.Context, id string, fn func(*approval.Request) error) (*approval.Request, error) {
	var (
		r    *approval.Request
		seq  int64
		ferr error
	)
	err := s.write(ctx, func(tx *sql.Tx) error {
		var body string
		err := tx.QueryRowContext(ctx, "SELECT body FROM "+storesql.Table+" WHERE id = ?", id).Scan(&body)
		if errors.Is(err, sql.ErrNoRows) {
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
		if seq, err = nextSeq(ctx, tx); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE `+storesql.Table+` SET seq = ?, state = ?, resolved_at = ?, grant_until = ?,
			expires_at = ?, body = ? WHERE id = ?`,
			seq, string(r.State), micros(r.ResolvedAt), micros(r.GrantUntil), micros(r.ExpiresAt), string(nb), id)
		return err
	})
	if ferr != nil {
		return nil, ferr
	}
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: update request %s: %w", id, err)
	}
	s.changed(id, seq)
	return r, nil
}

// changed tells the watchers about a write of this process.
func (s *Store) changed(id string, seq int64) {
	s.mu.Lock()
	if seq == s.lastSeq+1 {
		s.lastSeq = seq // the poller need not report it again
	}
	fns := s.fns()
	s.mu.Unlock()
	for _, fn := range fns {
		fn(id)
	}
}

func (s *Store) fns() []func(string) {
	fns := make([]func(string), 0, len(s.watchers))
	for _, fn := range s.watchers {
		fns = append(fns, fn)
	}
	return fns
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

// poll reports changes made by other processes: every write bumps seq.
func (s *Store) poll(ctx context.Context, every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	failed := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		after := s.lastSeq
		s.mu.Unlock()
		ids, last, err := s.changesAfter(ctx, after)
		if err != nil {
			if ctx.Err() == nil && !failed {
				s.log.Warn("sqlitestore: look for changes by other processes", "err", err)
			}
			failed = true
			continue
		}
		if failed {
			ids = []string{""} // we may have missed some: re-check everything
			failed = false
		}
		s.mu.Lock()
		if last > s.lastSeq {
			s.lastSeq = last
		}
		fns := s.fns()
		s.mu.Unlock()
		for _, id := range ids {
			for _, fn := range fns {
				fn(id)
			}
		}
	}
}

func (s *Store) changesAfter(ctx context.Context, after int64) ([]string, int64, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT id, seq FROM "+storesql.Table+" WHERE seq > ? ORDER BY seq LIMIT 1001", after)
	if err != nil {
		return nil, after, err
	}
	defer rows.Close()
	var ids []string
	last := after
	for rows.Next() {
		var id string
		if err := rows.Scan(&id, &last); err != nil {
			return nil, after, err
		}
		ids = append(ids, id)
	}
	if len(ids) > 1000 { // too many to name: re-check everything
		ids = []string{""}
		err = s.db.QueryRowContext(ctx, "SELECT COALESCE(MAX(seq), 0) FROM "+storesql.Table).Scan(&last)
	}
	if err == nil {
		err = rows.Err()
	}
	return ids, last, err
}

// Close implements approval.Store.
func (s *Store) Close() error {
	s.cancel()
	<-s.done
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("sqlitestore: close: %w", err)
	}
	return nil
}
