package pgsql

/*
#include <stdlib.h>
#include <stddef.h>
#include <string.h>

// These declarations mirror libpg_query's public header (pg_query.h) as
// vendored by github.com/pganalyze/pg_query_go/v6, whose parser package
// compiles and links the C library; it is imported below for that reason.
// The Go wrapper does not expose the *_opts entry points, which are the only
// way to lex with standard_conforming_strings or backslash_quote off.
typedef struct {
	char* message;
	char* funcname;
	char* filename;
	int lineno;
	int cursorpos;
	char* context;
} PgQueryError;

typedef struct {
	char* parse_tree;
	char* stderr_buffer;
	PgQueryError* error;
} PgQueryParseResult;

PgQueryParseResult pg_query_parse_opts(const char* input, int parser_options);
void pg_query_free_parse_result(PgQueryParseResult result);

// Parser option bits from pg_query.h.
enum {
	SLUICE_PG_QUERY_DISABLE_BACKSLASH_QUOTE = 16,
	SLUICE_PG_QUERY_DISABLE_STANDARD_CONFORMING_STRINGS = 32,
	SLUICE_PG_QUERY_DISABLE_ESCAPE_STRING_WARNING = 64,
};
*/
import "C"

import (
	"strings"
	"sync"
	"unsafe"

	// The parser package builds and links libpg_query (PostgreSQL 17's
	// raw parser); parse calls into it directly.
	_ "github.com/pganalyze/pg_query_go/v6/parser"
)

// parserOptions turns the session settings into libpg_query parser options.
func parserOptions(o Options) C.int {
	opts := C.int(C.SLUICE_PG_QUERY_DISABLE_ESCAPE_STRING_WARNING)
	if !o.StandardConformingStrings {
		opts |= C.SLUICE_PG_QUERY_DISABLE_STANDARD_CONFORMING_STRINGS
	}
	if strings.EqualFold(o.BackslashQuote, "off") || strings.EqualFold(o.BackslashQuote, "false") ||
		strings.EqualFold(o.BackslashQuote, "no") || o.BackslashQuote == "0" {
		opts |= C.SLUICE_PG_QUERY_DISABLE_BACKSLASH_QUOTE
	}
	return opts
}

// bqOffBit is the parser option bit for backslash_quote = off.
const bqOffBit = C.SLUICE_PG_QUERY_DISABLE_BACKSLASH_QUOTE

// inputBufs recycles the NUL-terminated copies of query texts handed to C.
var inputBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// parseError is the parser's own error message.
type parseError string

func (e parseError) Error() string { return string(e) }

// parse runs PostgreSQL's raw parser (lexer included) over sql with the
// session's lexing settings and hands the parse tree, as libpg_query's JSON
// (the JSON form of pg_query.ParseResult), to fn. The JSON is only valid
// during fn: it lives in C memory that is freed when parse returns.
//
// JSON rather than protobuf: libpg_query builds the protobuf form through
// protobuf-c's per-node allocations, which measured here at 2-3x the cost of
// the whole JSON parse (8.4 µs against 3.3 µs for the pgbench SELECT).
//
// The caller has rejected texts containing NUL; the server reads a simple
// Query message only up to the first NUL, and so does C.
func parse(sql string, o Options, fn func(tree []byte)) error {
	bp := inputBufs.Get().(*[]byte)
	buf := append(append((*bp)[:0], sql...), 0)
	r := C.pg_query_parse_opts((*C.char)(unsafe.Pointer(&buf[0])), parserOptions(o))
	*bp = buf[:0]
	if cap(buf) <= 64<<10 {
		inputBufs.Put(bp)
	}
	defer C.pg_query_free_parse_result(r)
	if r.error != nil {
		msg := "syntax error"
		if r.error.message != nil {
			msg = C.GoString(r.error.message)
		}
		return parseError(msg)
	}
	var tree []byte
	if r.parse_tree != nil {
		tree = unsafe.Slice((*byte)(unsafe.Pointer(r.parse_tree)), int(C.strlen(r.parse_tree)))
	}
	fn(tree)
	return nil
}
