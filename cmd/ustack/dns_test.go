package main

import (
	"net/netip"
	"slices"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

var dnsTestAddrs = []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("fd00::2")}

// dnsQuery encodes a query as dig sends it: recursion desired, and an
// EDNS(0) OPT record when edns is set.
func dnsQuery(t *testing.T, id uint16, name string, typ dnsmessage.Type, edns bool) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	b.StartQuestions()
	if err := b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET}); err != nil {
		t.Fatal(err)
	}
	if edns {
		b.StartAdditionals()
		var opt dnsmessage.ResourceHeader
		opt.SetEDNS0(4096, dnsmessage.RCodeSuccess, false)
		if err := b.OPTResource(opt, dnsmessage.OPTResource{Options: []dnsmessage.Option{{Code: 10, Data: []byte("cookie12")}}}); err != nil {
			t.Fatal(err)
		}
	}
	msg, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// dnsParse decodes a reply whole.
func dnsParse(t *testing.T, reply []byte) dnsmessage.Message {
	t.Helper()
	if reply == nil {
		t.Fatal("no reply")
	}
	var m dnsmessage.Message
	if err := m.Unpack(reply); err != nil {
		t.Fatalf("the reply does not parse: %v", err)
	}
	return m
}

// answerAddrs lists the A and AAAA records of a reply.
func answerAddrs(m dnsmessage.Message) []netip.Addr {
	var out []netip.Addr
	for _, r := range m.Answers {
		switch b := r.Body.(type) {
		case *dnsmessage.AResource:
			out = append(out, netip.AddrFrom4(b.A))
		case *dnsmessage.AAAAResource:
			out = append(out, netip.AddrFrom16(b.AAAA))
		}
	}
	return out
}

func TestDNSAnswersOwnNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		typ  dnsmessage.Type
		want []netip.Addr
	}{
		{"ustack.", dnsmessage.TypeA, dnsTestAddrs[:1]},
		{"UStack.", dnsmessage.TypeAAAA, dnsTestAddrs[1:]},
		{"ustack.local.", dnsmessage.TypeA, dnsTestAddrs[:1]},
		{"ustack.", dnsmessage.TypeALL, dnsTestAddrs},
		{"ustack.", dnsmessage.TypeMX, nil}, // NODATA: the name exists
	} {
		m := dnsParse(t, dnsAnswer(dnsQuery(t, 0x1234, tc.name, tc.typ, false), dnsTestAddrs))
		h := m.Header
		if h.ID != 0x1234 || !h.Response || !h.Authoritative || !h.RecursionDesired || h.RecursionAvailable || h.RCode != dnsmessage.RCodeSuccess {
			t.Errorf("%s %v: header %+v, want an authoritative NOERROR response to id 0x1234 with RD echoed", tc.name, tc.typ, h)
		}
		if len(m.Questions) != 1 || m.Questions[0].Name.String() != tc.name || m.Questions[0].Type != tc.typ {
			t.Errorf("%s %v: question not echoed: %+v", tc.name, tc.typ, m.Questions)
		}
		if got := answerAddrs(m); !slices.Equal(got, tc.want) {
			t.Errorf("%s %v: answers %v, want %v", tc.name, tc.typ, got, tc.want)
		}
		for _, r := range m.Answers {
			if r.Header.TTL != dnsTTL || r.Header.Name.String() != tc.name {
				t.Errorf("%s %v: record header %+v", tc.name, tc.typ, r.Header)
			}
		}
		if len(m.Additionals) != 0 {
			t.Errorf("%s %v: an OPT record to a client without EDNS: %+v", tc.name, tc.typ, m.Additionals)
		}
	}
}

// A name under ours that is not ours does not exist (authoritatively);
// one elsewhere is refused, as we are nobody's resolver.
func TestDNSOtherNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		want dnsmessage.RCode
		aa   bool
	}{
		{"www.ustack.", dnsmessage.RCodeNameError, true},
		{"a.b.USTACK.local.", dnsmessage.RCodeNameError, true},
		{"example.com.", dnsmessage.RCodeRefused, false},
		{"notustack.", dnsmessage.RCodeRefused, false},
		{"local.", dnsmessage.RCodeRefused, false},
		{".", dnsmessage.RCodeRefused, false},
	} {
		m := dnsParse(t, dnsAnswer(dnsQuery(t, 7, tc.name, dnsmessage.TypeA, false), dnsTestAddrs))
		if m.Header.RCode != tc.want || m.Header.Authoritative != tc.aa || len(m.Answers) != 0 || m.Header.ID != 7 {
			t.Errorf("%s: %+v with %d answers, want %v, authoritative %v, no answers", tc.name, m.Header, len(m.Answers), tc.want, tc.aa)
		}
	}
}

// dig sends EDNS(0) with a cookie by default: the reply carries an OPT
// record back, without the cookie (RFC 7873 §5.1: a server without cookie
// support ignores the option).
func TestDNSEDNS(t *testing.T) {
	m := dnsParse(t, dnsAnswer(dnsQuery(t, 9, "ustack.", dnsmessage.TypeA, true), dnsTestAddrs))
	if got := answerAddrs(m); !slices.Equal(got, dnsTestAddrs[:1]) {
		t.Errorf("answers %v", got)
	}
	if len(m.Additionals) != 1 || m.Additionals[0].Header.Type != dnsmessage.TypeOPT {
		t.Fatalf("additionals %+v, want one OPT record", m.Additionals)
	}
	opt := m.Additionals[0]
	if opt.Header.Class != dnsUDPSize || len(opt.Body.(*dnsmessage.OPTResource).Options) != 0 {
		t.Errorf("OPT %+v, want payload size %d and no options", opt, dnsUDPSize)
	}
}

func TestDNSBadQueries(t *testing.T) {
	good := dnsQuery(t, 5, "ustack.", dnsmessage.TypeA, false)

	if r := dnsAnswer(good[:7], dnsTestAddrs); r != nil {
		t.Errorf("a datagram shorter than a header was answered: %x", r)
	}
	resp := slices.Clone(good)
	resp[2] |= 0x80 // QR: a response, which a server never answers
	if r := dnsAnswer(resp, dnsTestAddrs); r != nil {
		t.Errorf("a response was answered: %x", r)
	}

	notify := slices.Clone(good)
	notify[2] |= 4 << 3 // opcode NOTIFY
	if m := dnsParse(t, dnsAnswer(notify, dnsTestAddrs)); m.Header.RCode != dnsmessage.RCodeNotImplemented || m.Header.ID != 5 {
		t.Errorf("NOTIFY: %+v, want NOTIMP", m.Header)
	}

	cut := good[:len(good)-3] // the question's type and class cut short
	if m := dnsParse(t, dnsAnswer(cut, dnsTestAddrs)); m.Header.RCode != dnsmessage.RCodeFormatError {
		t.Errorf("truncated question: %+v, want FORMERR", m.Header)
	}

	none := slices.Clone(good[:12])
	none[5] = 0 // QDCOUNT 0
	if m := dnsParse(t, dnsAnswer(none, dnsTestAddrs)); m.Header.RCode != dnsmessage.RCodeFormatError {
		t.Errorf("no question: %+v, want FORMERR", m.Header)
	}
}

func FuzzDNSAnswer(f *testing.F) {
	f.Add([]byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 6, 'u', 's', 't', 'a', 'c', 'k', 0, 0, 1, 0, 1})
	f.Fuzz(func(t *testing.T, q []byte) {
		if r := dnsAnswer(q, dnsTestAddrs); r != nil {
			var m dnsmessage.Message
			if err := m.Unpack(r); err != nil {
				t.Fatalf("a reply that does not parse: %v", err)
			}
		}
	})
}
