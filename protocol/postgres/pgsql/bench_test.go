package pgsql

import (
	"testing"
)

// pgbench's statements: -S (select-only) and the TPC-B-like UPDATE.
const (
	pgbenchSelect = `SELECT abalance FROM pgbench_accounts WHERE aid = 48323;`
	pgbenchUpdate = `UPDATE pgbench_accounts SET abalance = abalance + -4265 WHERE aid = 48323;`
	joinQuery     = `SELECT u.id, u.email, o.total FROM users u JOIN orders o ON o.user_id = u.id LEFT JOIN addresses a ON a.user_id = u.id WHERE u.created_at > now() - interval '7 days' AND o.status IN ('paid', 'shipped') ORDER BY o.total DESC LIMIT 50`
)

// BenchmarkClassifyPgbench is the uncached path: parse + whole-tree walk.
func BenchmarkClassifyPgbench(b *testing.B) {
	for _, bc := range []struct{ name, sql string }{
		{"select", pgbenchSelect}, {"update", pgbenchUpdate}, {"join190", joinQuery},
	} {
		b.Run(bc.name, func(b *testing.B) {
			o := DefaultOptions()
			b.ReportAllocs()
			for b.Loop() {
				if s := Classify(bc.sql, o); s.ParseError != "" {
					b.Fatal(s.ParseError)
				}
			}
		})
	}
}

// BenchmarkClassifyCached is the hot path: a cache hit, copied out.
func BenchmarkClassifyCached(b *testing.B) {
	for _, bc := range []struct{ name, sql string }{
		{"select", pgbenchSelect}, {"update", pgbenchUpdate},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := NewClassifier(1024)
			o := DefaultOptions()
			c.Classify(bc.sql, o)
			b.ReportAllocs()
			for b.Loop() {
				c.Classify(bc.sql, o)
			}
		})
	}
}

// BenchmarkClassifyParallel: uncached, from every core.
func BenchmarkClassifyParallel(b *testing.B) {
	o := DefaultOptions()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			Classify(pgbenchUpdate, o)
		}
	})
}
