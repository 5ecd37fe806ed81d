package pgsql

/*
#include <stdlib.h>
#include <stddef.h>
typedef struct { char* message; char* funcname; char* filename; int lineno; int cursorpos; char* context; } PgQueryError;
typedef struct { size_t len; char* data; } PgQueryProtobuf;
typedef struct { PgQueryProtobuf parse_tree; char* stderr_buffer; PgQueryError* error; } PgQueryProtobufParseResult;
PgQueryProtobufParseResult pg_query_parse_protobuf_opts(const char* input, int parser_options);
void pg_query_free_protobuf_parse_result(PgQueryProtobufParseResult result);
*/
import "C"

import (
	"unsafe"

	_ "github.com/pganalyze/pg_query_go/v6/parser"
)

func rawParse(sql string, opts int) (int, string) {
	cs := C.CString(sql)
	defer C.free(unsafe.Pointer(cs))
	r := C.pg_query_parse_protobuf_opts(cs, C.int(opts))
	defer C.pg_query_free_protobuf_parse_result(r)
	if r.error != nil {
		return -1, C.GoString(r.error.message)
	}
	return int(r.parse_tree.len), ""
}
