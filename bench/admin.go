package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"

	"github.com/logdist/logdist/proxy/status"
)

// AnalyzersURL turns an admin address (host:port, http://host:port, or a
// full URL) into the analyzers endpoint.
func AnalyzersURL(admin string) (string, error) {
	if !strings.Contains(admin, "://") {
		admin = "http://" + admin
	}
	u, err := url.Parse(admin)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("bad admin URL %q: want http://host:port", admin)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/api/v1/analyzers"
	}
	return u.String(), nil
}

// FetchAnalyzers reads logdist's per-analyzer counters.
func FetchAnalyzers(ctx context.Context, admin string) ([]status.Analyzer, error) {
	u, err := AnalyzersURL(admin)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot read analyzer counters: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("cannot read analyzer counters: GET %s: %s", u, resp.Status)
	}
	var out []status.Analyzer
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("cannot read analyzer counters from %s: %w", u, err)
	}
	return out, nil
}

// Shares compares the packets each analyzer got between two readings with
// its weight share, and returns the largest absolute difference (0.001 is
// a tenth of a percentage point). Analyzers are matched by name.
func Shares(before, after []status.Analyzer) ([]Share, *float64) {
	prev := map[string]uint64{}
	for _, a := range before {
		prev[a.Name] = a.Packets
	}
	var total uint64
	var wsum float64
	out := make([]Share, 0, len(after))
	for _, a := range after {
		d := a.Packets - min(prev[a.Name], a.Packets)
		total += d
		wsum += a.Weight
		out = append(out, Share{Name: a.Name, Weight: a.Weight, Packets: d})
	}
	var worst float64
	for i := range out {
		s := &out[i]
		if wsum > 0 {
			s.WeightShare = s.Weight / wsum
		}
		if total > 0 {
			s.ActualShare = float64(s.Packets) / float64(total)
		}
		worst = math.Max(worst, math.Abs(s.ActualShare-s.WeightShare))
	}
	return out, &worst
}
