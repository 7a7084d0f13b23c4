package stack

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// The ring keeps bytes in order through wrap-around, growth, release and
// out-of-order writes, against a plain slice as the model.
func TestRingAgainstModel(t *testing.T) {
	r := newRing(100000)
	var model []byte
	rng := rand.New(rand.NewPCG(1, 2))
	next := byte(0)
	for step := 0; step < 20000; step++ {
		switch rng.IntN(4) {
		case 0, 1:
			p := make([]byte, rng.IntN(5000))
			for i := range p {
				p[i] = next
				next++
			}
			n := r.Write(p)
			model = append(model, p[:n]...)
			next -= byte(len(p) - n)
		case 2:
			p := make([]byte, rng.IntN(7000))
			n := r.Read(p)
			if !bytes.Equal(p[:n], model[:n]) {
				t.Fatalf("step %d: read differs from the model", step)
			}
			model = model[n:]
		case 3:
			if r.Len() == 0 {
				r.release()
			}
		}
		if r.Len() != len(model) {
			t.Fatalf("step %d: Len %d, model %d", step, r.Len(), len(model))
		}
	}
}

// writeAt and commit deliver out-of-order data in order.
func TestRingOutOfOrder(t *testing.T) {
	r := newRing(64)
	r.Write([]byte("ab"))
	r.writeAt(3, []byte("fg"))
	r.writeAt(0, []byte("cde"))
	r.commit(5)
	p := make([]byte, 10)
	if n := r.Read(p); string(p[:n]) != "abcdefg" {
		t.Fatalf("read %q", p[:n])
	}
}
