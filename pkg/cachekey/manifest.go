package cachekey

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"

	"golang.org/x/sync/errgroup"

	"github.com/s3-cache/s3-cache-buildkite-plugin/pkg/config"
)

// HashManifest returns the hex SHA-256 over every file the patterns match: for each file in
// sorted order, its path relative to dir (or as given, when the pattern is absolute) and the
// SHA-256 of its content. A pattern is a file, a directory (every file below it) or a glob
// (filepath.Match syntax). Files are hashed in parallel. A pattern that matches nothing is a
// configuration error: a cache keyed on nothing would be shared by unrelated builds. Patterns
// may overlap: a file several of them match is hashed once, so their order does not matter.
func HashManifest(ctx context.Context, patterns []string, dir, home string) (string, error) {
	files, err := manifestFiles(patterns, dir, home)
	if err != nil {
		return "", err
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	sums := make([][]byte, len(names))
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(2 * runtime.GOMAXPROCS(0))
	for i, name := range names {
		g.Go(func() error {
			if err := ctx.Err(); err != nil {
				return err
			}
			sum, err := hashFile(files[name])
			if err != nil {
				return fmt.Errorf("hash manifest file %s: %w", files[name], err)
			}
			sums[i] = sum
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return "", err
	}
	h := sha256.New()
	for i, name := range names {
		fmt.Fprintf(h, "%s\x00%x\n", filepath.ToSlash(name), sums[i])
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// manifestFiles returns the files the patterns match, by their name in the hash (relative to dir
// when below it) → their path on disk.
func manifestFiles(patterns []string, dir, home string) (map[string]string, error) {
	files := map[string]string{}
	for _, p := range patterns {
		abs, err := config.ResolvePath("manifest", p, dir, home)
		if err != nil {
			return nil, err
		}
		matches, err := filepath.Glob(abs)
		if err != nil {
			return nil, &config.Error{Key: "manifest", Msg: fmt.Sprintf("invalid pattern %q: %v", p, err)}
		}
		found := 0 // files this pattern matches, whether or not an earlier pattern matched them too
		for _, m := range matches {
			n, err := addFiles(files, m, dir)
			if err != nil {
				return nil, fmt.Errorf("hash manifest %s: %w", p, err)
			}
			found += n
		}
		if found == 0 {
			return nil, &config.Error{Key: "manifest", Msg: fmt.Sprintf("%q matches no file (looked in %s)", p, dir)}
		}
	}
	return files, nil
}

// addFiles adds root (a file, or every regular file below a directory) to files and returns how
// many it found. A file already in files stays there once.
func addFiles(files map[string]string, root, dir string) (int, error) {
	found := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := os.Stat(p) // the manifest follows symlinks: it is about content
		if err != nil || !info.Mode().IsRegular() {
			return nil //nolint:nilerr // dangling links and special files carry no content
		}
		name := p
		if rel, err := filepath.Rel(dir, p); err == nil && filepath.IsLocal(rel) {
			name = rel
		}
		files[name] = p
		found++
		return nil
	})
	return found, err
}

func hashFile(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}
