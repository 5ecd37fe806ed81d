package main

import (
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/sluicegw/sluice/recording"
)

func (c *cli) replay(args []string) error {
	fs := c.newFlags("replay", "replay [--dir DIR | --config FILE] SESSION_ID | --list")
	dir := fs.String("dir", "", "recordings `DIR`ectory (default: recording.dir of --config, else ./sluice-data/recordings)")
	configPath := fs.String("config", "", "take the recordings directory from this configuration `FILE`")
	list := fs.Bool("list", false, "list the recorded sessions instead of replaying one")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	switch {
	case *dir != "" && *configPath != "":
		return usageErr("replay: give --dir or --config, not both")
	case *list && len(pos) > 0:
		return usageErr("replay: --list takes no SESSION_ID")
	case !*list && len(pos) != 1:
		return usageErr("replay needs one SESSION_ID (or --list)")
	}
	if *dir == "" {
		if *dir, err = recordingsDir(*configPath); err != nil {
			return err
		}
	}
	if *list {
		return c.listRecordings(*dir)
	}

	path, err := recording.FindFile(*dir, pos[0])
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	defer f.Close()
	rep, err := recording.WriteTranscript(c.stdout, f)
	if err != nil {
		return fmt.Errorf("replay %s: %w", path, err)
	}
	if !rep.Intact {
		fmt.Fprintf(c.stderr, "refserver: %s: the recording has been altered or damaged (%s)\n", path, rep.Problem)
		return exitError{code: 1}
	}
	return nil
}

// recordingsDir is the recording directory a configuration names, or the
// default one when configPath is empty.
func recordingsDir(configPath string) (string, error) {
	if configPath != "" {
		cfg, err := LoadConfig(configPath)
		if err != nil {
			return "", err
		}
		return cfg.Recording.Dir, nil
	}
	cfg, err := ParseConfig(exampleConfig, exampleConfigName)
	if err != nil {
		return "", err
	}
	return cfg.Recording.Dir, nil
}

func (c *cli) listRecordings(dir string) error {
	sums, err := recording.List(dir)
	if err != nil {
		return err
	}
	if len(sums) == 0 {
		fmt.Fprintf(c.stdout, "no recordings in %s\n", dir)
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SESSION\tSTART (UTC)\tSUBJECT\tTARGET\tSTATUS\tSIZE")
	for _, s := range sums {
		start := "-"
		if !s.Start.IsZero() {
			start = s.Start.UTC().Format("2006-01-02 15:04:05")
		}
		status := "complete"
		switch {
		case s.Problem != "":
			status = "unreadable: " + s.Problem
		case !s.Complete:
			status = "incomplete"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, start, dash(s.Subject), dash(s.Target), status, byteSize(s.Size))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "\n%d %s in %s; `refserver replay ID` prints one and verifies its hash chain.\n",
		len(sums), plural(len(sums), "recording", "recordings"), filepath.Clean(dir))
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
