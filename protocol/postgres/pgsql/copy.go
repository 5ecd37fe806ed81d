package pgsql

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// CopyFormat is the data format of a COPY.
type CopyFormat uint8

// COPY formats.
const (
	CopyText CopyFormat = iota
	CopyCSV
	CopyBinary
)

// CopyOut describes a COPY ... TO STDOUT statement: where its rows come
// from and how they are written, which is what masking the data stream
// needs.
type CopyOut struct {
	// Relation is the copied table as written (schema-qualified or not);
	// empty when the COPY copies a query's result.
	Relation string
	// Qualified is true when Relation names its schema.
	Qualified bool
	// Columns is the column list, empty for all columns.
	Columns []string
	// Query is the copied query's text, deparsed; empty for a relation.
	Query string

	Format    CopyFormat
	Delimiter byte
	Null      string
	Header    bool
	Quote     byte
	Escape    byte
}

// DescribeSQL returns a SELECT with the same output columns as the COPY,
// for describing them (it is prepared, never run).
func (c *CopyOut) DescribeSQL() string {
	if c.Query != "" {
		return c.Query
	}
	cols := "*"
	if len(c.Columns) > 0 {
		q := make([]string, len(c.Columns))
		for i, n := range c.Columns {
			q[i] = quoteIdent(n)
		}
		cols = strings.Join(q, ", ")
	}
	return "SELECT " + cols + " FROM ONLY " + c.Relation
}

// ParseCopyOut parses the nth statement (from 0) of sql, which must be a
// COPY ... TO STDOUT, with standard-conforming strings.
func ParseCopyOut(sql string, nth int) (*CopyOut, error) {
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return nil, fmt.Errorf("parsing the COPY statement: %w", err)
	}
	if nth < 0 || nth >= len(tree.Stmts) {
		return nil, errors.New("the COPY statement is not where the backend says it is")
	}
	cs := tree.Stmts[nth].GetStmt().GetCopyStmt()
	if cs == nil || cs.IsFrom || cs.IsProgram || cs.Filename != "" {
		return nil, errors.New("the statement is not a COPY ... TO STDOUT")
	}
	out := &CopyOut{Delimiter: '\t', Null: `\N`, Quote: '"'}
	switch {
	case cs.Relation != nil:
		rv := cs.Relation
		name := quoteIdent(rv.Relname)
		if rv.Schemaname != "" {
			name = quoteIdent(rv.Schemaname) + "." + name
			out.Qualified = true
		}
		if rv.Catalogname != "" {
			name = quoteIdent(rv.Catalogname) + "." + name
		}
		out.Relation = name
		for _, a := range cs.Attlist {
			s := a.GetString_()
			if s == nil {
				return nil, errors.New("unexpected COPY column list")
			}
			out.Columns = append(out.Columns, s.Sval)
		}
	case cs.Query != nil:
		q, err := pg_query.Deparse(&pg_query.ParseResult{Version: tree.Version, Stmts: []*pg_query.RawStmt{{Stmt: cs.Query}}})
		if err != nil {
			return nil, fmt.Errorf("deparsing the COPY query: %w", err)
		}
		out.Query = q
	default:
		return nil, errors.New("the COPY has neither a table nor a query")
	}
	csvSet := map[string]bool{}
	for _, o := range cs.Options {
		d := o.GetDefElem()
		if d == nil {
			continue
		}
		switch d.Defname {
		case "format":
			switch strings.ToLower(defString(d)) {
			case "text":
				out.Format = CopyText
			case "csv":
				out.Format = CopyCSV
			case "binary":
				out.Format = CopyBinary
			default:
				return nil, fmt.Errorf("unknown COPY format %q", defString(d))
			}
		case "delimiter", "quote", "escape":
			v := defString(d)
			if len(v) != 1 {
				return nil, fmt.Errorf("COPY %s must be a single one-byte character", d.Defname)
			}
			switch d.Defname {
			case "delimiter":
				out.Delimiter = v[0]
			case "quote":
				out.Quote = v[0]
			case "escape":
				out.Escape = v[0]
			}
			csvSet[d.Defname] = true
		case "null":
			out.Null = defString(d)
			csvSet["null"] = true
		case "header":
			out.Header = defBool(d)
		case "force_quote", "encoding", "freeze", "force_not_null", "force_null", "default", "on_error", "log_verbosity":
			// Only affect how values are quoted or read; masking
			// re-encodes by the format's rules.
		default:
			return nil, fmt.Errorf("unknown COPY option %q", d.Defname)
		}
	}
	if out.Format == CopyCSV {
		if !csvSet["delimiter"] {
			out.Delimiter = ','
		}
		if !csvSet["null"] {
			out.Null = ""
		}
		if !csvSet["escape"] {
			out.Escape = out.Quote
		}
	}
	return out, nil
}

func defString(d *pg_query.DefElem) string {
	if d.Arg == nil {
		return ""
	}
	switch {
	case d.Arg.GetString_() != nil:
		return d.Arg.GetString_().Sval
	case d.Arg.GetInteger() != nil:
		return strconv.Itoa(int(d.Arg.GetInteger().Ival))
	case d.Arg.GetBoolean() != nil:
		return strconv.FormatBool(d.Arg.GetBoolean().Boolval)
	case d.Arg.GetTypeName() != nil: // FORMAT binary parses as a type name
		names := d.Arg.GetTypeName().Names
		if len(names) > 0 && names[len(names)-1].GetString_() != nil {
			return names[len(names)-1].GetString_().Sval
		}
	}
	return ""
}

func defBool(d *pg_query.DefElem) bool {
	if d.Arg == nil {
		return true
	}
	switch strings.ToLower(defString(d)) {
	case "true", "on", "1", "match", "t", "yes":
		return true
	}
	return false
}

func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}
