// Package drill owns ustack's differential conformance runner: it parses
// scripts in packetdrill's language (the subset TCP and UDP tests use, see
// shared/spec/packetdrill.md) in any of its three IP versions (config.go),
// and plays each script against a stack under test — ustack itself,
// gVisor's netstack, or the Linux kernel — judging every outbound packet
// and system call result the way packetdrill does.
//
// The pieces, in the order a script flows through them:
//
//   - parse.go turns a file into a Script (events with times, syscalls,
//     packets, shell commands); syntax errors say file:line:col and what was
//     expected. Features outside the subset are recorded, not rejected: a
//     script that uses one is SKIPped with the feature named, never passed.
//   - profile.go is the sysctl profile a script runs under (packetdrill's
//     Linux defaults, plus the script's own `sysctl` lines).
//   - interp.go runs the events on one Backend: timing and tolerance,
//     the implicit connection state of packetdrill (ports, ISNs, timestamps),
//     blocking calls.
//   - packet.go builds inbound packets and decodes outbound ones; match.go
//     compares an outbound packet with the script's expectation.
//   - backend.go is the interface a stack implements; backend_ustack.go,
//     backend_gvisor.go and backend_linux.go are the three stacks. The two
//     userspace stacks run on virtual clocks (vstack.go emulates blocking
//     calls over their non-blocking sockets), so a script with a 60 s timer
//     runs in milliseconds; Linux runs in real time inside a network
//     namespace made for the run.
//   - run.go runs files on stacks and formats the report `ustack drill`
//     prints.
package drill
