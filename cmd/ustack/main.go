// Command ustack runs the ustack userspace TCP/IP stack on a TUN device and
// talks to a running instance. See ../../../shared/spec/interface.md for the
// command line contract; "ustack help" prints the summary.
//
// Every subcommand is a func(args, stdout, stderr) int so that tests can run
// it in-process and check its output and exit status. Exit status: 0 success,
// 1 a runtime failure, 2 a usage error (bad flag, bad value, unavailable
// feature).
package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// command is one subcommand. Adding one is a line in commands.
type command struct {
	name     string
	synopsis string // first line(s) of usage, without "ustack "
	summary  string
	run      func(args []string, stdout, stderr io.Writer) int
}

// commands is in the order "ustack help" lists them. It is filled in init
// because cmdHelp reads it (a direct initializer would be a cycle).
var commands []command

func init() {
	commands = []command{
		{"run", "run [flags]", "run the stack on a TUN device and serve built-in services", cmdRun},
		{"ss", "ss [--ctl PATH] [--stats]", "list the daemon's sockets like ss -tan", cmdSS},
		{"nc", "nc [--ctl PATH] [-4dNnvz] [-p LPORT] [-q SECS] [-s LADDR] [-w SECS] HOST PORT...\nnc [--ctl PATH] -l [-dNnv] [-q SECS] [-s LADDR] [-p PORT | [LADDR] PORT]", "netcat through the daemon's stack, with netcat-openbsd's flags", cmdNC},
		{"lab", "lab [--list] [NAME...]", "run guided experiments in network namespaces", cmdLab},
		{"drill", "drill [--stacks ustack,gvisor,linux] [-v] FILE.pkt...", "run packetdrill-syntax conformance scripts", cmdDrill},
		{"help", "help", "print this help", cmdHelp},
	}
}

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

// dispatch runs the subcommand named by args[0].
func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help":
		name = "help"
	}
	for _, c := range commands {
		if c.name == name {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "ustack: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func cmdHelp(args []string, stdout, stderr io.Writer) int {
	usage(stdout)
	return 0
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "ustack: a userspace TCP/IP stack on a TUN device\n\nUsage:\n\n")
	for _, c := range commands {
		for _, line := range strings.Split(c.synopsis, "\n") {
			fmt.Fprintf(w, "  ustack %s\n", line)
		}
		fmt.Fprintf(w, "        %s\n\n", c.summary)
	}
	fmt.Fprintf(w, "Run \"ustack COMMAND -h\" for a command's flags.\n")
}

// notImplemented stands in for a subcommand that exists in the interface but
// not yet in this build.
