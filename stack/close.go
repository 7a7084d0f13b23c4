package stack

import "time"

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
