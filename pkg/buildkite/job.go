package buildkite

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Job is what the plugin needs to know about the running job.
type Job struct {
	ID           string // BUILDKITE_JOB_ID
	Organization string // BUILDKITE_ORGANIZATION_SLUG
	Pipeline     string // BUILDKITE_PIPELINE_SLUG
	Branch       string // BUILDKITE_BRANCH
	// DefaultBranch is BUILDKITE_PIPELINE_DEFAULT_BRANCH: only its builds that are not of a pull
	// request write the shared caches.
	DefaultBranch   string
	PullRequest     string // BUILDKITE_PULL_REQUEST: the number, "" when not a pull request
	PullRequestRepo string // BUILDKITE_PULL_REQUEST_REPO: where the pull request comes from
	Repo            string // BUILDKITE_REPO: the pipeline's repository
	Step            string // BUILDKITE_STEP_KEY, else BUILDKITE_LABEL
	StepID          string // BUILDKITE_STEP_ID: the same in every parallel job and retry of the step
	ParallelJob     int    // BUILDKITE_PARALLEL_JOB: this job's index in a parallel step, from 0
	ParallelJobs    int    // BUILDKITE_PARALLEL_JOB_COUNT; 0 when the step is not parallel
	ExitStatus      string // BUILDKITE_COMMAND_EXIT_STATUS (post-command only)
	Dir             string // the checkout: the hook's working directory
	Home            string
}

// JobFromEnv reads the job from the process environment.
func JobFromEnv() (Job, error) {
	dir, err := os.Getwd()
	if err != nil {
		return Job{}, fmt.Errorf("working directory: %w", err)
	}
	home, _ := os.UserHomeDir()
	step := os.Getenv("BUILDKITE_STEP_KEY")
	if step == "" {
		step = os.Getenv("BUILDKITE_LABEL")
	}
	pr := strings.TrimSpace(os.Getenv("BUILDKITE_PULL_REQUEST"))
	if pr == "false" {
		pr = ""
	}
	j := Job{
		ID:              os.Getenv("BUILDKITE_JOB_ID"),
		Organization:    os.Getenv("BUILDKITE_ORGANIZATION_SLUG"),
		Pipeline:        os.Getenv("BUILDKITE_PIPELINE_SLUG"),
		Branch:          os.Getenv("BUILDKITE_BRANCH"),
		DefaultBranch:   os.Getenv("BUILDKITE_PIPELINE_DEFAULT_BRANCH"),
		PullRequest:     pr,
		PullRequestRepo: os.Getenv("BUILDKITE_PULL_REQUEST_REPO"),
		Repo:            os.Getenv("BUILDKITE_REPO"),
		Step:            step,
		StepID:          os.Getenv("BUILDKITE_STEP_ID"),
		ExitStatus:      strings.TrimSpace(os.Getenv("BUILDKITE_COMMAND_EXIT_STATUS")),
		Dir:             dir,
		Home:            home,
	}
	if n, err := strconv.Atoi(os.Getenv("BUILDKITE_PARALLEL_JOB_COUNT")); err == nil && n > 0 {
		j.ParallelJobs = n
		j.ParallelJob, _ = strconv.Atoi(os.Getenv("BUILDKITE_PARALLEL_JOB"))
	}
	var missing []string
	for name, v := range map[string]string{"BUILDKITE_JOB_ID": j.ID, "BUILDKITE_ORGANIZATION_SLUG": j.Organization,
		"BUILDKITE_PIPELINE_SLUG": j.Pipeline} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return j, fmt.Errorf("not running in a Buildkite job: %s not set", strings.Join(missing, ", "))
	}
	return j, nil
}

// IsPullRequest reports whether the job builds a pull request.
func (j Job) IsPullRequest() bool { return j.PullRequest != "" }

// IsFork reports whether the job builds a pull request from another repository than the
// pipeline's: its author controls the command. The two URLs are compared without their scheme,
// user, ".git" suffix and case, so that the forms Buildkite gives the same repository agree.
func (j Job) IsFork() bool {
	return j.IsPullRequest() && j.PullRequestRepo != "" && repoID(j.PullRequestRepo) != repoID(j.Repo)
}

// repoID reduces a git URL (https://, ssh://, git://, or scp-like git@host:path) to host/path.
func repoID(url string) string {
	s := strings.ToLower(strings.TrimSpace(url))
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	if at, slash := strings.Index(s, "@"), strings.Index(s, "/"); at >= 0 && (slash < 0 || at < slash) {
		s = s[at+1:] // the user
	}
	if colon, slash := strings.Index(s, ":"), strings.Index(s, "/"); colon >= 0 && (slash < 0 || colon < slash) {
		host, rest := s[:colon], s[colon+1:]
		if port, p, ok := strings.Cut(rest, "/"); ok && port != "" && strings.Trim(port, "0123456789") == "" {
			rest = p // host:port/path
		}
		s = host + "/" + rest // or scp-like host:path
	}
	return strings.TrimSuffix(strings.TrimSuffix(s, "/"), ".git")
}
