package recording_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/sluicegw/sluice/identity"
	"github.com/sluicegw/sluice/protocol"
	"github.com/sluicegw/sluice/recording"
)

// A FileSink records one session to <dir>/<id>.jsonl; Verify checks the
// hash chain and WriteTranscript replays it.
func Example() {
	dir, err := os.MkdirTemp("", "recordings")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	sink, err := recording.NewFileSink(filepath.Join(dir, "recordings"), recording.FileOptions{Fsync: recording.FsyncInterval})
	if err != nil {
		log.Fatal(err)
	}
	start := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	info := protocol.SessionInfo{
		ID:         "01JQ8Z5V7S3E6T4N2W9X0Y1K5M",
		Identity:   &identity.Identity{Subject: "alice", Groups: []string{"dba"}, Method: identity.MethodOIDC},
		Target:     &protocol.Target{Name: "pg-prod", Protocol: "postgres", Address: "db.internal:5432"},
		ClientAddr: "10.1.2.3:54321",
		Start:      start,
	}
	rec, err := sink.Open(context.Background(), info)
	if err != nil {
		log.Fatal(err)
	}
	one := "1"
	for _, e := range []*recording.Entry{
		{Seq: 1, Time: start, Session: info.ID, Type: recording.TypeSessionStart,
			Identity: info.Identity, Target: info.Target, ClientAddr: info.ClientAddr},
		{Seq: 2, Time: start.Add(time.Second), Session: info.ID, Type: recording.TypeCommand,
			Command:  &protocol.Command{Protocol: "postgres", Kind: protocol.KindQuery, Text: "SELECT 1 AS one"},
			Decision: &protocol.Decision{Action: protocol.Allow, Rules: []string{"read-only"}}},
		{Seq: 3, Time: start.Add(1002 * time.Millisecond), Session: info.ID, Type: string(protocol.EventResult), CommandSeq: 2,
			Result: &protocol.Result{Tag: "SELECT 1", Rows: 1, Bytes: 1, Duration: 2 * time.Millisecond,
				Columns: []string{"one"}, Data: [][]*string{{&one}}}},
		{Seq: 4, Time: start.Add(2 * time.Second), Session: info.ID, Type: recording.TypeSessionEnd, Reason: "client disconnected"},
	} {
		if err := rec.Write(e); err != nil {
			log.Fatal(err) // the session must fail closed
		}
	}
	head := rec.(recording.ChainHead).Head() // log this outside the recording
	if err := rec.Close(); err != nil {
		log.Fatal(err)
	}

	path, err := recording.FindFile(sink.Dir(), info.ID)
	if err != nil {
		log.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	rep, err := recording.Verify(f)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(rep)
	fmt.Println("complete:", rep.Complete, "head matches:", rep.Head == head)

	if _, err := f.Seek(0, 0); err != nil {
		log.Fatal(err)
	}
	if _, err := recording.WriteTranscript(os.Stdout, f); err != nil {
		log.Fatal(err)
	}
	// Output:
	// hash chain: intact (4 entries)
	// complete: true head matches: true
	// session   01JQ8Z5V7S3E6T4N2W9X0Y1K5M
	// identity  alice (method: oidc; groups: dba)
	// target    pg-prod (postgres at db.internal:5432)
	// client    10.1.2.3:54321
	// started   2025-03-04T05:06:07.000Z
	//
	// 05:06:08.000  #2 command (query)
	//     SELECT 1 AS one
	//     decision: allow (rules: read-only)
	// 05:06:08.002  #3 result of #2: SELECT 1
	//     one
	//     ---
	//     1
	//     (1 row, 1 byte, 2ms)
	// 05:06:09.000  #4 session end: client disconnected (duration 2s)
	//
	// hash chain: intact (4 entries)
}
