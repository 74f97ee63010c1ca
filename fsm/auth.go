package fsm

import (
	"crypto/sha256"
	"errors"
	"slices"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/cairndb/cairn/fsm/fsmpb"
	"github.com/cairndb/cairn/segment"
)

// Tokens (issue 9, "Authentication and authorisation"). The token table is replicated state like
// every other index: each CreateToken / RevokeToken request is written as one system record of
// kind KindAuth in the reserved stream AuthStream, and index.add rebuilds the table from those
// records at boot, after a snapshot install and on live apply. Only the SHA-256 of a token's
// secret is stored; the api layer makes the secret and shows it once.

// KindAuth is a system record in AuthStream that changes the token table. Its Data is the encoded
// fsmpb.AuthRequest; its ID is the token's id. Part of the on-disk format.
const KindAuth uint8 = 7

// AuthStream is the reserved stream holding the token table's records.
const AuthStream = "$auth"

// Record types of AuthStream records, as reads show them.
const (
	// TokenCreatedType is the type of a record that created a token.
	TokenCreatedType = "$token-created"
	// TokenRevokedType is the type of a record that revoked a token.
	TokenRevokedType = "$token-revoked"
)

// Roles a token may have.
const (
	// RoleAdmin may do everything.
	RoleAdmin = "admin"
	// RoleWriter may append and read.
	RoleWriter = "writer"
	// RoleReader may read.
	RoleReader = "reader"
)

// ErrTokenNotFound: a revoke named a token id that does not exist (or was already revoked).
var ErrTokenNotFound = errors.New("token not found")

// ErrTokenExists: a create reused an existing token id or secret hash. Ids and secrets are
// random, so this means a replayed or forged command, never a user mistake.
var ErrTokenExists = errors.New("token already exists")

// Token is one entry of the token table.
type Token struct {
	// ID is the token's public id (16 random bytes), used to revoke it.
	ID [16]byte
	// SecretSHA256 is the SHA-256 of the token's secret.
	SecretSHA256 [32]byte
	// Role is RoleAdmin, RoleWriter or RoleReader.
	Role string
	// Prefixes limits the token to streams whose names start with one of them; empty means all.
	Prefixes []string
	// Name is a human-readable label.
	Name string
	// CreatedUnixNano is the commit time of the record that created it.
	CreatedUnixNano int64
}

// tokenTable is the token table, part of index.
type tokenTable struct {
	byID   map[[16]byte]*Token
	byHash map[[32]byte]*Token
}

func newTokenTable() *tokenTable {
	return &tokenTable{byID: map[[16]byte]*Token{}, byHash: map[[32]byte]*Token{}}
}

// add applies one KindAuth record. Records were validated before they were written, so a record
// that does not decode is skipped (it can only come from a newer format).
func (tt *tokenTable) add(r *segment.Record) {
	var req fsmpb.AuthRequest
	if err := proto.Unmarshal(r.Data, &req); err != nil {
		return
	}
	switch op := req.GetOp().(type) {
	case *fsmpb.AuthRequest_CreateToken:
		c := op.CreateToken
		t := &Token{ID: [16]byte(c.GetId()), SecretSHA256: [32]byte(c.GetSecretSha256()), Role: c.GetRole(),
			Prefixes: slices.Clone(c.GetPrefixes()), Name: c.GetName(), CreatedUnixNano: r.Timestamp}
		tt.byID[t.ID], tt.byHash[t.SecretSHA256] = t, t
	case *fsmpb.AuthRequest_RevokeToken:
		if t, ok := tt.byID[[16]byte(op.RevokeToken.GetId())]; ok {
			delete(tt.byID, t.ID)
			delete(tt.byHash, t.SecretSHA256)
		}
	}
}

// validRole reports whether role is one of the three roles.
func validRole(role string) bool {
	return role == RoleAdmin || role == RoleWriter || role == RoleReader
}

// auth decides one AuthRequest: it validates it against the command and the token table (so
// every node decides the same) and writes its record.
func (a applier) auth(req *fsmpb.AuthRequest) Result {
	tt := a.f.idx.auth
	var id [16]byte
	typ := ""
	switch op := req.GetOp().(type) {
	case *fsmpb.AuthRequest_CreateToken:
		c := op.CreateToken
		if len(c.GetId()) != 16 || [16]byte(c.GetId()) == ([16]byte{}) {
			return Result{Err: invalidf("create token: id must be 16 non-zero bytes")}
		}
		if len(c.GetSecretSha256()) != sha256.Size {
			return Result{Err: invalidf("create token: secret hash has %d bytes, want %d", len(c.GetSecretSha256()), sha256.Size)}
		}
		if !validRole(c.GetRole()) {
			return Result{Err: invalidf("create token: role %q", c.GetRole())}
		}
		for i, p := range c.GetPrefixes() {
			if p == "" {
				return Result{Err: invalidf("create token: prefix %d is empty", i)}
			}
		}
		id = [16]byte(c.GetId())
		if _, dup := tt.byID[id]; dup {
			return Result{Err: ErrTokenExists}
		}
		if _, dup := tt.byHash[[32]byte(c.GetSecretSha256())]; dup {
			return Result{Err: ErrTokenExists}
		}
		typ = TokenCreatedType
	case *fsmpb.AuthRequest_RevokeToken:
		if len(op.RevokeToken.GetId()) != 16 {
			return Result{Err: invalidf("revoke token: id must be 16 bytes")}
		}
		id = [16]byte(op.RevokeToken.GetId())
		if _, ok := tt.byID[id]; !ok {
			return Result{Err: ErrTokenNotFound}
		}
		typ = TokenRevokedType
	default:
		return Result{Err: invalidf("auth request without an operation")}
	}
	data, err := proto.Marshal(req)
	if err != nil {
		return Result{Err: invalidf("auth request: %v", err)}
	}
	s, _ := a.f.idx.lookup(AuthStream)
	rev := uint64(0)
	if s != nil {
		rev = uint64(len(s.positions))
	}
	pos := a.f.nextPos
	a.f.write(segment.Record{Index: a.index, Revision: rev, Timestamp: a.ts, Kind: KindAuth, ID: id,
		Stream: AuthStream, Type: typ, ContentType: "application/x-protobuf", Data: data})
	return Result{LogIndex: a.index, Timestamp: a.ts, Streams: []StreamResult{{Stream: AuthStream, Count: 1,
		FirstRevision: rev, LastRevision: rev, FirstPosition: pos, LastPosition: pos}}}
}

// TokenBySecret returns the live token whose secret is secret, if any. It compares SHA-256
// hashes, so the lookup time does not depend on how much of a wrong secret matches.
func (f *FSM) TokenBySecret(secret []byte) (Token, bool) {
	h := sha256.Sum256(secret)
	f.mu.RLock()
	defer f.mu.RUnlock()
	t, ok := f.idx.auth.byHash[h]
	if !ok {
		return Token{}, false
	}
	return *t, true
}

// Tokens returns every live token, oldest first (ties by id).
func (f *FSM) Tokens() []Token {
	f.mu.RLock()
	out := make([]Token, 0, len(f.idx.auth.byID))
	for _, t := range f.idx.auth.byID {
		out = append(out, *t)
	}
	f.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].CreatedUnixNano != out[j].CreatedUnixNano {
			return out[i].CreatedUnixNano < out[j].CreatedUnixNano
		}
		return strings.Compare(string(out[i].ID[:]), string(out[j].ID[:])) < 0
	})
	return out
}
