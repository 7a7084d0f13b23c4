package stack

import "strconv"

// counter indexes the stack's event counts. Every dropped packet is counted
// under the reason it was dropped, as gVisor and Linux's nstat do.
type counter int

const (
	cntIPIn counter = iota
	cntIPOut
	cntIPMalformed
	cntIPNotIPv4
	cntIPChecksum
	cntIPFragmentDropped
	cntIPFragmentOut
	cntIPNotForUs
	cntIPUnknownProto
	cntICMPIn
	cntICMPEchoReplies
	cntICMPMalformed
	cntICMPIgnored
	cntTCPIn
	cntTCPOut
	cntTCPGSOOut
	cntTCPOffloadIn
	cntTCPMalformed
	cntTCPChecksum
	cntTCPBadOptions
	cntTCPNoSocket
	cntTCPResetsSent
	cntTCPResetsReceived
	cntTCPActiveOpens
	cntTCPPassiveOpens
	cntTCPAttemptFails
	cntTCPEstabResets
	cntTCPRetransSegs
	cntTCPFastRetrans
	cntTCPLossProbes
	cntTCPTimeouts
	cntTCPSynRetrans
	cntTCPSynAckRetrans
	cntTCPListenOverflows
	cntTCPListenDrops
	cntTCPDeferAcceptDrops
	cntTCPICMPErrors
	cntTCPPMTUReductions
	cntTCPRTORevert
	cntICMPOutOfWindow
	cntTCPSynQueueDrops
	cntTCPSynCookiesSent
	cntTCPSynCookiesRecv
	cntTCPSynCookiesFailed
	cntTCPOutOfWindow
	cntTCPPAWSDrops
	cntTCPChallengeACKs
	cntTCPOOOQueued
	cntTCPOOODropped
	cntTCPDelayedACKs
	cntTCPZeroWindowProbes
	cntTCPKeepaliveProbes
	cntTCPAbortOnData
	cntTCPAbortOnClose
	cntTCPAbortOnTimeout
	cntTCPAbortOnLinger
	cntTCPFinWait2Timeouts
	cntTCPTimeWaitRecycled
	cntTCPUnacceptableACK
	cntTCPNoACKFlag
	cntTCPIgnored
	cntTCPSelfConnect
	cntIP6In
	cntIP6Out
	cntIP6Malformed
	cntIP6Jumbo
	cntIP6NoAddress
	cntIP6Multicast
	cntIP6HopLimitZero
	cntIP6BadSource
	cntIP6UnknownHeader
	cntIP6BadExtension
	cntIP6UnknownOption
	cntIP6FragmentDropped
	cntIP6NoNextHeader
	cntICMP6In
	cntICMP6Malformed
	cntICMP6EchoReplies
	cntICMP6NDIgnored
	cntICMP6Ignored
	cntICMP6ErrorsSent
	cntICMPRateLimited
	cntUDPIn
	cntUDPOut
	cntUDPMalformed
	cntUDPNoChecksum
	cntUDPChecksum
	cntUDPNoPort
	cntUDPRcvBufErrors
	cntUDPPortUnreachSent
	cntPingOut
	cntLinkTxQueueFull
	cntLinkShortBuffer
	cntTCPForwardRequests
	cntTCPForwardAccepted
	cntTCPForwardRejected
	cntTCPForwardDropped
	cntTCPForwardTimeouts
	cntTCPForwardReset
	cntTCPForwardDupSYN
	cntTCPForwardPendingFull
	cntIPForeign
	cntUDPForwardFlows
	cntUDPForwardEvicted
	cntUDPForwardIdle
	cntICMPForwardRequests
	cntICMPForwardPendingFull
	cntIPNoAddress
	numCounters
)

var counterNames = [numCounters]string{
	cntIPIn:                   "ip.in",
	cntIPOut:                  "ip.out",
	cntIPMalformed:            "ip.drop.malformed",
	cntIPNotIPv4:              "ip.drop.not_ipv4",
	cntIPChecksum:             "ip.drop.checksum",
	cntIPFragmentDropped:      "ip.drop.fragment",
	cntIPFragmentOut:          "ip.fragments.out",
	cntIPNotForUs:             "ip.drop.not_for_us",
	cntIPUnknownProto:         "ip.drop.unknown_protocol",
	cntICMPIn:                 "icmp.in",
	cntICMPEchoReplies:        "icmp.echo_replies",
	cntICMPMalformed:          "icmp.drop.malformed",
	cntICMPIgnored:            "icmp.drop.ignored",
	cntTCPIn:                  "tcp.in",
	cntTCPOut:                 "tcp.out",
	cntTCPGSOOut:              "tcp.out.gso_packets",
	cntTCPOffloadIn:           "tcp.in.checksum_offloaded",
	cntTCPMalformed:           "tcp.drop.malformed",
	cntTCPChecksum:            "tcp.drop.checksum",
	cntTCPBadOptions:          "tcp.bad_options",
	cntTCPNoSocket:            "tcp.no_socket",
	cntTCPResetsSent:          "tcp.resets_sent",
	cntTCPResetsReceived:      "tcp.resets_received",
	cntTCPActiveOpens:         "tcp.active_opens",
	cntTCPPassiveOpens:        "tcp.passive_opens",
	cntTCPAttemptFails:        "tcp.attempt_fails",
	cntTCPEstabResets:         "tcp.estab_resets",
	cntTCPRetransSegs:         "tcp.retrans_segs",
	cntTCPFastRetrans:         "tcp.fast_retrans",
	cntTCPLossProbes:          "tcp.loss_probes",
	cntTCPTimeouts:            "tcp.rto_timeouts",
	cntTCPSynRetrans:          "tcp.syn_retrans",
	cntTCPSynAckRetrans:       "tcp.synack_retrans",
	cntTCPListenOverflows:     "tcp.listen_overflows",
	cntTCPListenDrops:         "tcp.listen_drops",
	cntTCPDeferAcceptDrops:    "tcp.defer_accept_drops",
	cntTCPICMPErrors:          "tcp.icmp_errors",
	cntTCPPMTUReductions:      "tcp.pmtu_reductions",
	cntTCPRTORevert:           "tcp.rto_reverts",
	cntICMPOutOfWindow:        "icmp.out_of_window",
	cntTCPSynQueueDrops:       "tcp.syn_queue_drops",
	cntTCPSynCookiesSent:      "tcp.syncookies_sent",
	cntTCPSynCookiesRecv:      "tcp.syncookies_recv",
	cntTCPSynCookiesFailed:    "tcp.syncookies_failed",
	cntTCPOutOfWindow:         "tcp.drop.out_of_window",
	cntTCPPAWSDrops:           "tcp.drop.paws",
	cntTCPChallengeACKs:       "tcp.challenge_acks",
	cntTCPOOOQueued:           "tcp.ooo_queued",
	cntTCPOOODropped:          "tcp.drop.ooo",
	cntTCPDelayedACKs:         "tcp.delayed_acks",
	cntTCPZeroWindowProbes:    "tcp.zero_window_probes",
	cntTCPKeepaliveProbes:     "tcp.keepalive_probes",
	cntTCPAbortOnData:         "tcp.abort_on_data",
	cntTCPAbortOnClose:        "tcp.abort_on_close",
	cntTCPAbortOnTimeout:      "tcp.abort_on_timeout",
	cntTCPAbortOnLinger:       "tcp.abort_on_linger",
	cntTCPFinWait2Timeouts:    "tcp.fin_wait2_timeouts",
	cntTCPTimeWaitRecycled:    "tcp.time_wait_recycled",
	cntTCPUnacceptableACK:     "tcp.drop.unacceptable_ack",
	cntTCPNoACKFlag:           "tcp.drop.no_ack_flag",
	cntTCPIgnored:             "tcp.drop.ignored_in_state",
	cntTCPSelfConnect:         "tcp.self_connects_retried",
	cntIP6In:                  "ip6.in",
	cntIP6Out:                 "ip6.out",
	cntIP6Malformed:           "ip6.drop.malformed",
	cntIP6Jumbo:               "ip6.drop.jumbogram",
	cntIP6NoAddress:           "ip6.drop.no_ipv6_address",
	cntIP6Multicast:           "ip6.drop.multicast",
	cntIP6HopLimitZero:        "ip6.drop.hop_limit_0",
	cntIP6BadSource:           "ip6.drop.bad_source",
	cntIP6UnknownHeader:       "ip6.drop.unknown_next_header",
	cntIP6BadExtension:        "ip6.drop.bad_extension_header",
	cntIP6UnknownOption:       "ip6.drop.unknown_option",
	cntIP6FragmentDropped:     "ip6.drop.fragment",
	cntIP6NoNextHeader:        "ip6.drop.no_next_header",
	cntICMP6In:                "icmp6.in",
	cntICMP6Malformed:         "icmp6.drop.malformed",
	cntICMP6EchoReplies:       "icmp6.echo_replies",
	cntICMP6NDIgnored:         "icmp6.drop.nd_mld",
	cntICMP6Ignored:           "icmp6.drop.ignored",
	cntICMP6ErrorsSent:        "icmp6.errors_sent",
	cntICMPRateLimited:        "icmp.errors_rate_limited",
	cntUDPIn:                  "udp.in",
	cntUDPOut:                 "udp.out",
	cntUDPMalformed:           "udp.drop.malformed",
	cntUDPNoChecksum:          "udp.drop.no_checksum_ipv6",
	cntUDPChecksum:            "udp.drop.checksum",
	cntUDPNoPort:              "udp.no_port",
	cntUDPRcvBufErrors:        "udp.drop.rcvbuf_full",
	cntUDPPortUnreachSent:     "udp.port_unreachable_sent",
	cntPingOut:                "ping.echo_requests_sent",
	cntLinkTxQueueFull:        "link.drop.tx_queue_full",
	cntLinkShortBuffer:        "link.drop.short_buffer",
	cntTCPForwardRequests:     "tcp.forward.requests",
	cntTCPForwardAccepted:     "tcp.forward.accepted",
	cntTCPForwardRejected:     "tcp.forward.rejected",
	cntTCPForwardDropped:      "tcp.forward.dropped",
	cntTCPForwardTimeouts:     "tcp.forward.timeouts",
	cntTCPForwardReset:        "tcp.forward.reset_by_client",
	cntTCPForwardDupSYN:       "tcp.forward.syn_retransmits",
	cntTCPForwardPendingFull:  "tcp.forward.drop.pending_full",
	cntIPForeign:              "ip.in.promiscuous",
	cntUDPForwardFlows:        "udp.forward.flows",
	cntUDPForwardEvicted:      "udp.forward.evicted",
	cntUDPForwardIdle:         "udp.forward.idle_expired",
	cntICMPForwardRequests:    "icmp.forward.requests",
	cntICMPForwardPendingFull: "icmp.forward.drop.pending_full",
	cntIPNoAddress:            "ip.drop.no_ipv4_address",
}

// init catches a counter added without a name.
func init() {
	for i, n := range counterNames {
		if n == "" {
			panic("stack: counter " + strconv.Itoa(i) + " has no name")
		}
	}
}

// Counter is one named event count (drops, segments, resets...).
type Counter struct {
	Name  string
	Value uint64
}
