package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/logdist/logdist/internal/testtool"
)

// The status page in a real browser (Debian's chromium, headless): it
// loads with no console error (a Content-Security-Policy violation
// included), shows every analyzer, and its numbers move when traffic
// flows. With LOGDIST_SCREENSHOT=FILE it saves a screenshot there (the
// README's).
func TestStatusPageInBrowser(t *testing.T) {
	chrome := testtool.Need(t, "chromium", "chromium")
	c := newCluster(t, []float64{0.5, 0.3, 0.2})

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome),
		chromedp.NoSandbox, // as root, chromium refuses to start without it
		chromedp.Flag("disable-gpu", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 600),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	defer cancelTimeout()

	var mu sync.Mutex
	var problems []string
	chromedp.ListenTarget(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			problems = append(problems, "exception: "+e.ExceptionDetails.Error())
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.APITypeError || e.Type == runtime.APITypeWarning || e.Type == runtime.APITypeAssert {
				var args []string
				for _, a := range e.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				problems = append(problems, fmt.Sprintf("console.%s: %s", e.Type, strings.Join(args, " ")))
			}
		case *log.EventEntryAdded:
			if e.Entry.Level == log.LevelError || e.Entry.Level == log.LevelWarning {
				problems = append(problems, fmt.Sprintf("%s %s: %s (%s)", e.Entry.Source, e.Entry.Level, e.Entry.Text, e.Entry.URL))
			}
		}
	})
	url := "http://" + c.admin + "/"
	if err := chromedp.Run(ctx, log.Enable(), runtime.Enable(), chromedp.Navigate(url), chromedp.WaitVisible("#rows tr", chromedp.ByQuery)); err != nil {
		t.Fatalf("loading %s in chromium: %v", url, err)
	}

	var names []string
	if err := chromedp.Run(ctx, chromedp.Evaluate(`[...document.querySelectorAll("#rows tr")].map(r => r.dataset.name)`, &names)); err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, ",") != "a1,a2,a3" {
		t.Fatalf("the page lists %v, want a1,a2,a3", names)
	}

	// Traffic: the page's packets/s must leave 0 and a1's share must
	// approach its weight's.
	a := newAgent(t, c.listen, "page")
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			a.send(t, 20, "page "+strconv.Itoa(i))
			time.Sleep(2 * time.Millisecond)
		}
	}()
	defer func() { close(stop); <-done; a.flush(t) }()
	var rate, share, version, health string
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := chromedp.Run(ctx,
			chromedp.Text("#in-rate", &rate, chromedp.ByQuery),
			chromedp.Text(`#rows tr[data-name="a1"] .share`, &share, chromedp.ByQuery),
			chromedp.Text("#version", &version, chromedp.ByQuery),
			chromedp.Text(`#rows tr[data-name="a1"] .health`, &health, chromedp.ByQuery),
		)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := strconv.ParseFloat(strings.TrimSuffix(rate, "k"), 64)
		if r > 0 && strings.HasPrefix(share, "50.") || strings.HasPrefix(share, "49.") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s of traffic the page shows %q packets/s and a1's share %q", rate, share)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if version != "1" || health != "up" {
		t.Fatalf("the page shows version %q and a1 %q, want 1 and up", version, health)
	}
	if path := os.Getenv("LOGDIST_SCREENSHOT"); path != "" {
		var png []byte
		if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot saved to %s", path)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Fatalf("the browser reported:\n%s", strings.Join(problems, "\n"))
	}
}

// The page stays usable with 1,000 analyzers: every row is there, and a
// refresh renders in well under its 2 s period.
func TestStatusPageThousandAnalyzers(t *testing.T) {
	chrome := testtool.Need(t, "chromium", "chromium")
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nsyslog-udp: \"\"\nloops: 1\nmax-analyzers: 1024\nlog-level: warn\nanalyzers:\n")
	for i := 0; i < 1000; i++ {
		// Forced down: never dialled, so 1,000 dead addresses cost nothing.
		fmt.Fprintf(&b, "  - {name: an-%04d, addr: \"127.0.0.1:%d\", weight: %d, state: forced-down}\n", i, 20000+i, 1+i%7)
	}
	file := dir + "/logdist.yaml"
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	ld := start(t, binary(t, "logdist"), "--config", file)
	admin := ld.fields["admin"]

	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.Flag("disable-gpu", true), chromedp.UserDataDir(t.TempDir()))...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	defer cancelTimeout()
	if err := chromedp.Run(ctx, chromedp.Navigate("http://"+admin+"/"), chromedp.WaitVisible("#rows tr", chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	var rows, refreshes int
	var renderMs string
	deadline := time.Now().Add(30 * time.Second)
	for refreshes < 3 {
		err := chromedp.Run(ctx,
			chromedp.Evaluate(`document.querySelectorAll("#rows tr").length`, &rows),
			chromedp.Evaluate(`Number(document.body.dataset.refreshes || 0)`, &refreshes),
			chromedp.Evaluate(`document.body.dataset.renderMs || ""`, &renderMs),
		)
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d refreshes in 30 s", refreshes)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ms, _ := strconv.ParseFloat(renderMs, 64)
	t.Logf("1,000 analyzers: %d rows, a refresh renders in %.1f ms", rows, ms)
	if rows != 1000 || ms > 500 {
		t.Fatalf("%d rows (want 1000), a refresh renders in %.1f ms (want well under the 2 s period)", rows, ms)
	}
}
