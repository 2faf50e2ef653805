package pubsub

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"strings"

	"cloud.google.com/go/iam/apiv1/iampb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// emptyPolicyEtag is the etag Google gives a resource that never had a
// policy set.
var emptyPolicyEtag = []byte{0x00, 0x00, 0x10, 0x00}

// iamPolicy serves google.iam.v1.IAMPolicy on topics and subscriptions:
// policies are stored and returned with etags, never enforced (the admin
// token's role governs access).
type iamPolicy struct {
	iampb.UnimplementedIAMPolicyServer
	s *Server
}

// checkResource says whether the topic or subscription exists.
func (p *iamPolicy) checkResource(ctx context.Context, resource string) error {
	switch {
	case strings.Contains(resource, "/topics/"):
		if _, _, err := parseName("resource", "topics", resource); err != nil {
			return err
		}
		return p.s.topicExists(ctx, resource)
	case strings.Contains(resource, "/subscriptions/"):
		_, _, err := p.s.getSubscription(ctx, resource)
		return err
	}
	return status.Errorf(codes.InvalidArgument, "Invalid resource name given (resource=%s): want a topic or a subscription", resource)
}

func (p *iamPolicy) get(ctx context.Context, resource string) (*iampb.Policy, uint64, error) {
	m, err := p.s.metaStore(ctx)
	if err != nil {
		return nil, 0, p.s.storeError(ctx, "open bucket", err)
	}
	var pol iampb.Policy
	rev, err := m.get(ctx, kindPolicy, resource, &pol)
	if errors.Is(err, errNotFound) {
		return &iampb.Policy{Version: 1, Etag: emptyPolicyEtag}, 0, nil
	}
	if err != nil {
		return nil, 0, p.s.storeError(ctx, "get policy", err)
	}
	return &pol, rev, nil
}

func (p *iamPolicy) GetIamPolicy(ctx context.Context, req *iampb.GetIamPolicyRequest) (*iampb.Policy, error) {
	if err := p.checkResource(ctx, req.GetResource()); err != nil {
		return nil, err
	}
	pol, _, err := p.get(ctx, req.GetResource())
	return pol, err
}

func (p *iamPolicy) SetIamPolicy(ctx context.Context, req *iampb.SetIamPolicyRequest) (*iampb.Policy, error) {
	if err := p.checkResource(ctx, req.GetResource()); err != nil {
		return nil, err
	}
	in := req.GetPolicy()
	if in == nil {
		return nil, status.Error(codes.InvalidArgument, "policy is required")
	}
	for i, b := range in.GetBindings() {
		if !strings.HasPrefix(b.GetRole(), "roles/") {
			return nil, status.Errorf(codes.InvalidArgument, "bindings[%d].role %q must start with roles/", i, b.GetRole())
		}
		for _, member := range b.GetMembers() {
			if !strings.Contains(member, ":") && member != "allUsers" && member != "allAuthenticatedUsers" {
				return nil, status.Errorf(codes.InvalidArgument, "bindings[%d]: the member %q must be type:id (user:, serviceAccount:, group:, domain:)", i, member)
			}
		}
	}
	m, err := p.s.metaStore(ctx)
	if err != nil {
		return nil, p.s.storeError(ctx, "open bucket", err)
	}
	cur, rev, err := p.get(ctx, req.GetResource())
	if err != nil {
		return nil, err
	}
	if len(in.GetEtag()) > 0 && !bytes.Equal(in.GetEtag(), cur.GetEtag()) {
		return nil, status.Error(codes.Aborted, "the policy changed since it was read (etag mismatch): read it again and retry")
	}
	out := proto.Clone(in).(*iampb.Policy)
	if out.Version == 0 {
		out.Version = 1
	}
	out.Etag = make([]byte, 8)
	_, _ = rand.Read(out.Etag)
	if rev == 0 {
		err = m.create(ctx, kindPolicy, req.GetResource(), out)
	} else {
		err = m.update(ctx, kindPolicy, req.GetResource(), out, rev)
	}
	if errors.Is(err, errExists) || errors.Is(err, errConflict) {
		return nil, status.Error(codes.Aborted, "the policy changed concurrently: read it again and retry")
	}
	if err != nil {
		return nil, p.s.storeError(ctx, "set policy", err)
	}
	return out, nil
}

// TestIamPermissions grants what is asked: policies are not enforced, the
// token's role (already checked) governs.
func (p *iamPolicy) TestIamPermissions(ctx context.Context, req *iampb.TestIamPermissionsRequest) (*iampb.TestIamPermissionsResponse, error) {
	if err := p.checkResource(ctx, req.GetResource()); err != nil {
		return nil, err
	}
	return &iampb.TestIamPermissionsResponse{Permissions: req.GetPermissions()}, nil
}
