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
	Step         string // BUILDKITE_STEP_KEY, else BUILDKITE_LABEL
	StepID       string // BUILDKITE_STEP_ID: the same in every parallel job and retry of the step
	ParallelJob  int    // BUILDKITE_PARALLEL_JOB: this job's index in a parallel step, from 0
	ParallelJobs int    // BUILDKITE_PARALLEL_JOB_COUNT; 0 when the step is not parallel
	ExitStatus   string // BUILDKITE_COMMAND_EXIT_STATUS (post-command only)
	Dir          string // the checkout: the hook's working directory
	Home         string
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
	j := Job{
		ID:           os.Getenv("BUILDKITE_JOB_ID"),
		Organization: os.Getenv("BUILDKITE_ORGANIZATION_SLUG"),
		Pipeline:     os.Getenv("BUILDKITE_PIPELINE_SLUG"),
		Branch:       os.Getenv("BUILDKITE_BRANCH"),
		Step:         step,
		StepID:       os.Getenv("BUILDKITE_STEP_ID"),
		ExitStatus:   strings.TrimSpace(os.Getenv("BUILDKITE_COMMAND_EXIT_STATUS")),
		Dir:          dir,
		Home:         home,
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
