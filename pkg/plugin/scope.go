package plugin

// Why a file: which caches a build may read and write (docs/design.md#keys, Isolation) is
// decided here, from the job alone, the same way in both hooks.

import (
	"fmt"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/cachekey"
	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/config"
)

// scope is where a build saves and what it restores from.
type scope struct {
	write  string   // the namespace saves go to: "" is the shared one
	reads  []string // the namespaces restored from, in order: its own first, then the shared one
	why    string   // why write is what it is, for the log
	noSave string   // why nothing is saved, "" when saves are allowed
}

// scope applies the isolation key to the job. Only a build of the default branch that is not a
// pull request writes the shared namespace; a pull request has a namespace of its number, never
// that of its branch, so a pull request whose branch is called main cannot write main's caches.
// A pull request from a fork saves nothing unless fork-saves is on.
func (inv *Invocation) scope() scope {
	j, c := inv.Job, inv.Config
	var s scope
	switch {
	case c.Isolation == config.IsolationNone:
		s = scope{why: "isolation is none: every build shares the caches"}
	case j.IsPullRequest():
		s.write = cachekey.PullRequestNamespace(j.PullRequest)
		s.why = fmt.Sprintf("pull request #%s (branch %q) saves only to its own namespace", j.PullRequest, j.Branch)
	case j.DefaultBranch == "":
		s.write = cachekey.BranchNamespace(j.Branch)
		s.why = fmt.Sprintf("branch %q saves only to its own namespace: BUILDKITE_PIPELINE_DEFAULT_BRANCH is not set", j.Branch)
	case j.Branch == j.DefaultBranch:
		s.why = fmt.Sprintf("branch %q is the pipeline's default branch", j.Branch)
	default:
		s.write = cachekey.BranchNamespace(j.Branch)
		s.why = fmt.Sprintf("branch %q is not the pipeline's default branch (%s): it saves only to its own namespace", j.Branch, j.DefaultBranch)
	}
	s.reads = []string{s.write}
	if s.write != "" {
		s.reads = append(s.reads, "")
	}
	if j.IsFork() && !c.ForkSaves {
		s.noSave = fmt.Sprintf("fork pull request (from %s): not saving (fork-saves is off)", j.PullRequestRepo)
	}
	return s
}

// namespaceName names a namespace in the log.
func namespaceName(ns string) string {
	if ns == "" {
		return "the shared namespace"
	}
	return "namespace " + ns
}
