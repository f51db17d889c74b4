// Command idleconns measures what an idle keep-alive client connection
// costs a running HTTP server: it opens -n connections to -addr, makes one
// request on each (answered and read to the end, so the connection is back
// to waiting for its next request), leaves them all open and idle, and
// compares the server's resident memory (/proc/PID/status VmRSS) and Go
// heap and stack in use (the admin /metrics Go collector) before and after.
//
//	go run ./bench/idleconns -addr 127.0.0.1:18080 -pid PID -admin 127.0.0.1:19090 -n 10000 -gc
//
// It prints one line, for scripts:
//
//	idle_conns=N rss_kb_per_conn=X heap_kb_per_conn=Y stack_kb_per_conn=Z
//
// heap and stack are omitted (printed as -1) without -admin. With -gc
// (which needs admin.pprof: true) the server collects garbage before each
// measurement, so the figures are what the idle connections hold; without
// it they include the garbage of their first requests. The server
// must be able to hold n+ connections open (sekisho raises its own open
// files limit to the hard limit); this program raises its own.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18080", "the server's plain HTTP listener, HOST:PORT")
	n := flag.Int("n", 10000, "idle connections to open")
	pid := flag.Int("pid", 0, "the server's process id, for VmRSS (required)")
	admin := flag.String("admin", "", "the server's admin listener HOST:PORT, for Go heap and stack figures from /metrics")
	path := flag.String("path", "/", "request path")
	host := flag.String("host", "", "Host header (default: -addr)")
	settle := flag.Duration("settle", 3*time.Second, "wait this long with every connection idle before measuring")
	parallel := flag.Int("parallel", 32, "connections opened at once")
	hold := flag.Duration("hold", 0, "keep the connections open this long after measuring (to look at the server by hand)")
	verbose := flag.Bool("v", false, "also print the raw figures on stderr")
	gc := flag.Bool("gc", false, "before each measurement, have the server collect garbage (GET -admin's /debug/pprof/heap?gc=1: needs admin.pprof) twice, and wait until its resident set holds still (at most 90s) for it to return freed memory, so that the figures are what the connections hold rather than garbage not yet collected")
	flag.Parse()
	if *pid <= 0 || *n <= 0 {
		fmt.Fprintln(os.Stderr, "idleconns: -pid and a positive -n are required")
		os.Exit(2)
	}
	if *host == "" {
		*host = *addr
	}
	if err := raiseNoFile(uint64(*n) + 64); err != nil {
		fmt.Fprintln(os.Stderr, "idleconns:", err)
		os.Exit(1)
	}
	if *gc && *admin == "" {
		fmt.Fprintln(os.Stderr, "idleconns: -gc needs -admin")
		os.Exit(2)
	}
	m := &meter{pid: *pid, admin: *admin, gc: *gc}
	if err := run(m, *addr, *host, *path, *n, *parallel, *settle, *hold, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "idleconns:", err)
		os.Exit(1)
	}
}

func run(m *meter, addr, host, path string, n, parallel int, settle, hold time.Duration, verbose bool) error {
	// One connection first, so that whatever the first request sets up
	// once (route caches, pools, the upstream connection) is in the
	// baseline rather than charged to the idle connections.
	warm, err := open(addr, host, path)
	if err != nil {
		return fmt.Errorf("first request: %w", err)
	}
	defer warm.Close()
	time.Sleep(settle) // let the server settle; nothing to poll for
	before, err := m.read()
	if err != nil {
		return err
	}

	conns := make([]net.Conn, n)
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	for range max(1, parallel) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				c, err := open(addr, host, path)
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("connection %d: %w", i, err) })
					next.Store(int64(n))
					return
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	if firstErr != nil {
		return firstErr
	}
	time.Sleep(settle)
	after, err := m.read()
	if err != nil {
		return err
	}
	// Every connection must still be open: an idle timeout shorter than
	// settle would make the figures meaningless.
	if err := stillOpen(conns); err != nil {
		return err
	}
	if verbose {
		fmt.Fprintf(os.Stderr, "before: %+v\nafter:  %+v\n", before, after)
	}
	per := func(a, b int64) string {
		if a < 0 || b < 0 {
			return "-1"
		}
		return strconv.FormatFloat(float64(b-a)/1024/float64(n), 'f', 1, 64)
	}
	fmt.Printf("idle_conns=%d rss_kb_per_conn=%s heap_kb_per_conn=%s stack_kb_per_conn=%s\n",
		n, per(before.rss, after.rss), per(before.heap, after.heap), per(before.stack, after.stack))
	if hold > 0 {
		time.Sleep(hold)
	}
	return nil
}

// open makes one keep-alive request and returns the connection once the
// response is read to its end. The reader is dropped: the server sends
// nothing more until the next request.
func open(addr, host, path string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: idleconns\r\n\r\n", path, host); err != nil {
		c.Close()
		return nil, err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.Close {
		err = errors.New("the server closed the connection after the response (no keep-alive)")
	}
	if err == nil && br.Buffered() > 0 {
		err = errors.New("the server sent more than one response")
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// stillOpen checks, without blocking, that the server has closed none of
// the connections: a read with a deadline in the past fails with a
// timeout on an open idle connection and with EOF on a closed one.
func stillOpen(conns []net.Conn) error {
	var b [1]byte
	closed := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(-time.Second))
		_, err := c.Read(b[:])
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			closed++
		}
	}
	if closed > 0 {
		return fmt.Errorf("the server closed %d of %d connections while they were idle (idle timeout shorter than -settle?)", closed, len(conns))
	}
	return nil
}

type sample struct{ rss, heap, stack int64 }

type meter struct {
	pid   int
	admin string
	gc    bool
}

func (m *meter) read() (sample, error) {
	s := sample{heap: -1, stack: -1}
	var err error
	if m.gc {
		// Twice: what sync.Pools hold survives one collection.
		for range 2 {
			if _, err := fetch("http://" + m.admin + "/debug/pprof/heap?gc=1"); err != nil {
				return s, fmt.Errorf("-gc: %w (is admin.pprof on?)", err)
			}
		}
		// The scavenger returns freed pages in the background, at its own
		// pace: wait until the resident set holds still, so the figure
		// is what the process keeps, not when it got round to returning
		// the rest.
		// A step longer than sekisho's 5 s memory check (serve/trim.go).
		if s.rss, err = settledRSS(m.pid, 6*time.Second, 90*time.Second); err != nil {
			return s, err
		}
	} else if s.rss, err = vmRSS(m.pid); err != nil {
		return s, err
	}
	if m.admin == "" {
		return s, nil
	}
	v, err := scrape("http://"+m.admin+"/metrics", "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes")
	if err != nil {
		return s, err
	}
	s.heap, s.stack = v[0], v[1]
	return s, nil
}

// settledRSS reads pid's resident set until it changed by less than 1%
// over the last step, or until limit, and returns the last reading.
func settledRSS(pid int, step, limit time.Duration) (int64, error) {
	prev, err := vmRSS(pid)
	if err != nil {
		return 0, err
	}
	for end := time.Now().Add(limit); time.Now().Before(end); {
		time.Sleep(step) // polling a process that cannot signal us: the wait is the measurement
		cur, err := vmRSS(pid)
		if err != nil {
			return 0, err
		}
		if d := prev - cur; d < prev/100 && -d < prev/100 {
			return cur, nil
		}
		prev = cur
	}
	return prev, nil
}

// vmRSS is the process's resident set in bytes.
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS of %d: %w", pid, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS for process %d", pid)
}

// fetch GETs url and returns its body; anything but 200 is an error.
func fetch(url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// scrape reads untyped gauge values from a Prometheus text exposition.
func scrape(url string, names ...string) ([]int64, error) {
	body, err := fetch(url)
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(names))
	for i, name := range names {
		out[i] = -1
		for line := range strings.Lines(string(body)) {
			if rest, ok := strings.CutPrefix(line, name+" "); ok {
				f, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
				if err != nil {
					return nil, fmt.Errorf("%s: %s: %w", url, name, err)
				}
				out[i] = int64(f)
			}
		}
		if out[i] < 0 {
			return nil, fmt.Errorf("%s has no %s", url, name)
		}
	}
	return out, nil
}

// raiseNoFile lifts this process's open files limit to at least need.
func raiseNoFile(need uint64) error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("open files limit: %w", err)
	}
	if l.Cur >= need {
		return nil
	}
	if l.Max < need {
		return fmt.Errorf("open files hard limit %d is below the %d connections asked for", l.Max, need)
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("raise the open files limit to %d: %w", l.Max, err)
	}
	return nil
}
