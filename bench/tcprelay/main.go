// Command tcprelay is bench/matrix.sh's floor for a proxy written in Go: it
// accepts connections and copies bytes both ways to the backend with two
// goroutines per connection (io.Copy), and nothing else — no protocol
// parsing, policy, masking or recording. What sluice costs beyond it is
// sluice's own work; what it costs beyond pgbouncer's event loop is Go's
// I/O model (a goroutine parked and woken through the netpoller for every
// read that would block).
//
//	tcprelay -listen 127.0.0.1:16446 -backend 127.0.0.1:5432
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:16446", "address to accept on")
	backend := flag.String("backend", "127.0.0.1:5432", "address to relay to")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tcprelay:", err)
		os.Exit(1)
	}
	go func() { <-ctx.Done(); _ = ln.Close() }()
	fmt.Printf("tcprelay %s -> %s\n", ln.Addr(), *backend)
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			fmt.Fprintln(os.Stderr, "tcprelay:", err)
			return
		}
		go relay(c, *backend)
	}
}

func relay(c net.Conn, backend string) {
	defer c.Close()
	b, err := net.Dial("tcp", backend)
	if err != nil {
		return
	}
	defer b.Close()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(b, c)
		_ = b.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	_, _ = io.Copy(c, b)
	_ = c.(*net.TCPConn).CloseWrite()
	<-done
}
