// Command delayproxy puts a network delay between scripts/bench-scale and its local registry: a TCP
// proxy that forwards every connection to -target and delays the bytes of each direction by half of
// -rtt, so that a registry on 127.0.0.1 answers as one -rtt away. A new connection's first bytes wait
// one more round trip, the TCP handshake a far registry costs. Nothing on the host is reconfigured
// (no tc/netem): only connections to -listen are slowed.
//
//	delayproxy -listen 127.0.0.1:PORT -target 127.0.0.1:REGISTRYPORT -rtt 50ms
//
// It prints "connection N" on standard output for each connection it accepts, so that a benchmark
// can count connections per image, and runs until it is killed.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "`ADDR` to listen on")
	target := flag.String("target", "", "`ADDR` to forward to")
	rtt := flag.Duration("rtt", 50*time.Millisecond, "round-trip time to add")
	flag.Parse()
	if *target == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: delayproxy -listen ADDR -target ADDR -rtt DURATION")
		os.Exit(2)
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "delayproxy:", err)
		os.Exit(1)
	}
	var n atomic.Int64
	for {
		c, err := l.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "delayproxy:", err)
			os.Exit(1)
		}
		fmt.Printf("connection %d\n", n.Add(1))
		go forward(c.(*net.TCPConn), *target, *rtt)
	}
}

// forward connects c to target with the delays of a link rtt long.
func forward(c *net.TCPConn, target string, rtt time.Duration) {
	defer func() { _ = c.Close() }() // the connection is over either way
	u, err := net.Dial("tcp", target)
	if err != nil {
		fmt.Fprintln(os.Stderr, "delayproxy:", err)
		return
	}
	up := u.(*net.TCPConn)
	defer func() { _ = up.Close() }()
	handshake := time.Now().Add(rtt) // what connecting to a far host costs before the first byte
	done := make(chan struct{}, 2)
	go func() { delayed(up, c, rtt/2, handshake); done <- struct{}{} }()
	go func() { delayed(c, up, rtt/2, time.Time{}); done <- struct{}{} }()
	<-done
	<-done
}

// chunk is what one read got, and when it may be delivered.
type chunk struct {
	data []byte
	at   time.Time
	err  error // io.EOF or a read error: the end of the stream
}

// delayed copies from src to dst, delivering each read delay after it arrived (and not before
// notBefore+delay), in order; at the end it closes dst for writing, delayed the same.
func delayed(dst, src *net.TCPConn, delay time.Duration, notBefore time.Time) {
	queue := make(chan chunk, 64) // 4 MiB in flight per direction at most: a TCP window
	go func() {
		// One read buffer; each chunk is a copy of what was read: a fresh 64 KiB buffer per read
		// made the proxy's garbage collection cost more CPU than the registry behind it.
		buf := make([]byte, 64<<10)
		for {
			n, err := src.Read(buf)
			at := time.Now()
			if at.Before(notBefore) {
				at = notBefore
			}
			if n > 0 {
				queue <- chunk{data: bytes.Clone(buf[:n]), at: at.Add(delay)}
			}
			if err != nil {
				queue <- chunk{err: err, at: at.Add(delay)}
				close(queue)
				return
			}
		}
	}()
	for ch := range queue {
		time.Sleep(time.Until(ch.at))
		if ch.err != nil {
			if errors.Is(ch.err, io.EOF) {
				_ = dst.CloseWrite() // the other side sees the end of the stream
			} else {
				_ = dst.Close()
			}
			continue
		}
		if _, err := dst.Write(ch.data); err != nil {
			_ = src.Close() // the reader ends with an error; the rest of the queue is dropped
			for range queue {
			}
			return
		}
	}
}
