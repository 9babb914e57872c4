package plugin

// Why a file: the summary for people on the build page (the annotate key), from building its
// Markdown to running buildkite-agent, in one place.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/buildkite"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cache"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cachekey"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/config"
)

// annotateTimeout bounds one buildkite-agent annotate: the summary is never worth holding up the
// job (the agent retries a failing API call for longer than that).
const annotateTimeout = 5 * time.Second

// summaryRow is one row of the annotation: one restore, or the save of one level.
type summaryRow struct {
	op      string       // restore or save
	level   config.Level // "" when there is none (a miss)
	result  string       // exact hit, fallback hit, miss, saved, not saved: why, failed
	moved   bool         // an archive was transferred: size, entries and throughput mean something
	size    int64        // archive bytes
	entries int64
	took    time.Duration // 0: not measured
}

// restoreRow describes a restore. took is the hook's own measure of it, for the rows the cache
// has no duration for (a miss, a failure).
func restoreRow(res cache.Restored, err error, took time.Duration) summaryRow {
	r := summaryRow{op: "restore", level: res.Key.Level, took: took}
	switch {
	case err != nil:
		r.result = "failed (see the log)"
	case res.Hit == cache.Miss:
		r.result = "miss"
	default:
		r.result, r.moved = string(res.Hit)+" hit", true
		r.size, r.entries = res.Size, res.Stats.Entries
		if res.Duration > 0 {
			r.took = res.Duration
		}
		if res.Warm {
			r.result, r.moved = string(res.Hit)+" hit (already in place, nothing downloaded)", false
		}
	}
	return r
}

// saveRows describes a save: one row per key, whether it was stored, skipped or failed.
func saveRows(saved []cache.Saved, err error) []summaryRow {
	rows := make([]summaryRow, len(saved))
	for i, s := range saved {
		r := summaryRow{op: "save", level: s.Key.Level}
		switch {
		case s.Stored:
			r.result, r.moved, r.size, r.entries, r.took = "saved", true, s.Size, s.Stats.Entries, s.Duration
		case s.Skipped != "":
			r.result = "not saved: " + s.Skipped
		case err != nil:
			r.result = "failed (see the log)"
		default:
			r.result = "not saved" // the save stopped before this key (cancelled)
		}
		rows[i] = r
	}
	return rows
}

// skippedRow describes a save the hook did not attempt, for why.
func skippedRow(k cachekey.Key, why string) summaryRow {
	return summaryRow{op: "save", level: k.Level, result: "not saved: " + why}
}

// annotationContext names this plugin instance's annotation in the step: every job of the step
// (parallel jobs, retries) appends to the same one, and another instance or step has its own.
// BUILDKITE_STEP_ID identifies the step; without it (older agents), its key or label does.
func (inv *Invocation) annotationContext() string {
	step := inv.Job.StepID
	if step == "" {
		step = inv.Job.Step
	}
	sum := sha256.Sum256([]byte(step + "\x00" + inv.instanceHash()))
	return "s3-cache-" + hex.EncodeToString(sum[:8])
}

// annotationMarkdown is one self-contained table: appends of parallel jobs arrive in any order
// and the agent joins them as they come, so a row never relies on another append's header. The
// leading blank line ends the table of the append before.
func annotationMarkdown(paths []string, job buildkite.Job, rows []summaryRow) string {
	var b strings.Builder
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = "`" + cell(strings.ReplaceAll(p, "`", "'")) + "`"
	}
	fmt.Fprintf(&b, "\n| s3-cache %s | level | result | size | entries | time | throughput |\n", strings.Join(names, " "))
	b.WriteString("|:--|:--|:--|--:|--:|--:|--:|\n")
	for _, r := range rows {
		op := r.op
		if job.ParallelJobs > 0 {
			op = fmt.Sprintf("%s (job %d of %d)", r.op, job.ParallelJob+1, job.ParallelJobs)
		}
		level, size, entries, took, rate := "—", "—", "—", "—", "—"
		if r.level != "" {
			level = string(r.level)
		}
		if r.took > 0 {
			took = r.took.Round(time.Millisecond).String()
		}
		if r.moved {
			size, entries = buildkite.Bytes(r.size), fmt.Sprint(r.entries)
			if r.took > 0 {
				rate = buildkite.Bytes(buildkite.Rate(r.size, r.took)) + "/s"
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", op, level, cell(r.result), size, entries, took, rate)
	}
	return b.String()
}

// cell keeps text inside one table cell: one line, pipes escaped.
func cell(s string) string {
	s = strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
	return strings.ReplaceAll(s, "|", `\|`)
}

// annotate appends rows to this instance's annotation, when the annotate key is on and
// buildkite-agent is on PATH (a job outside an agent has nothing to annotate). It never fails
// the hook: a failed or slow agent is a warning, and cancellation ends it.
func (inv *Invocation) annotate(ctx context.Context, rows []summaryRow) {
	if !inv.Config.Annotate || len(rows) == 0 || ctx.Err() != nil {
		return
	}
	agent, err := exec.LookPath("buildkite-agent")
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, annotateTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, agent, "annotate", "--context", inv.annotationContext(), "--style", "info", "--append")
	cmd.Stdin = strings.NewReader(annotationMarkdown(inv.Config.Paths, inv.Job, rows))
	var out tail
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second // a child of the agent that keeps the output open does not hold the hook
	if err := cmd.Run(); err != nil {
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			err = fmt.Errorf("no answer within %s", annotateTimeout)
		case ctx.Err() != nil:
			err = ctx.Err()
		}
		inv.Log.Warnf("could not annotate the build (buildkite-agent annotate): %v%s", err, lastLine(out.String()))
	}
}

// tail keeps the end of a command's output, which says why it failed, however much it writes.
type tail struct{ b []byte }

func (t *tail) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = append(t.b[:0], t.b[len(t.b)-4096:]...)
	}
	return len(p), nil
}

func (t *tail) String() string { return string(t.b) }

// lastLine is the last non-blank line of the agent's output, which says why it failed.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if last := strings.TrimSpace(lines[len(lines)-1]); last != "" {
		return ": " + last
	}
	return ""
}
