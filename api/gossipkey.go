package api

import (
	"context"
	"encoding/base64"
	"fmt"

	"github.com/cairndb/cairn/api/cairnpb"
	"github.com/cairndb/cairn/cluster"
)

// GossipAdmin is what the GossipKey call needs from the node (*cluster.Node has it). It is
// separate from Admin so that nodes and fakes without it still serve the rest; the call then
// answers UNIMPLEMENTED.
type GossipAdmin interface {
	ChangeGossipKeys(op cluster.GossipKeyOp, key []byte) (cluster.GossipKeyring, error)
}

// GossipKey implements cairnpb.ClusterServer: it lists or changes this node's gossip keyring.
// Keys travel base64 in the request (over mutual TLS in production) and only fingerprints come
// back.
func (s *Service) GossipKey(ctx context.Context, req *cairnpb.GossipKeyRequest) (*cairnpb.GossipKeyResponse, error) {
	const op = "gossip_key"
	ga, ok := s.node.(GossipAdmin)
	if !ok {
		return nil, s.fail(ctx, op, errNoAdmin)
	}
	var cop cluster.GossipKeyOp
	var key []byte
	switch req.GetOp() {
	case cairnpb.GossipKeyOp_GOSSIP_KEY_OP_LIST:
		cop = cluster.GossipKeyList
	case cairnpb.GossipKeyOp_GOSSIP_KEY_OP_INSTALL, cairnpb.GossipKeyOp_GOSSIP_KEY_OP_USE:
		cop = cluster.GossipKeyInstall
		if req.GetOp() == cairnpb.GossipKeyOp_GOSSIP_KEY_OP_USE {
			cop = cluster.GossipKeyUse
		}
		var err error
		if key, err = base64.StdEncoding.DecodeString(req.GetKey()); err != nil || !validGossipKeyLen(len(key)) {
			return nil, s.fail(ctx, op, invalidField("key", fmt.Sprintf(
				"a base64 gossip key of 16, 24 or 32 bytes is required (got %d bytes, decode error %v)", len(key), err)))
		}
	case cairnpb.GossipKeyOp_GOSSIP_KEY_OP_PRUNE:
		cop = cluster.GossipKeyPrune
	default:
		return nil, s.fail(ctx, op, invalidField("op", "op must be LIST, INSTALL, USE or PRUNE"))
	}
	ring, err := ga.ChangeGossipKeys(cop, key)
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	return &cairnpb.GossipKeyResponse{NodeId: s.node.ID(), Primary: ring.Primary, Keys: ring.Keys}, nil
}

func validGossipKeyLen(n int) bool { return n == 16 || n == 24 || n == 32 }
