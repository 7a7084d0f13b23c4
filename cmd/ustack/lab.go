package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"ustack/lab"
	"ustack/netns"
)

// cmdLab is "ustack lab [--list] [NAME...]": the guided experiments, each
// in a network namespace of its own. Exit status 0 only when every
// experiment it ran matched.
func cmdLab(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ustack lab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	list := fs.Bool("list", false, "list the experiments and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: ustack lab [--list] [NAME...]\n\n"+
			"Runs the named experiments (all when none is named), each in a network\n"+
			"namespace of its own, and says whether what happened matches the\n"+
			"behaviour ids it demonstrates. Needs root.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if *list {
		for _, e := range lab.Experiments() {
			fmt.Fprintf(stdout, "%-20s %-9s %s\n", e.Name, e.IDList(), e.Title)
		}
		return 0
	}
	exps := lab.Experiments()
	if fs.NArg() > 0 {
		exps = nil
		for _, name := range fs.Args() {
			e, ok := lab.Lookup(name)
			if !ok {
				fmt.Fprintf(stderr, "ustack lab: unknown experiment %q (\"ustack lab --list\" lists them)\n", name)
				return 2
			}
			exps = append(exps, e)
		}
	}
	if os.Geteuid() != 0 {
		fmt.Fprintf(stderr, "ustack lab: the experiments make network namespaces and TUN devices, which needs root (running as uid %d); try sudo\n", os.Geteuid())
		return 2
	}
	if ok, reason := netns.Available(); !ok {
		fmt.Fprintf(stderr, "ustack lab: %s\n", reason)
		return 1
	}
	// ^C stops the experiment under way; its namespace is still deleted.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var results []lab.Result
	for _, e := range exps {
		if ctx.Err() != nil {
			break
		}
		results = append(results, lab.Run(ctx, e, stdout))
	}
	failed := 0
	var notRun []string // "closed-port (nc is not installed ...)"
	if len(results) > 1 || ctx.Err() != nil {
		fmt.Fprintln(stdout, "Summary:")
	}
	for _, r := range results {
		verdict := "MATCH"
		switch {
		case len(r.Missing) > 0:
			verdict = "NOT RUN"
			notRun = append(notRun, fmt.Sprintf("%s could not run: %v", r.Name, r.Err))
		case !r.Match:
			verdict = "MISMATCH"
			failed++
		}
		if len(results) > 1 || ctx.Err() != nil {
			fmt.Fprintf(stdout, "  %-20s %-8s (%.1f s)\n", r.Name, verdict, r.Took.Seconds())
		}
	}
	if ctx.Err() != nil {
		fmt.Fprintf(stderr, "ustack lab: interrupted after %d of %d experiments\n", len(results), len(exps))
		return 1
	}
	if len(results) > 1 {
		fmt.Fprintf(stdout, "%d of %d experiments matched", len(results)-failed-len(notRun), len(results))
		if len(notRun) > 0 {
			fmt.Fprintf(stdout, ", %d could not run", len(notRun))
		}
		fmt.Fprintln(stdout)
	}
	// A missing tool is not the stack's failure, but nothing was shown.
	for _, s := range notRun {
		fmt.Fprintf(stderr, "ustack lab: %s\n", s)
	}
	if failed > 0 || len(notRun) > 0 {
		return 1
	}
	return 0
}
