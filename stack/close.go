package stack

import (
	"syscall"
	"time"
)

// Closing a connection (RFC 9293 3.10.4, Linux tcp_close and tcp_shutdown):
// close() and shutdown() from the application, and the one way a
// connection ends and leaves the tables.

// closeLocked is close(2) on a connection. Unread received data turns the
// close into a reset (B32), as does SO_LINGER 0; otherwise a FIN follows
// the queued data and the connection finishes closing without us (B30).
func (e *endpoint) closeLocked(now time.Time) {
	if e.orphan {
		return
	}
	e.orphan = true
	unread := e.rcv.buf.Len() > 0
	e.shutRd, e.shutWr = true, true
	e.notifyRead()
	e.notifyWrite()
	switch e.state {
	case stateClosed:
		e.destroy()
		return
	case stateSynSent:
		e.close("close()", nil, 0)
		return
	case stateTimeWait, stateClosing, stateLastAck:
		return
	}
	if unread || e.linger == 0 {
		// Linux tcp_close: data_was_unread, or SO_LINGER 0.
		if unread {
			e.s.inc(cntTCPAbortOnClose)
		} else {
			e.s.inc(cntTCPAbortOnLinger)
		}
		e.sendRST(now)
		why := "close() with unread data: RST sent"
		if !unread {
			why = "close() with SO_LINGER 0: RST sent"
		}
		e.close(why, nil, 0)
		return
	}
	e.queueFIN(now, "close()")
	if e.state == stateFinWait2 {
		if e.linger2 < 0 {
			// TCP_LINGER2 -1: no FIN-WAIT-2 for an orphan (__tcp_close).
			e.s.inc(cntTCPAbortOnLinger)
			e.sendRST(now)
			e.close("close() in FIN-WAIT-2 with TCP_LINGER2 < 0: RST sent", nil, 0)
			return
		}
		e.armFinWait2(now)
	}
}

// queueFIN schedules our FIN after the queued data (RFC 9293 3.10.4).
func (e *endpoint) queueFIN(now time.Time, why string) {
	switch e.state {
	case stateSynRecv, stateEstablished:
		e.snd.finQueued = true
		e.setState(stateFinWait1, why, nil)
	case stateCloseWait:
		e.snd.finQueued = true
		e.setState(stateLastAck, why, nil)
	default:
		return
	}
	e.output(now)
}

// close is the one way a connection ends: CLOSED (traced with why and the
// segment that caused it), the error the application will see (0: none;
// an orphan has no application), then out of every table with its timers
// stopped and its waiters woken.
func (e *endpoint) close(why string, sg *segment, errno syscall.Errno) {
	if errno == syscall.ETIMEDOUT && e.icmpErr != 0 {
		errno = e.icmpErr // tcp_write_err: the soft error, if any, explains the timeout
	}
	e.setState(stateClosed, why, sg)
	if errno != 0 {
		if !e.orphan {
			e.softErr = errno
		}
		e.hardErr = errno
	}
	e.destroy()
}

// destroy removes the connection from every table and stops its timers;
// the application, if any, still holds the endpoint to read its error.
func (e *endpoint) destroy() {
	if e.gone {
		return
	}
	e.gone = true
	s := e.s
	e.state = stateClosed
	s.est.Remove(e.id)
	if e.owner != 0 {
		s.bind.Unbind(e.owner, e.id.LocalPort)
		e.owner = 0
	}
	if l := e.parent; l != nil {
		delete(l.synQ, e)
		l.removeFromAcceptQ(e)
		l.notify() // a forwarded child's Accept waits for its fate
	}
	s.timers.Stop(&e.rtxTimer)
	s.timers.Stop(&e.delackTimer)
	s.timers.Stop(&e.keepTimer)
	s.timers.Stop(&e.waitTimer)
	e.rcv.ooo = nil
	if e.orphan {
		e.rcv.buf.n = 0
		e.rcv.buf.release()
		e.snd.buf.n = 0
		e.snd.buf.release()
	}
	e.notifyRead()
	e.notifyWrite()
}

// enterTimeWait starts the 2MSL wait (B30, B37).
func (e *endpoint) enterTimeWait(now time.Time, why string, sg *segment) {
	e.setState(stateTimeWait, why, sg)
	e.s.timers.Stop(&e.rtxTimer)
	e.s.timers.Stop(&e.keepTimer)
	e.s.timers.Stop(&e.delackTimer)
	e.rcv.ackPending = false
	e.s.schedule(&e.waitTimer, now.Add(e.s.opts.TimeWait))
}

// timeWaitInput is Linux's tcp_timewait_state_process (B37).
func (e *endpoint) timeWaitInput(now time.Time, sg *segment) verdict {
	switch {
	case sg.has(flagRST):
		// RFC 1337 says ignore; Linux (tcp_rfc1337=0) kills the socket
		// when the RST is exactly at RCV.NXT.
		if sg.seq == e.rcv.nxt {
			e.close("RST in TIME-WAIT", sg, 0)
		} else {
			e.s.inc(cntTCPIgnored)
		}
	case sg.has(flagSYN) && !sg.has(flagACK) && sg.seq.gt(e.rcv.nxt):
		// A new incarnation may reuse the pair; its ISN starts beyond
		// anything the old one sent (Linux tcp_timewait_state_process).
		if l, ok := e.s.listenerFor(e.id.LocalAddr, e.id.LocalPort); ok {
			isn := e.snd.nxt.add(maxWindow + 2) // tw_snd_nxt + 65535 + 2
			e.s.inc(cntTCPTimeWaitRecycled)
			e.close("new SYN reuses the pair", sg, 0)
			l.synInput(now, sg, isn, true)
			return vDrop
		}
		return vOOWAck
	case sg.has(flagFIN):
		// A retransmitted FIN (our ACK was lost): ACK again, restart 2MSL.
		e.s.timers.Stop(&e.waitTimer)
		e.s.schedule(&e.waitTimer, now.Add(e.s.opts.TimeWait))
		e.sendACK(now)
	case sg.seqLen() > 0 || !e.acceptable(sg):
		return vOOWAck // Linux tcp_timewait_check_oow_rate_limit
	}
	return vDrop
}
