package bench

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/logdist/logdist/frame"
)

// textGen makes log lines that look like what agents ship — web access
// logs, application logs with ids and durations, errors, sshd and
// Kubernetes lines — from a seeded random source. Every line carries
// random ids, addresses and figures, so zstd compresses the text about as
// well as it compresses real logs, not as well as it compresses repeated
// bytes.
type textGen struct {
	rng *rand.Rand
	buf []byte
}

var (
	genHosts   = []string{"web-01", "web-02", "web-07", "web-17", "api-3", "api-12", "db-2", "db-5", "cache-4", "worker-9", "worker-21", "edge-lon-1", "edge-fra-3", "k8s-node-12", "k8s-node-31", "batch-6"}
	genDomains = []string{"eu-west-1.internal", "us-east-2.internal", "prod.example.net", "ap-south-1.internal"}
	genApps    = []string{"nginx", "order-service", "payment-gw", "auth", "sshd", "kubelet", "inventory", "search-api", "mailer", "cron"}
	genPaths   = []string{"/api/v1/orders", "/api/v1/users", "/api/v2/search", "/static/js/app.", "/healthz", "/api/v1/cart/items", "/login", "/api/v1/payments", "/graphql", "/metrics"}
	genMethods = []string{"GET", "GET", "GET", "POST", "PUT", "DELETE", "GET", "PATCH"}
	genStatus  = []int{200, 200, 200, 200, 201, 204, 301, 304, 400, 401, 403, 404, 429, 500, 502, 503}
	genAgents  = []string{"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "curl/8.5.0", "Go-http-client/2.0", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15", "python-requests/2.31.0", "kube-probe/1.30"}
	genErrors  = []string{"context deadline exceeded", "connection reset by peer", "too many open files", "no route to host", "duplicate key value violates unique constraint \"orders_pkey\"", "i/o timeout", "certificate has expired or is not yet valid"}
	genWords   = []string{"cache", "miss", "retry", "upstream", "shard", "tenant", "region", "bytes_in", "bytes_out", "queue", "lag", "batch", "items", "rows", "pool", "active", "idle", "waiting", "gc_pause_us", "heap_mb"}
	genLevels  = []struct {
		name string
		sev  frame.Severity
	}{{"INFO", frame.SevInfo}, {"INFO", frame.SevInfo}, {"INFO", frame.SevInfo}, {"DEBUG", frame.SevDebug}, {"WARN", frame.SevWarning}, {"ERROR", frame.SevError}, {"NOTICE", frame.SevNotice}}
)

func newTextGen(seed uint64) *textGen {
	return &textGen{rng: rand.New(rand.NewPCG(seed, seed^0x9E3779B97F4A7C15))}
}

func (g *textGen) pick(s []string) string { return s[g.rng.IntN(len(s))] }

func (g *textGen) hex(n int) {
	const digits = "0123456789abcdef"
	for range n {
		g.buf = append(g.buf, digits[g.rng.IntN(16)])
	}
}

func (g *textGen) ip() {
	g.buf = fmt.Appendf(g.buf, "10.%d.%d.%d", g.rng.IntN(256), g.rng.IntN(256), 1+g.rng.IntN(254))
}

// message returns one message: its host, app, severity and a body of
// exactly size bytes (valid ASCII), stamped around ts.
func (g *textGen) message(ts time.Time, size int) frame.Message {
	host := g.pick(genHosts)
	lvl := genLevels[g.rng.IntN(len(genLevels))]
	app := g.pick(genApps)
	g.buf = g.buf[:0]
	switch g.rng.IntN(5) {
	case 0: // access log
		app = "nginx"
		g.ip()
		g.buf = append(g.buf, " - - ["...)
		g.buf = ts.UTC().AppendFormat(g.buf, "02/Jan/2006:15:04:05 -0700")
		g.buf = fmt.Appendf(g.buf, "] \"%s %s%d?page=%d HTTP/1.1\" %d %d \"-\" \"%s\" rt=%.3f req_id=",
			g.pick(genMethods), g.pick(genPaths), g.rng.IntN(1000000), g.rng.IntN(50), genStatus[g.rng.IntN(len(genStatus))],
			g.rng.IntN(90000), g.pick(genAgents), g.rng.Float64()*0.8)
		g.hex(16)
	case 1: // application log
		g.buf = ts.UTC().AppendFormat(g.buf, "2006-01-02T15:04:05.000000Z ")
		g.buf = fmt.Appendf(g.buf, "%-5s %s [worker-%d] %s.Handler - request done order_id=%d customer=c-%d amount=%d.%02d took=%dms trace=",
			lvl.name, app, g.rng.IntN(32), app, g.rng.IntN(10000000), g.rng.IntN(100000), g.rng.IntN(2000), g.rng.IntN(100), g.rng.IntN(900))
		g.hex(16)
		g.buf = append(g.buf, " span="...)
		g.hex(8)
	case 2: // error with a cause
		lvl = genLevels[5]
		g.buf = ts.UTC().AppendFormat(g.buf, "2006-01-02T15:04:05.000Z ")
		g.buf = fmt.Appendf(g.buf, "ERROR %s call failed host=%s.%s:%d attempt=%d/%d active=%d idle=%d err=%q id=",
			app, g.pick(genHosts), g.pick(genDomains), 5000+g.rng.IntN(4000), 1+g.rng.IntN(3), 3, g.rng.IntN(64), g.rng.IntN(16), g.pick(genErrors))
		g.hex(12)
	case 3: // sshd
		app = "sshd"
		g.buf = ts.UTC().AppendFormat(g.buf, "Jan _2 15:04:05 ")
		g.buf = fmt.Appendf(g.buf, "%s sshd[%d]: Accepted publickey for deploy from ", host, 1000+g.rng.IntN(60000))
		g.ip()
		g.buf = fmt.Appendf(g.buf, " port %d ssh2: ED25519 SHA256:", 1024+g.rng.IntN(64000))
		g.hex(43)
	default: // kubelet
		app = "kubelet"
		g.buf = fmt.Appendf(g.buf, "I%s %d %s.go:%d] \"Reconciling\" pod=\"prod/%s-%s-",
			ts.UTC().Format("0102 15:04:05.000000"), g.rng.IntN(100), g.pick(genWords), 10+g.rng.IntN(900), g.pick(genApps), strconv.FormatUint(g.rng.Uint64()%1e10, 36))
		g.hex(5)
		g.buf = fmt.Appendf(g.buf, "\" node=%q generation=%d", g.pick(genHosts), g.rng.IntN(500))
	}
	// Pad with key=value pairs of varied figures, then cut to the size.
	for len(g.buf) < size {
		g.buf = fmt.Appendf(g.buf, " %s=%d", g.pick(genWords), g.rng.IntN(1000000))
	}
	body := make([]byte, size)
	copy(body, g.buf)
	return frame.Message{
		Timestamp: ts.UnixNano(),
		Severity:  lvl.sev,
		Facility:  16 + uint8(g.rng.IntN(8)), // local0-local7
		Hostname:  []byte(host + "." + g.pick(genDomains)),
		App:       []byte(app),
		Body:      body,
	}
}
