package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/fsm/fsmpb"
)

// The Auth service: token administration. The auth interceptor lets only admins call it.

// TokenPrefix starts every token the cluster makes, so a leaked one is recognisable (secret
// scanners) and cannot be confused with another credential.
const TokenPrefix = "cairn_"

// tokenSecretBytes is the entropy of a token: 32 random bytes (256 bits).
const tokenSecretBytes = 32

// newTokenSecret returns a fresh token: TokenPrefix and 32 random bytes in base64url.
func newTokenSecret() (string, error) {
	b := make([]byte, tokenSecretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("token secret: %w", err)
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

var errNoTokens = errors.New("this node's store keeps no tokens")

// tokenLister lists tokens; *fsm.FSM implements it.
type tokenLister interface{ Tokens() []fsm.Token }

func roleFromPB(r cairnpb.Role) (string, bool) {
	switch r {
	case cairnpb.Role_ROLE_ADMIN:
		return fsm.RoleAdmin, true
	case cairnpb.Role_ROLE_WRITER:
		return fsm.RoleWriter, true
	case cairnpb.Role_ROLE_READER:
		return fsm.RoleReader, true
	}
	return "", false
}

func roleToPB(r string) cairnpb.Role {
	switch r {
	case fsm.RoleAdmin:
		return cairnpb.Role_ROLE_ADMIN
	case fsm.RoleWriter:
		return cairnpb.Role_ROLE_WRITER
	case fsm.RoleReader:
		return cairnpb.Role_ROLE_READER
	}
	return cairnpb.Role_ROLE_UNSPECIFIED
}

func tokenInfo(t fsm.Token) *cairnpb.TokenInfo {
	return &cairnpb.TokenInfo{Id: formatUUID(t.ID), Role: roleToPB(t.Role), Prefixes: t.Prefixes, Name: t.Name,
		Created: commitTime(t.CreatedUnixNano)}
}

// maxTokenNameBytes bounds a token's label.
const maxTokenNameBytes = 255

// CreateToken implements cairnpb.AuthServer. The secret is made here (on the leader: a follower
// forwards the request), only its SHA-256 is proposed, and the secret is returned once.
func (s *Service) CreateToken(ctx context.Context, req *cairnpb.CreateTokenRequest) (*cairnpb.CreateTokenResponse, error) {
	const op = "create_token"
	var b badRequest
	role, ok := roleFromPB(req.GetRole())
	if !ok {
		b.add("role", violationInvalidEnum, "role must be ROLE_ADMIN, ROLE_WRITER or ROLE_READER")
	}
	for i, p := range req.GetPrefixes() {
		s.checkName(&b, fmt.Sprintf("prefixes[%d]", i), p, false)
	}
	if n := len(req.GetName()); n > maxTokenNameBytes {
		b.add("name", violationTooLong, "name has %d bytes, max %d", n, maxTokenNameBytes)
	} else if hasControl(req.GetName()) {
		b.add("name", violationControlCharacter, "name contains a control character")
	}
	if err := b.err(); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	secret, err := newTokenSecret()
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	id := newUUID()
	hash := sha256.Sum256([]byte(secret))
	cmd := &fsmpb.Request{Kind: &fsmpb.Request_Auth{Auth: &fsmpb.AuthRequest{Op: &fsmpb.AuthRequest_CreateToken{
		CreateToken: &fsmpb.CreateToken{Id: id[:], SecretSha256: hash[:], Role: role, Prefixes: req.GetPrefixes(), Name: req.GetName()}}}}}
	res, err := s.propose(ctx, cmd)
	if err != nil {
		return forwardAuth(ctx, s, op, err, func(ctx context.Context, c cairnpb.AuthClient) (*cairnpb.CreateTokenResponse, error) {
			return c.CreateToken(ctx, req)
		})
	}
	s.log.Info("token created", "id", formatUUID(id), "name", req.GetName(), "role", role, "prefixes", req.GetPrefixes())
	return &cairnpb.CreateTokenResponse{Secret: secret, Token: tokenInfo(fsm.Token{ID: id, Role: role,
		Prefixes: req.GetPrefixes(), Name: req.GetName(), CreatedUnixNano: res.Timestamp})}, nil
}

// ListTokens implements cairnpb.AuthServer from this node's applied state.
func (s *Service) ListTokens(ctx context.Context, _ *cairnpb.ListTokensRequest) (*cairnpb.ListTokensResponse, error) {
	tl, ok := s.node.Store().(tokenLister)
	if !ok {
		return nil, s.fail(ctx, "list_tokens", errNoTokens)
	}
	out := &cairnpb.ListTokensResponse{}
	for _, t := range tl.Tokens() {
		out.Tokens = append(out.Tokens, tokenInfo(t))
	}
	return out, nil
}

// RevokeToken implements cairnpb.AuthServer.
func (s *Service) RevokeToken(ctx context.Context, req *cairnpb.RevokeTokenRequest) (*cairnpb.RevokeTokenResponse, error) {
	const op = "revoke_token"
	id, err := parseUUID(req.GetId())
	if err != nil {
		var b badRequest
		b.add("id", violationInvalidUUID, "%v", err)
		return nil, s.fail(ctx, op, b.err())
	}
	cmd := &fsmpb.Request{Kind: &fsmpb.Request_Auth{Auth: &fsmpb.AuthRequest{Op: &fsmpb.AuthRequest_RevokeToken{
		RevokeToken: &fsmpb.RevokeToken{Id: id[:]}}}}}
	if _, err := s.propose(ctx, cmd); err != nil {
		return forwardAuth(ctx, s, op, err, func(ctx context.Context, c cairnpb.AuthClient) (*cairnpb.RevokeTokenResponse, error) {
			return c.RevokeToken(ctx, req)
		})
	}
	s.log.Info("token revoked", "id", req.GetId())
	return &cairnpb.RevokeTokenResponse{}, nil
}

// forwardAuth forwards a token change that failed with err (not leader) to the leader, one hop,
// or fails with err.
func forwardAuth[T proto.Message](ctx context.Context, s *Service, op string, err error,
	call func(context.Context, cairnpb.AuthClient) (T, error)) (T, error) {
	var zero T
	addr, ok := s.forwardTarget(ctx, op, err, false)
	if !ok {
		return zero, s.fail(ctx, op, err)
	}
	resp, err := forwardConn(ctx, s, op, addr, true, func(ctx context.Context, cc grpc.ClientConnInterface) (T, error) {
		return call(ctx, cairnpb.NewAuthClient(cc))
	})
	if err != nil {
		return zero, s.fail(ctx, op, err)
	}
	return resp, nil
}
