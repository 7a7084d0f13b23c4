package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"ustack/drill"
)

// cmdDrill runs packetdrill-syntax scripts on the named stacks:
//
//	ustack drill [--stacks ustack,gvisor,linux] [-v] [--timeout D] [packetdrill's options] FILE...
//
// packetdrill's own options (--ip_version=ipv6, --mtu=1520, --local_ip,
// --tolerance_usecs, ...) mean what they mean to packetdrill and override
// a script's option lines.
// One line per script and stack (PASS, FAIL: reason, SKIP: unsupported
// feature, DIVERGES for a documented difference from Linux), the expected
// and actual packet or result under each failure, then the summary line.
// Exit status 0 when nothing failed, 1 when something did, 2 on bad usage.
func cmdDrill(args []string, stdout, stderr io.Writer) int {
	pdOpts, args := drill.ParseArgs(args)
	if _, err := drill.ConfigFrom(pdOpts); err != nil {
		fmt.Fprintf(stderr, "ustack drill: %v\n", err)
		return 2
	}
	fs := flag.NewFlagSet("drill", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stacks := fs.String("stacks", strings.Join(drill.StackNames, ","), "comma-separated stacks to run on: ustack, gvisor, linux")
	verbose := fs.Bool("v", false, "trace every event, packet and call")
	timeout := fs.Duration("timeout", drill.DefaultTimeout, "wall-clock limit per script and stack")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: ustack drill [--stacks ustack,gvisor,linux] [-v] [--timeout D] [packetdrill's options] FILE.pkt...\n\n")
		fs.PrintDefaults()
		fmt.Fprintf(stderr, "\npacketdrill's options, with packetdrill's meaning:\n  %s\n", strings.Join(drill.OptionNames(), " "))
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "ustack drill: no script given")
		fs.Usage()
		return 2
	}
	var names []string
	for _, n := range strings.Split(*stacks, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if drill.Backends[n] == nil {
			fmt.Fprintf(stderr, "ustack drill: unknown stack %q (want ustack, gvisor or linux)\n", n)
			return 2
		}
		names = append(names, n)
	}
	if len(names) == 0 {
		fmt.Fprintln(stderr, "ustack drill: --stacks names no stack")
		return 2
	}
	// An interrupt stops the run between events: the current backend is
	// closed (the Linux namespace deleted) and no further script starts.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := drill.Options{Timeout: *timeout, Context: ctx, Args: pdOpts}
	var reps []drill.Report
	for _, path := range fs.Args() {
		if ctx.Err() != nil {
			break
		}
		s, err := drill.ParseFile(path)
		for _, stack := range names {
			var rep drill.Report
			if err != nil {
				rep = drill.Report{Script: path, Stack: stack, Outcome: drill.Fail, Reason: err.Error()}
			} else {
				if *verbose {
					fmt.Fprintf(stdout, "== %s [%s]\n", path, stack)
					opts.Verbose = stdout
				}
				rep = drill.RunScript(s, stack, opts)
			}
			reps = append(reps, rep)
			if *verbose {
				fmt.Fprintf(stdout, "   (%v)\n", rep.Elapsed.Round(time.Millisecond))
			}
		}
	}
	sum := drill.WriteReport(stdout, reps)
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "ustack drill: interrupted")
		return 1
	}
	if sum.Failed > 0 {
		return 1
	}
	return 0
}
