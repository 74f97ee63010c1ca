package segment

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzDecodeRecord checks that DecodeRecord never panics, fails only with ErrCorrupt or
// io.ErrUnexpectedEOF, and that every record it accepts re-encodes to exactly the bytes it
// consumed (the format has one encoding per record and batch-end flag).
func FuzzDecodeRecord(f *testing.F) {
	for _, r := range []Record{
		{},
		{Position: 1, Index: 1, Stream: "s", Type: "t", ContentType: "application/json", Data: []byte(`{"a":1}`)},
		genRecord(7, 3),
		genRecord(36, 12),
		{Position: 1 << 62, Tags: []string{"x", "", "yy"}, Metadata: bytes.Repeat([]byte{0xff}, 200)},
	} {
		enc, err := AppendEncoded(nil, &r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// Random bytes almost never pass the CRC, which would hide the body parser from
		// the fuzzer. So also decode b[8:] framed with a correct length and CRC.
		if len(b) >= frameHeaderSize {
			fixed := bytes.Clone(b)
			putFrameHeader(fixed)
			checkDecode(t, fixed)
		}
		checkDecode(t, b)
	})
}

func checkDecode(t *testing.T, b []byte) {
	t.Helper()
	const limit = 1 << 16
	r, n, err := DecodeRecord(b, limit)
	if err != nil {
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("unexpected error class: %v", err)
		}
		if errors.Is(err, ErrCorrupt) {
			var ce *CorruptionError
			if !errors.As(err, &ce) {
				t.Fatalf("ErrCorrupt not wrapped in *CorruptionError: %v", err)
			}
		}
		return
	}
	if n < MinRecordBytes || n > len(b) || n > limit {
		t.Fatalf("consumed %d of %d bytes", n, len(b))
	}
	// Re-encode with the flags the input carried (the only field not in Record).
	flags := b[frameHeaderSize+offFlags]
	again := appendFrame(nil, &r, flags, encodedSize(&r))
	if !bytes.Equal(again, b[:n]) {
		t.Fatalf("re-encoding differs:\n in: %x\nout: %x", b[:n], again)
	}
	// The public encoder agrees for batch-end records.
	if flags == flagBatchEnd {
		pub, err := AppendEncoded(nil, &r)
		if err != nil || !bytes.Equal(pub, b[:n]) {
			t.Fatalf("AppendEncoded differs: %v", err)
		}
	}
	// The decoded record owns its memory: clobbering the input does not change it.
	clear(b)
	r2, _, err := DecodeRecord(again, limit)
	if err != nil {
		t.Fatalf("decode of re-encoding: %v", err)
	}
	if !sameRecord(r, r2) {
		t.Fatalf("decoded record aliases its input")
	}
}
