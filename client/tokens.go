package client

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"

	"github.com/cairndb/cairn/api/cairnpb"
)

// Token administration (a cluster running with --auth; every call needs an admin token, see
// WithToken).

// Roles a token may have.
const (
	// RoleAdmin may do everything, including token and cluster administration.
	RoleAdmin = "admin"
	// RoleWriter may append to and read its streams.
	RoleWriter = "writer"
	// RoleReader may read its streams.
	RoleReader = "reader"
)

// TokenInfo describes a token, never its secret.
type TokenInfo struct {
	// ID is the token's id (UUID text), for RevokeToken.
	ID string `json:"id"`
	// Role is RoleAdmin, RoleWriter or RoleReader.
	Role string `json:"role"`
	// Prefixes limits the token to streams starting with one of them; empty means all streams.
	Prefixes []string `json:"prefixes,omitempty"`
	// Name is the token's label.
	Name string `json:"name,omitempty"`
	// Created is when the token was created (commit time).
	Created time.Time `json:"created"`
}

func roleToPB(role string) (cairnpb.Role, error) {
	switch role {
	case RoleAdmin:
		return cairnpb.Role_ROLE_ADMIN, nil
	case RoleWriter:
		return cairnpb.Role_ROLE_WRITER, nil
	case RoleReader:
		return cairnpb.Role_ROLE_READER, nil
	}
	return 0, fmt.Errorf("%w: role %q: want admin, writer or reader", ErrInvalidArgument, role)
}

func tokenFromPB(t *cairnpb.TokenInfo) TokenInfo {
	role := ""
	switch t.GetRole() {
	case cairnpb.Role_ROLE_ADMIN:
		role = RoleAdmin
	case cairnpb.Role_ROLE_WRITER:
		role = RoleWriter
	case cairnpb.Role_ROLE_READER:
		role = RoleReader
	}
	return TokenInfo{ID: t.GetId(), Role: role, Prefixes: t.GetPrefixes(), Name: t.GetName(), Created: t.GetCreated().AsTime()}
}

// authCall makes one token call with the client's retry rules, on the leader.
func (c *Client) authCall(ctx context.Context, op string, opts []CallOption, attempt func(context.Context, cairnpb.AuthClient) error) error {
	err := c.invoke(ctx, call{route: routeLeader, attempt: func(ctx context.Context, cc *grpc.ClientConn) error {
		return attempt(ctx, cairnpb.NewAuthClient(cc))
	}}, c.callConfig(opts))
	if err != nil {
		return fmt.Errorf("cairn: %s: %w", op, err)
	}
	return nil
}

// CreateToken makes a token with role, limited to streams starting with one of prefixes (none:
// every stream), and returns its secret, which cannot be shown again, and its description. A
// retry after an unknown outcome may leave an unused token behind: list and revoke it.
func (c *Client) CreateToken(ctx context.Context, role string, prefixes []string, name string, opts ...CallOption) (secret string, info TokenInfo, err error) {
	r, err := roleToPB(role)
	if err != nil {
		return "", TokenInfo{}, err
	}
	err = c.authCall(ctx, "create token", opts, func(ctx context.Context, cl cairnpb.AuthClient) error {
		resp, err := cl.CreateToken(ctx, &cairnpb.CreateTokenRequest{Role: r, Prefixes: prefixes, Name: name})
		if err == nil {
			secret, info = resp.GetSecret(), tokenFromPB(resp.GetToken())
		}
		return err
	})
	return secret, info, err
}

// ListTokens lists the live tokens, oldest first.
func (c *Client) ListTokens(ctx context.Context, opts ...CallOption) ([]TokenInfo, error) {
	var out []TokenInfo
	err := c.authCall(ctx, "list tokens", opts, func(ctx context.Context, cl cairnpb.AuthClient) error {
		resp, err := cl.ListTokens(ctx, &cairnpb.ListTokensRequest{})
		if err == nil {
			out = out[:0]
			for _, t := range resp.GetTokens() {
				out = append(out, tokenFromPB(t))
			}
		}
		return err
	})
	return out, err
}

// RevokeToken deletes the token with id; it stops working on each node once applied there.
func (c *Client) RevokeToken(ctx context.Context, id string, opts ...CallOption) error {
	return c.authCall(ctx, "revoke token "+id, opts, func(ctx context.Context, cl cairnpb.AuthClient) error {
		_, err := cl.RevokeToken(ctx, &cairnpb.RevokeTokenRequest{Id: id})
		return err
	})
}
