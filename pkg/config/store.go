package config

// Why a file: the store's keys alone, for the s3-cache command, which works on the bucket rather
// than on one cache and so has no path, restore or save to validate.

import (
	"strings"
	"time"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/s3"
)

// StoreFromEnv reads from environ ("NAME=value" strings) where the caches are and how to reach
// them: the store's keys (bucket, region, endpoint, profile, force-path-style, retries, sse, …)
// decoded as the hooks decode them, and the key prefix. Keys of a cache (path, restore, save, …)
// are not checked. A missing bucket is no error here: the caller may have one from elsewhere.
func StoreFromEnv(environ []string) (s3.Options, string, error) {
	env := map[string]string{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if ok && strings.HasPrefix(k, Prefix) {
			env[strings.TrimPrefix(k, Prefix)] = v
		}
	}
	var v vars
	if err := decodeVars(env, &v); err != nil {
		return s3.Options{}, "", err
	}
	prefix := strings.Trim(v.Prefix, "/")
	return storeOptions(&v, prefix), prefix, nil
}

// storeOptions are the store's keys of v: every s3.Options field that is configuration.
func storeOptions(v *vars, prefix string) s3.Options {
	return s3.Options{
		Bucket:            strings.TrimSpace(v.Bucket),
		Region:            v.Region,
		Endpoint:          v.Endpoint,
		Profile:           v.Profile,
		ForcePathStyle:    v.ForcePathStyle.p,
		Retries:           v.Retries,
		Concurrency:       v.Concurrency,
		PartSize:          int64(v.PartSize),
		StorageClass:      v.StorageClass,
		SSE:               v.SSE,
		SSEKMSKeyID:       v.SSEKMSKeyID,
		ConditionalWrites: v.ConditionalWrites.c,
		ProbePrefix:       probePrefix(prefix),
		StallTimeout:      time.Duration(v.StallTimeout),
	}
}
