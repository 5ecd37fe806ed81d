package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sluicegw/sluice/masking"
	"github.com/sluicegw/sluice/protocol"
	"github.com/sluicegw/sluice/protocol/postgres/pgsql"
)

// copyOut is the state of one COPY ... TO STDOUT being relayed: how its
// rows are written, and (when masking) what its columns are.
type copyOut struct {
	spec   *pgsql.CopyOut
	header bool // a header row is still to come
	bin    binaryCopy
	mcols  []masking.Column
	vals   [][]byte
	tuples [][][]byte
	out    []byte
}

// startCopyOut prepares a result for the rows of a COPY TO STDOUT that the
// backend has just announced. Recording wants the rows, masking needs the
// columns; when masking is on and the columns cannot be known for sure, the
// COPY's data is withheld and it ends in an error.
func (r *relay) startCopyOut(ctx context.Context, res *result, body []byte) {
	var cr pgproto3.CopyOutResponse
	if err := cr.Decode(body); err != nil {
		res.maskErr = fmt.Errorf("malformed CopyOutResponse: %w", err)
		return
	}
	spec, err := r.copySpec(res)
	if err != nil {
		if res.masker != nil {
			res.maskErr = safeReason("COPY TO STDOUT: " + err.Error())
		}
		return // no masking needed: the data is relayed as it is
	}
	if (spec.Format == pgsql.CopyBinary) != (cr.OverallFormat == 1) {
		if res.masker != nil {
			res.maskErr = errors.New("the COPY's format is not the one its statement asked for")
		}
		return
	}
	cp := &copyOut{spec: spec, header: spec.Header && spec.Format != pgsql.CopyBinary}
	if res.masker != nil {
		cols, err := r.copyColumns(ctx, spec, len(cr.ColumnFormatCodes))
		if err != nil {
			res.maskErr = safeReason("COPY TO STDOUT: " + err.Error())
			return
		}
		cp.mcols = cols
	}
	res.copy = cp
	res.cols = nil
	res.formats = make([]int16, len(cr.ColumnFormatCodes))
	if spec.Format == pgsql.CopyBinary {
		for i := range res.formats {
			res.formats[i] = 1
		}
	}
}

// safeReason is a masking failure whose text may be shown to the client:
// it names why the gateway could not mask, never a value.
type safeReason string

func (s safeReason) Error() string { return string(s) }

// copySpec parses the COPY statement that produced res.
func (r *relay) copySpec(res *result) (*pgsql.CopyOut, error) {
	if res.text == "" {
		return nil, errors.New("the COPY statement is unknown")
	}
	r.mu.Lock()
	scs := r.serverParam["standard_conforming_strings"] != "off"
	r.mu.Unlock()
	if !scs && strings.IndexByte(res.text, '\\') >= 0 {
		return nil, errors.New("the COPY statement cannot be read reliably with standard_conforming_strings off")
	}
	return pgsql.ParseCopyOut(res.text, res.nth)
}

// copyColumns describes the COPY's columns on a catalog connection: names
// resolved to their source table and column, types from the description.
// Unqualified names resolve through the search path, which a session can
// change; after it has, the description could be of other tables, so the
// COPY is refused instead.
func (r *relay) copyColumns(ctx context.Context, spec *pgsql.CopyOut, n int) ([]masking.Column, error) {
	if r.searchPathChanged.Load() {
		return nil, errors.New("the session changed its search_path, so the copied columns cannot be resolved reliably; use SELECT")
	}
	fields, err := r.p.describe(ctx, r.s, r.database, spec.DescribeSQL())
	if err != nil {
		return nil, err
	}
	if len(fields) != n {
		return nil, fmt.Errorf("the backend copies %d columns but the statement describes %d", n, len(fields))
	}
	srcs, err := r.p.sources(ctx, r.s, r.database, fields)
	if err != nil {
		return nil, fmt.Errorf("resolving the copied columns: %w", err)
	}
	cols := make([]masking.Column, n)
	for i, f := range fields {
		cols[i] = masking.Column{Name: string(f.Name), TypeOID: f.DataTypeOID, Binary: spec.Format == pgsql.CopyBinary}
		if srcs[i].column != "" {
			cols[i].Name, cols[i].Table = srcs[i].column, srcs[i].table
		}
	}
	return cols, nil
}

// describe prepares sql (without running it) on a short-lived catalog
// connection and returns its result columns.
func (p *Plugin) describe(ctx context.Context, s protocol.Session, database, sql string) ([]pgproto3.FieldDescription, error) {
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
		return nil, fmt.Errorf("catalog connection: %s", redact(err.Error(), cred.Password.Reveal()))
	}
	defer pc.Close(context.Background())
	sd, err := pc.Prepare(ctx, "", sql, nil)
	if err != nil {
		return nil, fmt.Errorf("describing the copied columns: %w", err)
	}
	out := make([]pgproto3.FieldDescription, len(sd.Fields))
	for i, f := range sd.Fields {
		out[i] = pgproto3.FieldDescription{Name: []byte(f.Name), TableOID: f.TableOID, TableAttributeNumber: f.TableAttributeNumber,
			DataTypeOID: f.DataTypeOID, DataTypeSize: f.DataTypeSize, TypeModifier: f.TypeModifier, Format: f.Format}
	}
	return out, nil
}

// copyData accounts for one CopyData message of a COPY TO STDOUT, masks
// its rows if the decision says so, and returns the bytes to send (nil:
// withheld).
func (res *result) copyData(body []byte, limits protocol.Limits) []byte {
	if res.maskErr != nil {
		return nil
	}
	cp := res.copy
	if cp == nil {
		if res.masker != nil {
			// CopyData with no CopyOutResponse before it: there is no
			// format to read its rows by, so they cannot be masked.
			res.maskErr = errors.New("COPY data without a CopyOutResponse")
			return nil
		}
		res.bytes += int64(len(body))
		return body
	}
	out, err := res.copyRows(cp, body, limits)
	if err != nil {
		if res.masker != nil {
			res.maskErr = err
			return nil
		}
		res.copy = nil // cannot follow the rows: relay the rest as is
		out = body
	}
	res.bytes += int64(len(out))
	return out
}

func (res *result) copyRows(cp *copyOut, body []byte, limits protocol.Limits) ([]byte, error) {
	if cp.spec.Format == pgsql.CopyBinary {
		prefix, tuples, err := cp.bin.decode(body, cp.tuples)
		if err != nil {
			return nil, err
		}
		cp.tuples = tuples
		changed := false
		for _, t := range tuples {
			n, err := res.copyRow(cp, t, limits)
			if err != nil {
				return nil, err
			}
			changed = changed || n > 0
		}
		if !changed {
			return body, nil
		}
		cp.out = append(cp.out[:0], prefix...)
		for _, t := range tuples {
			cp.out = encodeBinaryCopyTuple(cp.out, t)
		}
		if cp.bin.ended {
			cp.out = append(cp.out, 0xFF, 0xFF)
		}
		return cp.out, nil
	}
	if cp.header {
		cp.header = false
		return body, nil
	}
	var err error
	if cp.spec.Format == pgsql.CopyCSV {
		cp.vals, err = decodeCSVCopyRow(body, cp.spec, cp.vals)
	} else {
		cp.vals, err = decodeTextCopyRow(body, cp.spec, cp.vals)
	}
	if err != nil {
		return nil, err
	}
	n, err := res.copyRow(cp, cp.vals, limits)
	if err != nil || n == 0 {
		return body, err
	}
	if cp.spec.Format == pgsql.CopyCSV {
		cp.out = encodeCSVCopyRow(cp.out[:0], cp.vals, cp.spec)
	} else {
		cp.out = encodeTextCopyRow(cp.out[:0], cp.vals, cp.spec)
	}
	return cp.out, nil
}

// copyRow masks one row's values in place and keeps it for the recording.
func (res *result) copyRow(cp *copyOut, vals [][]byte, limits protocol.Limits) (int, error) {
	if res.start.IsZero() {
		res.start = time.Now()
	}
	res.rows++
	n := 0
	if res.masker != nil {
		if len(vals) != len(cp.mcols) {
			return 0, fmt.Errorf("a COPY row has %d values for %d columns", len(vals), len(cp.mcols))
		}
		var err error
		n, err = res.maskValues(cp.mcols, vals)
		if err != nil {
			return 0, err
		}
	}
	res.capture(vals, limits)
	return n, nil
}
