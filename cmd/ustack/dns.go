package main

import (
	"io"
	"net/netip"
	"strings"

	"golang.org/x/net/dns/dnsmessage"
)

// dnsNames are the names the dns service is authoritative for: the stack
// calls itself ustack, and .local is what a LAN user tries next.
var dnsNames = []string{"ustack.", "ustack.local."}

// dnsTTL is short: the addresses change from one daemon to the next.
const dnsTTL = 60

// dnsUDPSize is the EDNS payload size the service offers (RFC 6891 §6.2.5;
// 1232 is DNS Flag Day 2020's figure, safe without fragmentation).
const dnsUDPSize = 1232

// startDNS answers A and AAAA queries for dnsNames with the stack's own
// addresses, authoritatively, so that dig @10.0.0.2 ustack works: NXDOMAIN
// for other names under them, REFUSED for names elsewhere (we are nobody's
// resolver: RFC 8906 §3.1.4), an empty answer for other types of our names,
// NOTIMP for opcodes other than QUERY, FORMERR for a query it cannot read
// past the header. What cannot be read as a header at all is dropped, as
// a server does not answer noise (RFC 1035 §4.1.1).
func startDNS(env *serviceEnv, addr netip.AddrPort) (io.Closer, error) {
	return serveDatagrams(env, addr, "dns", func(q []byte) []byte { return dnsAnswer(q, env.addrs) })
}

// dnsAnswer builds the reply to one query datagram, or nil to stay silent.
func dnsAnswer(query []byte, addrs []netip.Addr) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil || h.Response {
		return nil
	}
	rh := dnsmessage.Header{ID: h.ID, Response: true, OpCode: h.OpCode, RecursionDesired: h.RecursionDesired}
	if h.OpCode != 0 {
		rh.RCode = dnsmessage.RCodeNotImplemented
		return dnsReply(rh, nil, nil, false)
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 {
		rh.RCode = dnsmessage.RCodeFormatError
		return dnsReply(rh, nil, nil, false)
	}
	q := qs[0]
	// An OPT record in the additional section means the client speaks
	// EDNS(0); it gets one back (RFC 6891 §7). Reading it is best effort.
	edns := false
	if p.SkipAllAnswers() == nil && p.SkipAllAuthorities() == nil {
		for {
			ah, err := p.AdditionalHeader()
			if err != nil {
				break
			}
			if ah.Type == dnsmessage.TypeOPT {
				edns = true
			}
			if p.SkipAdditional() != nil {
				break
			}
		}
	}
	switch dnsZone(q.Name.String()) {
	case zoneOutside:
		rh.RCode = dnsmessage.RCodeRefused
		return dnsReply(rh, &q, nil, edns)
	case zoneBelow:
		rh.Authoritative, rh.RCode = true, dnsmessage.RCodeNameError
		return dnsReply(rh, &q, nil, edns)
	}
	rh.Authoritative = true
	if q.Class != dnsmessage.ClassINET && q.Class != dnsmessage.ClassANY {
		return dnsReply(rh, &q, nil, edns)
	}
	var answers []netip.Addr
	for _, a := range addrs {
		if (a.Is4() && (q.Type == dnsmessage.TypeA || q.Type == dnsmessage.TypeALL)) ||
			(a.Is6() && (q.Type == dnsmessage.TypeAAAA || q.Type == dnsmessage.TypeALL)) {
			answers = append(answers, a)
		}
	}
	return dnsReply(rh, &q, answers, edns)
}

// Where a name is, seen from our zones.
const (
	zoneOutside = iota // in nobody's zone of ours
	zoneBelow          // under one of dnsNames, which has no such child
	zoneName           // one of dnsNames
)

// dnsZone places name (with its final dot) against dnsNames; DNS names
// compare without regard to ASCII case (RFC 4343).
func dnsZone(name string) int {
	where := zoneOutside
	for _, n := range dnsNames {
		switch {
		case strings.EqualFold(name, n):
			return zoneName
		case len(name) > len(n) && name[len(name)-len(n)-1] == '.' && strings.EqualFold(name[len(name)-len(n):], n):
			where = zoneBelow
		}
	}
	return where
}

// dnsReply encodes a reply: the question echoed, one record per address.
func dnsReply(h dnsmessage.Header, q *dnsmessage.Question, answers []netip.Addr, edns bool) []byte {
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), h)
	b.EnableCompression()
	if q != nil {
		b.StartQuestions()
		b.Question(*q)
		b.StartAnswers()
		for _, a := range answers {
			rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: dnsTTL}
			if a.Is4() {
				b.AResource(rh, dnsmessage.AResource{A: a.As4()})
			} else {
				b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: a.As16()})
			}
		}
	}
	if edns {
		b.StartAdditionals()
		var opt dnsmessage.ResourceHeader
		opt.SetEDNS0(dnsUDPSize, dnsmessage.RCodeSuccess, false)
		b.OPTResource(opt, dnsmessage.OPTResource{})
	}
	msg, err := b.Finish()
	if err != nil {
		return nil
	}
	return msg
}
