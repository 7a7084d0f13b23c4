package stack

import (
	"log/slog"
	"net/netip"
	"time"

	"ustack/timers"
)

// Options are the stack's tunables. Start from DefaultOptions: the zero value
// of some fields (SynLinearTimeouts) is meaningful.
type Options struct {
	// Addr is the stack's own IPv4 address.
	Addr netip.Addr
	// Addr6 is its IPv6 address; the zero Addr: no IPv6.
	Addr6 netip.Addr
	// Clock supplies the time; nil means the wall clock.
	Clock timers.Clock

	FinTimeout        time.Duration // net.ipv4.tcp_fin_timeout
	TimeWait          time.Duration // TIME_WAIT length (Linux: fixed 60 s)
	SynRetries        int           // net.ipv4.tcp_syn_retries
	SynLinearTimeouts int           // net.ipv4.tcp_syn_linear_timeouts
	SynAckRetries     int           // net.ipv4.tcp_synack_retries
	Retries2          int           // net.ipv4.tcp_retries2
	Somaxconn         int           // net.core.somaxconn
	KeepaliveIdle     time.Duration // net.ipv4.tcp_keepalive_time
	KeepaliveIntvl    time.Duration // net.ipv4.tcp_keepalive_intvl
	KeepaliveProbes   int           // net.ipv4.tcp_keepalive_probes
	// SynCookies is net.ipv4.tcp_syncookies: SynCookiesOff,
	// SynCookiesOnFlood (Linux's default) or SynCookiesAlways.
	SynCookies int
	// LocalPortRange is net.ipv4.ip_local_port_range: where ephemeral
	// ports come from.
	LocalPortRange [2]uint16

	// RecvBuffer and SendBuffer are the per-connection buffer sizes in bytes.
	RecvBuffer int
	SendBuffer int

	// Timestamps, SACK and WindowScaling mirror net.ipv4.tcp_timestamps,
	// tcp_sack and tcp_window_scaling.
	Timestamps    bool
	SACK          bool
	WindowScaling bool
	// DSACK is net.ipv4.tcp_dsack: report duplicates (RFC 2883).
	DSACK bool
	// TailLossProbes is net.ipv4.tcp_early_retrans 3 or 4: probe the
	// tail of a flight before the RTO (RFC 8985).
	TailLossProbes bool
	// CongestionControl is net.ipv4.tcp_congestion_control: CUBIC by
	// default, as Linux.
	CongestionControl CongestionControl

	// Promiscuous takes packets to any address, not only the stack's own,
	// for the forwarders (SetTCPForwarder, SetUDPForwarder,
	// SetEchoForwarder) to terminate as the address the client dialled: a
	// transparent proxy's mode (Linux IP_TRANSPARENT). The stack's own
	// addresses then answer as without forwarders.
	Promiscuous bool
	// ForwardTimeout is how long a forwarded SYN waits for its handler's
	// decision before it is answered with RST.
	ForwardTimeout time.Duration
	// UDPFlowTimeout ends a forwarded UDP flow idle this long (RFC 4787
	// REQ-5: at least 2 minutes, 5 recommended).
	UDPFlowTimeout time.Duration

	// Packet, when set, sees every packet in (out=false) and out (out=true),
	// including the loopback path. pkt is only valid during the call.
	Packet func(out bool, pkt []byte)
	// Trace, when set, logs every state transition with the segment that
	// caused it.
	Trace *slog.Logger
}

// DefaultOptions returns Linux's defaults (see ../shared/spec/behaviours.md).
func DefaultOptions() Options {
	return Options{
		Addr:              netip.MustParseAddr("10.0.0.2"),
		FinTimeout:        60 * time.Second,
		TimeWait:          60 * time.Second,
		SynRetries:        6,
		SynLinearTimeouts: 4,
		SynAckRetries:     5,
		Retries2:          15,
		Somaxconn:         4096,
		KeepaliveIdle:     7200 * time.Second,
		KeepaliveIntvl:    75 * time.Second,
		KeepaliveProbes:   9,
		SynCookies:        SynCookiesOnFlood,
		LocalPortRange:    [2]uint16{32768, 60999},
		RecvBuffer:        4 << 20,
		SendBuffer:        1 << 20,
		Timestamps:        true,
		SACK:              true,
		WindowScaling:     true,
		DSACK:             true,
		TailLossProbes:    true,
		ForwardTimeout:    30 * time.Second,
		UDPFlowTimeout:    5 * time.Minute,
	}
}
