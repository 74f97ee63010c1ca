package fsm

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"testing"

	"github.com/cairndb/cairn/fsm/fsmpb"
)

func createTokenReq(n byte, secret, role string, prefixes ...string) *fsmpb.Request {
	h := sha256.Sum256([]byte(secret))
	tid := make([]byte, 16)
	tid[15] = n
	return &fsmpb.Request{Kind: &fsmpb.Request_Auth{Auth: &fsmpb.AuthRequest{Op: &fsmpb.AuthRequest_CreateToken{
		CreateToken: &fsmpb.CreateToken{Id: tid, SecretSha256: h[:], Role: role, Prefixes: prefixes, Name: "t" + string('0'+n)}}}}}
}

func revokeTokenReq(n byte) *fsmpb.Request {
	tid := make([]byte, 16)
	tid[15] = n
	return &fsmpb.Request{Kind: &fsmpb.Request_Auth{Auth: &fsmpb.AuthRequest{Op: &fsmpb.AuthRequest_RevokeToken{
		RevokeToken: &fsmpb.RevokeToken{Id: tid}}}}}
}

// tokenNames lists the live tokens as "name:role".
func tokenNames(f *FSM) []string {
	var out []string
	for _, t := range f.Tokens() {
		out = append(out, t.Name+":"+t.Role)
	}
	return out
}

// TestTokens: the token table is replicated state kept in $auth records: created and revoked by
// commands, rebuilt on reopen and after a snapshot install; bad requests change nothing.
func TestTokens(t *testing.T) {
	dir := t.TempDir()
	f := mustOpen(t, dir)
	r := mustOK(t, apply1(t, f, 1, 10, createTokenReq(1, "s1", RoleWriter, "orders-")))
	if r.Streams[0].Stream != AuthStream || r.Streams[0].FirstPosition != 1 {
		t.Fatalf("create result %+v", r)
	}
	mustOK(t, apply1(t, f, 2, 20, createTokenReq(2, "s2", RoleReader)))
	mustOK(t, apply1(t, f, 3, 30, createTokenReq(3, "s3", RoleAdmin)))
	mustOK(t, apply1(t, f, 4, 40, revokeTokenReq(3)))

	tok, ok := f.TokenBySecret([]byte("s1"))
	if !ok || tok.Role != RoleWriter || len(tok.Prefixes) != 1 || tok.Prefixes[0] != "orders-" || tok.CreatedUnixNano != 10 {
		t.Fatalf("token s1: %+v %v", tok, ok)
	}
	if _, ok := f.TokenBySecret([]byte("s3")); ok {
		t.Fatal("a revoked token still authenticates")
	}
	if _, ok := f.TokenBySecret([]byte("nope")); ok {
		t.Fatal("an unknown secret authenticates")
	}
	if got := tokenNames(f); len(got) != 2 || got[0] != "t1:writer" || got[1] != "t2:reader" {
		t.Fatalf("tokens %v", got)
	}

	// Rejected requests write nothing.
	before := f.LastPosition()
	bad := createTokenReq(4, "s4", "root")
	short := createTokenReq(5, "s5", RoleReader)
	short.GetAuth().GetCreateToken().SecretSha256 = []byte{1}
	for i, c := range []struct {
		req  *fsmpb.Request
		want error
	}{
		{bad, ErrInvalidCommand},
		{short, ErrInvalidCommand},
		{createTokenReq(1, "other", RoleReader), ErrTokenExists}, // id reused
		{createTokenReq(6, "s1", RoleReader), ErrTokenExists},    // secret reused
		{revokeTokenReq(3), ErrTokenNotFound},                    // already revoked
		{createTokenReq(7, "s7", RoleReader, ""), ErrInvalidCommand},
	} {
		if res := apply1(t, f, uint64(5+i), 50, c.req); !errors.Is(res.Err, c.want) {
			t.Fatalf("case %d: %v, want %v", i, res.Err, c.want)
		}
	}
	if f.LastPosition() != before {
		t.Fatal("a rejected auth request wrote a record")
	}

	// The records are an ordinary system stream.
	evs, err := f.ReadStream(AuthStream, 0, Forward, 10)
	if err != nil || len(evs) != 4 || evs[3].Type != TokenRevokedType || evs[0].Kind != KindAuth {
		t.Fatalf("$auth: %d records, err %v", len(evs), err)
	}

	// Snapshot install and restart rebuild the table.
	snap := mustSnapshot(t, f)
	g := mustOpen(t, t.TempDir())
	if err := g.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	if got := tokenNames(g); len(got) != 2 {
		t.Fatalf("after restore: %v", got)
	}
	f.Close()
	h := mustOpen(t, dir)
	if _, ok := h.TokenBySecret([]byte("s2")); !ok || len(h.Tokens()) != 2 {
		t.Fatalf("after reopen: %v", tokenNames(h))
	}
}
