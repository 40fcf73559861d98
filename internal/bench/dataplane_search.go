package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// TrialResult is one trial: frames sent at a rate for a while, and how many
// arrived.
type TrialResult struct {
	// Rate is the rate asked for, frames/s (0: as fast as the source can).
	Rate float64 `json:"rate_pps"`
	// Offered is the rate the source really sent at: Sent / the trial's
	// length.
	Offered  float64 `json:"offered_pps"`
	Sent     uint64  `json:"sent"`
	Received uint64  `json:"received"`
}

// Loss is the fraction of the frames sent that did not arrive (0 when more
// arrived than were counted sent).
func (t TrialResult) Loss() float64 {
	if t.Sent == 0 || t.Received >= t.Sent {
		return 0
	}
	return float64(t.Sent-t.Received) / float64(t.Sent)
}

// Delivered is the rate at which frames arrived: Received over the trial's
// length (which Offered and Sent give).
func (t TrialResult) Delivered() float64 {
	if t.Sent == 0 {
		return 0
	}
	return t.Offered * float64(t.Received) / float64(t.Sent)
}

// MRR is CSIT's maximum receive rate: the median of the delivered rates of
// unthrottled trials (0 for none). Unlike NDR it needs no loss-free
// trial, so it moves much less on a host whose load starves the VPPs now
// and then.
func MRR(trials []TrialResult) float64 {
	var rates []float64
	for _, t := range trials {
		if t.Rate == 0 {
			rates = append(rates, t.Delivered())
		}
	}
	return Median(rates)
}

// Trial sends frames at pps (0: as fast as the source can) for the
// trial's length and says what arrived.
type Trial func(ctx context.Context, pps float64) (TrialResult, error)

// SearchResult is what a search found.
type SearchResult struct {
	// NDR and PDR are the offered rates (frames/s) of the fastest trials
	// with no loss and with at most PDRLoss; 0 when none passed.
	NDR float64 `json:"ndr_pps"`
	PDR float64 `json:"pdr_pps"`
	// SourceMax is the rate the source reached unthrottled (the faster
	// of the unthrottled load's trials): the search's ceiling. When NDR or PDR is there, the source,
	// not the path, was the limit.
	SourceMax float64 `json:"source_max_pps"`
	// Trials in the order they ran.
	Trials []TrialResult `json:"trials"`
	// Retries counts the loads whose first trial lost frames, so that a
	// second ran; RetriesPassed those whose second trial lost none (the
	// first trial's loss was the host's, not the path's).
	Retries       int `json:"retries"`
	RetriesPassed int `json:"retries_passed"`
}

// AtSource says whether the path passed at the source's full rate (with no
// loss, or for pdr with at most PDRLoss), so that the source, not the path,
// bounds NDR (or PDR): half or more of the unthrottled trials of the
// search passed (a lossy one is retried, see load; for the median of
// several searches, of all their unthrottled trials).
func (s SearchResult) AtSource(pdr bool) bool {
	var n, pass int
	for _, t := range s.Trials {
		if t.Rate != 0 {
			continue
		}
		n++
		if t.Loss() == 0 || (pdr && t.Loss() <= PDRLoss) {
			pass++
		}
	}
	return n > 0 && 2*pass >= n
}

// Median is the median of xs (0 for none).
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// MedianSearch folds the searches of several repetitions into one result:
// the medians of their NDR, PDR and source rates, and all their trials in
// order.
func MedianSearch(rs []SearchResult) SearchResult {
	if len(rs) == 1 {
		return rs[0]
	}
	var out SearchResult
	var ndr, pdr, src []float64
	for _, r := range rs {
		ndr, pdr, src = append(ndr, r.NDR), append(pdr, r.PDR), append(src, r.SourceMax)
		out.Trials = append(out.Trials, r.Trials...)
		out.Retries += r.Retries
		out.RetriesPassed += r.RetriesPassed
	}
	out.NDR, out.PDR, out.SourceMax = Median(ndr), Median(pdr), Median(src)
	return out
}

// minRateFraction is the lowest rate a search tries, as a fraction of the
// source's unthrottled rate.
const minRateFraction = 1e-3

// interval is where a search's threshold lies: loads at lo passed, at hi
// failed (hi is the ceiling before any failed).
type interval struct {
	lo, hi  float64
	offered float64 // the offered rate of the trial that set lo
}

func (iv interval) width() float64 { return iv.hi - iv.lo }

// raise records a pass at rate (a trial that offered offered); a pass
// outside the interval (noise: above a rate that failed) moves nothing.
func (iv *interval) raise(rate, offered float64) {
	if rate > iv.lo && rate <= iv.hi {
		iv.lo, iv.offered = rate, offered
	}
}

// lower records a fail at rate; a fail outside the interval moves nothing.
func (iv *interval) lower(rate float64) {
	if rate < iv.hi && rate > iv.lo {
		iv.hi = rate
	}
}

// verdict is what the trials at one load say, for each goal: whether it
// passed, and the offered rate of the trial that passed it.
type verdict struct {
	ndr, pdr                bool
	ndrOffered, pdrOffered  float64
	retried, retryPassedNDR bool
}

// load runs the trials of one load: one trial, and when that one lost
// frames a second at the same rate. A load fails a goal only when both
// trials failed it: MLRsearch's exceed ratio of 50 %, with a lossless
// trial trusted at once. On a shared host a VPP that is descheduled for
// part of a trial loses frames the path would not have lost, while nothing
// makes a lossy path look lossless (frames are counted where they
// arrive), so a single lossy trial is not evidence enough, a single clean
// one is.
func load(ctx context.Context, trial Trial, rate float64, res *SearchResult) (verdict, error) {
	first, err := trial(ctx, rate)
	if err != nil {
		return verdict{}, err
	}
	res.Trials = append(res.Trials, first)
	return decide(ctx, trial, rate, first, res)
}

// decide is load's verdict once its first trial ran: a second trial when
// that one lost frames.
func decide(ctx context.Context, trial Trial, rate float64, first TrialResult, res *SearchResult) (verdict, error) {
	if first.Loss() == 0 {
		return verdict{ndr: true, pdr: true, ndrOffered: first.Offered, pdrOffered: first.Offered}, nil
	}
	var v verdict
	if first.Loss() <= PDRLoss {
		v.pdr, v.pdrOffered = true, first.Offered
	}
	if err := ctx.Err(); err != nil {
		return v, err
	}
	again, err := trial(ctx, rate)
	if err != nil {
		return v, err
	}
	res.Trials = append(res.Trials, again)
	v.retried = true
	if again.Loss() == 0 {
		v.ndr, v.ndrOffered, v.retryPassedNDR = true, again.Offered, true
	}
	// Each goal's figure is the highest rate offered by a trial that
	// passed it: a lossless trial passes PDR too, so PDR is never under
	// NDR at one load.
	if again.Loss() <= PDRLoss {
		v.pdr, v.pdrOffered = true, max(v.pdrOffered, again.Offered)
	}
	return v, nil
}

// Search finds NDR and PDR by binary search, RFC 2544 section 26.1, made
// robust to a host that starves the VPPs now and then the way CSIT's
// MLRsearch is: each load is one trial, or two when the first lost frames,
// and fails a goal only when both did (see load). The first load runs the
// source unthrottled and sets the ceiling; each next load runs at the
// middle of the wider unresolved interval (NDR's first), and each narrows
// both: a pass raises a goal's floor, a fail lowers its ceiling. An
// interval is resolved when it is narrower than precision × its ceiling
// (so a threshold far below the source's rate is found as finely as one
// near it), or when its ceiling falls below minRateFraction of the
// source's rate (the figure is then 0). A result that contradicts an
// earlier one moves no bound past the other.
func Search(ctx context.Context, trial Trial, precision float64) (SearchResult, error) {
	var res SearchResult
	if precision <= 0 || precision >= 1 {
		return res, fmt.Errorf("search: precision %g: want more than 0 and less than 1", precision)
	}
	first, err := trial(ctx, 0)
	if err != nil {
		return res, fmt.Errorf("unthrottled trial: %w", err)
	}
	res.Trials = append(res.Trials, first)
	if first.Sent == 0 || first.Offered <= 0 {
		return res, errors.New("unthrottled trial: the source sent nothing")
	}
	res.SourceMax = first.Offered
	ndr := interval{hi: first.Offered}
	pdr := interval{hi: first.Offered}
	record := func(rate float64, v verdict) {
		if v.retried {
			res.Retries++
			if v.retryPassedNDR {
				res.RetriesPassed++
			}
		}
		if v.ndr {
			ndr.raise(rate, v.ndrOffered)
		} else {
			ndr.lower(rate)
		}
		if v.pdr {
			pdr.raise(rate, v.pdrOffered)
		} else {
			pdr.lower(rate)
		}
	}
	// The unthrottled load: its first trial is the one above.
	v, err := decide(ctx, trial, 0, first, &res)
	if err != nil {
		return res, fmt.Errorf("unthrottled trial: %w", err)
	}
	// A retry of the unthrottled load may have offered more than the
	// first trial (the source's own rate varies): the ceiling is the
	// faster, so that NDR and PDR never exceed it.
	for _, t := range res.Trials {
		res.SourceMax = max(res.SourceMax, t.Offered)
	}
	record(first.Offered, v)
	floor := minRateFraction * first.Offered
	open := func(iv interval) bool { return iv.width() > precision*iv.hi && iv.hi > floor }
	const maxTrials = 128 // each load halves an interval: never reached
	for len(res.Trials) < maxTrials {
		var rate float64
		switch {
		case open(ndr):
			rate = (ndr.lo + ndr.hi) / 2
		case open(pdr):
			rate = (pdr.lo + pdr.hi) / 2
		default:
			res.NDR, res.PDR = ndr.offered, pdr.offered
			return res, nil
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
		v, err := load(ctx, trial, rate, &res)
		if err != nil {
			return res, fmt.Errorf("trial at %.0f frames/s: %w", rate, err)
		}
		record(rate, v)
	}
	res.NDR, res.PDR = ndr.offered, pdr.offered
	return res, nil
}

// SearchPair runs two searches at once with their trials taking turns, the
// first search's first: on a host whose load drifts, both then see the
// same load, and their ratio means more than either figure. When one
// search ends the other goes on alone.
func SearchPair(ctx context.Context, trials [2]Trial, precision float64) ([2]SearchResult, [2]error) {
	var (
		res  [2]SearchResult
		errs [2]error
		t    turns
		wg   sync.WaitGroup
	)
	t.cond = sync.NewCond(&t.mu)
	for i := range trials {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer t.finish(i)
			res[i], errs[i] = Search(ctx, func(ctx context.Context, pps float64) (TrialResult, error) {
				t.take(i)
				defer t.give(i)
				return trials[i](ctx, pps)
			}, precision)
		}()
	}
	wg.Wait()
	return res, errs
}

// turns lets two goroutines run their trials alternately: take waits for
// one's turn (or for the other to be finished) and holds mu while the trial
// runs; give passes the turn on.
type turns struct {
	mu   sync.Mutex
	cond *sync.Cond
	next int     // whose turn it is; guarded by mu
	done [2]bool // guarded by mu
}

func (t *turns) take(i int) {
	t.mu.Lock()
	for t.next != i && !t.done[1-i] {
		t.cond.Wait()
	}
}

func (t *turns) give(i int) {
	t.next = 1 - i
	t.cond.Broadcast()
	t.mu.Unlock()
}

func (t *turns) finish(i int) {
	t.mu.Lock()
	t.done[i] = true
	t.cond.Broadcast()
	t.mu.Unlock()
}
