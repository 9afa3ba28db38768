// Command memberlist-bench measures hashicorp/memberlist the way `quicswim bench` measures
// quicswim, so the two can be run side by side on one machine: N nodes in one process on
// 127.0.0.1, the LAN preset, AES encryption on (a fixed 32-byte test key), and the same
// phases, windows and figures:
//
//		start the seed ─> join ─> broadcast ─> warm-up ─> steady window ─> detect
//
//	  - join: the other nodes start at once and join through the seed; the time until every
//	    node holds all N alive;
//	  - broadcast: one node at a time changes its metadata (UpdateNode); the time until every
//	    other node has been told of it;
//	  - steady: an idle window over which the process's CPU time and the bytes and packets the
//	    nodes send are read at both ends;
//	  - detect: a node is shut down without leaving; the time until every other node has
//	    declared it dead (NotifyLeave). Repeated --kills times, one victim after another.
//
// Bytes and packets are counted by a transport that wraps memberlist's own: every UDP
// datagram (already encrypted) and every byte written to a TCP stream. Run in a network
// namespace of its own, the kernel's counters (/proc/net/snmp) are read too: there TCP's
// segments, handshakes and acknowledgements count as packets.
//
// It prints one JSON object. See README.md beside this file for the commands.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"
)

// joinAttempts bounds how often a node tries to join through the seed.
const joinAttempts = 5

// testKey is the AES-256 key every node shares: a test fixture, not a secret.
var testKey = []byte("memberlist-bench-test-key-32byte")

// counters are what one node's transport sent.
type counters struct {
	udpPackets int64
	udpBytes   int64
	tcpWrites  int64
	tcpBytes   int64
}

func (c *counters) snapshot() counters {
	return counters{
		udpPackets: atomic.LoadInt64(&c.udpPackets),
		udpBytes:   atomic.LoadInt64(&c.udpBytes),
		tcpWrites:  atomic.LoadInt64(&c.tcpWrites),
		tcpBytes:   atomic.LoadInt64(&c.tcpBytes),
	}
}

// countingTransport is memberlist's UDP and TCP transport, counting what it sends. It offers
// only the plain Transport interface, so that every send goes through WriteTo and
// DialTimeout (memberlist adapts it to addresses with node names itself).
type countingTransport struct {
	inner   *memberlist.NetTransport
	counts  *counters
	streams chan net.Conn
}

func newCountingTransport(logger *log.Logger, counts *counters) (*countingTransport, error) {
	inner, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{"127.0.0.1"},
		BindPort:  0,
		Logger:    logger,
	})
	if err != nil {
		return nil, err
	}
	t := &countingTransport{inner: inner, counts: counts, streams: make(chan net.Conn)}
	go func() {
		for conn := range inner.StreamCh() {
			t.streams <- &countingConn{Conn: conn, counts: counts}
		}
	}()
	return t, nil
}

func (t *countingTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	atomic.AddInt64(&t.counts.udpPackets, 1)
	atomic.AddInt64(&t.counts.udpBytes, int64(len(b)))
	return t.inner.WriteTo(b, addr)
}

func (t *countingTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return t.inner.FinalAdvertiseAddr(ip, port)
}

func (t *countingTransport) PacketCh() <-chan *memberlist.Packet {
	return t.inner.PacketCh()
}

func (t *countingTransport) Shutdown() error {
	return t.inner.Shutdown()
}

func (t *countingTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	conn, err := t.inner.DialTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: conn, counts: t.counts}, nil
}

func (t *countingTransport) StreamCh() <-chan net.Conn {
	return t.streams
}

type countingConn struct {
	net.Conn
	counts *counters
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	atomic.AddInt64(&c.counts.tcpWrites, 1)
	atomic.AddInt64(&c.counts.tcpBytes, int64(n))
	return n, err
}

// node is one member and what its event stream told it, each event stamped on arrival.
type node struct {
	name   string
	ml     *memberlist.Memberlist
	counts *counters
	size   int
	meta   atomic.Value // []byte

	mu      sync.Mutex
	alive   map[string]bool
	fullAt  time.Time
	metaOf  map[string]string
	metaAt  map[string]time.Time
	deadAt  map[string]time.Time
	stopped bool
}

func (n *node) NodeMeta(limit int) []byte {
	meta, _ := n.meta.Load().([]byte)
	return meta
}
func (n *node) NotifyMsg([]byte)                           {}
func (n *node) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (n *node) LocalState(join bool) []byte                { return nil }
func (n *node) MergeRemoteState(buf []byte, join bool)     {}

func (n *node) NotifyJoin(m *memberlist.Node) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.alive[m.Name] = true
	delete(n.deadAt, m.Name)
	n.noteMeta(m)
	if len(n.alive) == n.size && n.fullAt.IsZero() {
		n.fullAt = time.Now()
	}
}

// fullAt is when this node last came to hold all N alive, zero while it does not: as
// quicswim's bench keeps it, except that memberlist tells no one of a suspicion, so only a
// member declared dead (or left) clears it.

func (n *node) NotifyLeave(m *memberlist.Node) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.alive, m.Name)
	n.deadAt[m.Name] = time.Now()
	n.fullAt = time.Time{}
}

func (n *node) NotifyUpdate(m *memberlist.Node) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.noteMeta(m)
}

// noteMeta keeps a member's metadata and when it changed; the lock is held.
func (n *node) noteMeta(m *memberlist.Node) {
	meta := string(m.Meta)
	if n.metaOf[m.Name] != meta {
		n.metaOf[m.Name] = meta
		n.metaAt[m.Name] = time.Now()
	}
}

// presetConfig is memberlist's preset of that name.
func presetConfig(profile string) (*memberlist.Config, error) {
	switch profile {
	case "lan":
		return memberlist.DefaultLANConfig(), nil
	case "local":
		return memberlist.DefaultLocalConfig(), nil
	case "wan":
		return memberlist.DefaultWANConfig(), nil
	}
	return nil, fmt.Errorf("--profile: %q is not lan, local or wan", profile)
}

func startNode(index, size int, profile string) (*node, error) {
	config, err := presetConfig(profile)
	if err != nil {
		return nil, err
	}
	n := &node{
		name:   fmt.Sprintf("node-%03d", index),
		counts: &counters{},
		size:   size,
		alive:  map[string]bool{},
		metaOf: map[string]string{},
		metaAt: map[string]time.Time{},
		deadAt: map[string]time.Time{},
	}
	n.meta.Store([]byte("v0"))
	logger := log.New(io.Discard, "", 0)
	transport, err := newCountingTransport(logger, n.counts)
	if err != nil {
		return nil, err
	}
	config.Name = n.name
	config.Transport = transport
	config.Logger = logger
	config.SecretKey = testKey
	config.Delegate = n
	config.Events = n
	ml, err := memberlist.Create(config)
	if err != nil {
		return nil, err
	}
	n.ml = ml
	return n, nil
}

func (n *node) addr() string {
	local := n.ml.LocalNode()
	return net.JoinHostPort(local.Addr.String(), strconv.Itoa(int(local.Port)))
}

func (n *node) crash() {
	n.mu.Lock()
	n.stopped = true
	n.mu.Unlock()
	_ = n.ml.Shutdown()
}

// waitFor polls cond every 5 ms until it holds or the bound passes.
func waitFor(bound time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(bound)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cond()
}

func cpuTime() time.Duration {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
}

// kernel is what the kernel counted as sent: the whole network namespace's, so it means
// something only in a namespace of the run's own.
type kernel struct {
	udpDatagrams int64 // Udp OutDatagrams (/proc/net/snmp)
	tcpSegments  int64 // Tcp OutSegs (/proc/net/snmp)
	ipOctets     int64 // IpExt OutOctets (/proc/net/netstat): IP headers included
}

// transportBytes are the bytes above IP: UDP payloads, and TCP segments with their headers
// (handshakes, acknowledgements and closes included), as QUIC's count of its UDP payloads
// includes its own headers and acknowledgements. IPv4 headers are 20 bytes on loopback
// (no options), UDP's 8.
func (k kernel) transportBytes() int64 {
	return k.ipOctets - 20*(k.udpDatagrams+k.tcpSegments) - 8*k.udpDatagrams
}

func readKernel() (kernel, error) {
	var k kernel
	var err error
	if k.udpDatagrams, err = procField("/proc/net/snmp", "Udp", "OutDatagrams"); err != nil {
		return k, err
	}
	if k.tcpSegments, err = procField("/proc/net/snmp", "Tcp", "OutSegs"); err != nil {
		return k, err
	}
	k.ipOctets, err = procField("/proc/net/netstat", "IpExt", "OutOctets")
	return k, err
}

// procField reads one counter from a /proc/net file of "Proto: names" lines each followed
// by a "Proto: values" line.
func procField(path, proto, name string) (int64, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	lines := strings.Split(string(raw), "\n")
	for i := 0; i+1 < len(lines); i++ {
		head := strings.Fields(lines[i])
		values := strings.Fields(lines[i+1])
		if len(head) == 0 || head[0] != proto+":" || len(values) != len(head) {
			continue
		}
		for j, h := range head {
			if h == name {
				return strconv.ParseInt(values[j], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("%s has no %s %s", path, proto, name)
}

type joinResult struct {
	Nodes      int      `json:"nodes"`
	ConvergedS *float64 `json:"converged_s"`
	CPUS       float64  `json:"cpu_s"`
	// Joins that failed and were tried again a second later.
	Retries int64 `json:"retries"`
}

type broadcastResult struct {
	Updates   int      `json:"updates"`
	Completed int      `json:"completed"`
	AllP50S   *float64 `json:"all_p50_s"`
	AllP90S   *float64 `json:"all_p90_s"`
	AllMaxS   *float64 `json:"all_max_s"`
	NodeP50S  *float64 `json:"node_p50_s"`
	NodeP99S  *float64 `json:"node_p99_s"`
}

type steadyResult struct {
	WindowS              float64  `json:"window_s"`
	CPUMsPerNodeS        float64  `json:"cpu_ms_per_node_s"`
	BytesOutPerNodeS     float64  `json:"bytes_out_per_node_s"`
	UDPBytesOutPerNodeS  float64  `json:"udp_bytes_out_per_node_s"`
	TCPBytesOutPerNodeS  float64  `json:"tcp_bytes_out_per_node_s"`
	UDPPacketsPerNodeS   float64  `json:"udp_packets_out_per_node_s"`
	TCPWritesPerNodeS    float64  `json:"tcp_writes_per_node_s"`
	KernelUDPPerNodeS    *float64 `json:"kernel_udp_datagrams_out_per_node_s"`
	KernelTCPSegPerNodeS *float64 `json:"kernel_tcp_segments_out_per_node_s"`
	KernelPacketsPerNode *float64 `json:"kernel_packets_out_per_node_s"`
	KernelBytesPerNodeS  *float64 `json:"kernel_transport_bytes_out_per_node_s"`
}

type detectResult struct {
	Victim   string   `json:"victim"`
	FirstS   *float64 `json:"first_dead_s"`
	DeadP50S *float64 `json:"dead_p50_s"`
	AllDeadS *float64 `json:"all_dead_s"`
}

type report struct {
	Tool      string          `json:"tool"`
	Profile   string          `json:"profile"`
	Nodes     int             `json:"nodes"`
	Join      joinResult      `json:"join"`
	Broadcast broadcastResult `json:"broadcast"`
	Steady    steadyResult    `json:"steady"`
	Detect    []detectResult  `json:"detect"`
}

func some(v float64) *float64 { return &v }

// never stands for a sample that did not happen within the bound.
var never = math.Inf(1)

// quantile is quicswim's nearest-rank quantile (quicswim-cli/src/bench/stats.rs): samples
// that never happened sort above every value, and a rank that lands on one gives nil, as
// does an empty sample.
func quantile(samples []float64, p float64) *float64 {
	n := len(samples)
	if n == 0 {
		return nil
	}
	sorted := append([]float64(nil), samples...)
	sort.Float64s(sorted)
	rank := int(math.Ceil(p * float64(n)))
	if rank < 1 {
		rank = 1
	}
	if rank > n {
		rank = n
	}
	if v := sorted[rank-1]; !math.IsInf(v, 1) {
		return some(v)
	}
	return nil
}

func main() {
	nodes := flag.Int("nodes", 32, "nodes in the cluster (at least 3)")
	profile := flag.String("profile", "lan", "memberlist preset: lan, local or wan")
	updates := flag.Int("updates", 10, "metadata updates timed in the broadcast phase")
	warmup := flag.Duration("warmup", 0, "wait between the join and the steady window (default: quicswim bench's, 2·(n-1) probe intervals, at least 15 s)")
	steady := flag.Duration("steady", 0, "steady window (default: one push-pull interval at this size, at least 30 s)")
	kills := flag.Int("kills", 3, "nodes crashed one after another in the detect phase")
	bound := flag.Duration("phase-timeout", 120*time.Second, "bound on every wait")
	flag.Parse()
	if *nodes < 3 {
		fail("--nodes: at least 3, got %d", *nodes)
	}
	if *kills < 1 || *kills >= *nodes-1 {
		fail("--kills: from 1 to nodes-2, got %d", *kills)
	}
	if *updates < 1 {
		fail("--updates: at least 1, got %d", *updates)
	}
	preset, err := presetConfig(*profile)
	if err != nil {
		fail("%v", err)
	}
	if *warmup == 0 {
		*warmup = maxDuration(time.Duration(2*(*nodes-1))*preset.ProbeInterval, 15*time.Second)
	}
	if *steady == 0 {
		*steady = maxDuration(pushPullScale(preset.PushPullInterval, *nodes), 30*time.Second)
	}
	out := report{Tool: "memberlist 0.2.2 (Debian), AES keyring", Profile: *profile, Nodes: *nodes}

	seed, err := startNode(0, *nodes, *profile)
	if err != nil {
		fail("starting the seed: %v", err)
	}
	all := []*node{seed}
	out.Join = runJoin(&all, *nodes, *profile, *bound)
	joined := time.Now()
	logf("join: %s", show(out.Join.ConvergedS))
	out.Broadcast = runBroadcast(all, *updates, *bound)
	logf("broadcast: max %s", show(out.Broadcast.AllMaxS))
	// As quicswim's bench: the warm-up counts from the end of the join.
	logf("warming up until %v after the join, then a %v window", *warmup, *steady)
	time.Sleep(time.Until(joined.Add(*warmup)))
	out.Steady = runSteady(all, *steady)
	logf("steady: %.3f ms CPU, %.0f bytes, %.2f UDP packets per node per s",
		out.Steady.CPUMsPerNodeS, out.Steady.BytesOutPerNodeS, out.Steady.UDPPacketsPerNodeS)
	for k := 0; k < *kills; k++ {
		victim := all[len(all)-1-k]
		result := runDetect(all, victim, *bound)
		logf("detect %s: all dead %s", victim.name, show(result.AllDeadS))
		out.Detect = append(out.Detect, result)
	}
	for _, n := range all {
		n.crash()
	}
	encoded, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		fail("encoding the report: %v", err)
	}
	fmt.Println(string(encoded))
}

// runJoin starts the other nodes at once, each joining through the seed, and waits until
// every node holds all of them alive.
func runJoin(all *[]*node, size int, profile string, bound time.Duration) joinResult {
	cpuBefore := cpuTime()
	t0 := time.Now()
	seedAddr := (*all)[0].addr()
	var retries int64
	var wg sync.WaitGroup
	started := make([]*node, size)
	errs := make(chan error, size)
	for i := 1; i < size; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			n, err := startNode(i, size, profile)
			if err != nil {
				errs <- err
				return
			}
			started[i] = n
			// A seed that hundreds of nodes join at once drops some of their TCP
			// push-pulls; a node retries as an operator's agent would (serf retries
			// joins too), up to joinAttempts times, and the retries are counted.
			for attempt := 1; ; attempt++ {
				_, err := n.ml.Join([]string{seedAddr})
				if err == nil {
					return
				}
				if attempt == joinAttempts {
					errs <- fmt.Errorf("%s joining, %d attempts: %w", n.name, attempt, err)
					return
				}
				atomic.AddInt64(&retries, 1)
				time.Sleep(time.Second)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		fail("join: %v", err)
	}
	*all = append(*all, started[1:]...)
	converged := waitFor(bound, func() bool {
		for _, n := range *all {
			n.mu.Lock()
			full := !n.fullAt.IsZero()
			n.mu.Unlock()
			if !full {
				return false
			}
		}
		return true
	})
	result := joinResult{
		Nodes:   size,
		CPUS:    (cpuTime() - cpuBefore).Seconds(),
		Retries: atomic.LoadInt64(&retries),
	}
	if converged {
		var last time.Time
		for _, n := range *all {
			n.mu.Lock()
			if n.fullAt.After(last) {
				last = n.fullAt
			}
			n.mu.Unlock()
		}
		result.ConvergedS = some(last.Sub(t0).Seconds())
	}
	return result
}

// runBroadcast changes one node's metadata at a time and times each change until every
// other node has it.
func runBroadcast(all []*node, updates int, bound time.Duration) broadcastResult {
	result := broadcastResult{Updates: updates}
	var perUpdate, perNode []float64
	for u := 0; u < updates; u++ {
		origin := all[(u+1)%len(all)]
		meta := fmt.Sprintf("update-%d", u+1)
		origin.meta.Store([]byte(meta))
		t0 := time.Now()
		// UpdateNode waits for the update to leave the node's queue; past the bound
		// it says so, and the update is still timed like any other.
		if err := origin.ml.UpdateNode(bound); err != nil {
			logf("broadcast: UpdateNode on %s: %v", origin.name, err)
		}
		has := func(n *node) bool {
			n.mu.Lock()
			defer n.mu.Unlock()
			return n.metaOf[origin.name] == meta
		}
		done := waitFor(bound, func() bool {
			for _, n := range all {
				if n != origin && !has(n) {
					return false
				}
			}
			return true
		})
		if done {
			result.Completed++
		}
		slowest := 0.0
		for _, n := range all {
			if n == origin {
				continue
			}
			s := never
			if has(n) {
				n.mu.Lock()
				s = n.metaAt[origin.name].Sub(t0).Seconds()
				n.mu.Unlock()
			}
			perNode = append(perNode, s)
			slowest = math.Max(slowest, s)
		}
		perUpdate = append(perUpdate, slowest)
	}
	result.AllP50S = quantile(perUpdate, 0.5)
	result.AllP90S = quantile(perUpdate, 0.9)
	result.AllMaxS = quantile(perUpdate, 1)
	result.NodeP50S = quantile(perNode, 0.5)
	result.NodeP99S = quantile(perNode, 0.99)
	return result
}

// runSteady reads CPU time and the transports' counters at both ends of an idle window.
func runSteady(all []*node, window time.Duration) steadyResult {
	sum := func() counters {
		var c counters
		for _, n := range all {
			s := n.counts.snapshot()
			c.udpPackets += s.udpPackets
			c.udpBytes += s.udpBytes
			c.tcpWrites += s.tcpWrites
			c.tcpBytes += s.tcpBytes
		}
		return c
	}
	kernelBefore, kernelErr := readKernel()
	before, cpuBefore, t0 := sum(), cpuTime(), time.Now()
	time.Sleep(window)
	after, cpuAfter, elapsed := sum(), cpuTime(), time.Since(t0)
	kernelAfter, kernelErrAfter := readKernel()
	per := func(v float64) float64 { return v / float64(len(all)) / elapsed.Seconds() }
	udpBytes := float64(after.udpBytes - before.udpBytes)
	tcpBytes := float64(after.tcpBytes - before.tcpBytes)
	result := steadyResult{
		WindowS:             elapsed.Seconds(),
		CPUMsPerNodeS:       per(float64((cpuAfter - cpuBefore).Microseconds()) / 1000),
		BytesOutPerNodeS:    per(udpBytes + tcpBytes),
		UDPBytesOutPerNodeS: per(udpBytes),
		TCPBytesOutPerNodeS: per(tcpBytes),
		UDPPacketsPerNodeS:  per(float64(after.udpPackets - before.udpPackets)),
		TCPWritesPerNodeS:   per(float64(after.tcpWrites - before.tcpWrites)),
	}
	if kernelErr == nil && kernelErrAfter == nil {
		udp := per(float64(kernelAfter.udpDatagrams - kernelBefore.udpDatagrams))
		tcp := per(float64(kernelAfter.tcpSegments - kernelBefore.tcpSegments))
		result.KernelUDPPerNodeS = some(udp)
		result.KernelTCPSegPerNodeS = some(tcp)
		result.KernelPacketsPerNode = some(udp + tcp)
		bytes := kernelAfter.transportBytes() - kernelBefore.transportBytes()
		result.KernelBytesPerNodeS = some(per(float64(bytes)))
	}
	return result
}

// runDetect shuts the victim down without leaving and times until every other live node
// has declared it dead.
func runDetect(all []*node, victim *node, bound time.Duration) detectResult {
	var others []*node
	for _, n := range all {
		n.mu.Lock()
		live := !n.stopped
		n.mu.Unlock()
		if live && n != victim {
			others = append(others, n)
		}
	}
	t0 := time.Now()
	victim.crash()
	deadAt := func(n *node) (time.Time, bool) {
		n.mu.Lock()
		defer n.mu.Unlock()
		at, ok := n.deadAt[victim.name]
		return at, ok
	}
	waitFor(bound, func() bool {
		for _, n := range others {
			if _, ok := deadAt(n); !ok {
				return false
			}
		}
		return true
	})
	var times []float64
	for _, n := range others {
		t := never
		if at, ok := deadAt(n); ok {
			t = at.Sub(t0).Seconds()
		}
		times = append(times, t)
	}
	return detectResult{
		Victim:   victim.name,
		FirstS:   quantile(times, 0),
		DeadP50S: quantile(times, 0.5),
		AllDeadS: quantile(times, 1),
	}
}

// pushPullScale is memberlist's own scaling of the push-pull interval with the cluster size
// (util.go), which quicswim's lan preset follows.
func pushPullScale(interval time.Duration, n int) time.Duration {
	const threshold = 32
	if n <= threshold {
		return interval
	}
	mult := math.Ceil(math.Log2(float64(n))-math.Log2(threshold)) + 1
	return time.Duration(mult) * interval
}

func maxDuration(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}

func show(v *float64) string {
	if v == nil {
		return "not within the bound"
	}
	return fmt.Sprintf("%.2f s", *v)
}

func logf(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

func fail(format string, args ...interface{}) {
	logf("memberlist-bench: "+format, args...)
	os.Exit(2)
}
