package pubsub

import (
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/resource"
)

// deletedTopic is what a subscription shows as its topic once the topic
// is deleted, as on Google's service.
const deletedTopic = "_deleted-topic_"

// parseName checks "projects/{project}/{collection}/{id}" as Google checks
// it (pubsub-spec section 2, Names) and returns the project and the id;
// field names the request field in the error.
func parseName(field, collection, name string) (project, id string, err error) {
	rest, ok := strings.CutPrefix(name, "projects/")
	if ok {
		project, id, ok = strings.Cut(rest, "/"+collection+"/")
	}
	if !ok || !bus.ValidProject(project) {
		return "", "", status.Errorf(codes.InvalidArgument, "Invalid resource name given (%s=%s): want projects/{project}/%s/{id}", field, name, collection)
	}
	if !resource.ValidID(id) {
		return "", "", status.Errorf(codes.InvalidArgument, "Invalid resource name given (%s=%s): the id must be 3 to 255 characters of [A-Za-z0-9-_.~+%%], start with a letter and not start with \"goog\"", field, name)
	}
	return project, id, nil
}

// parseProject checks "projects/{project}".
func parseProject(field, name string) (string, error) {
	p, ok := strings.CutPrefix(name, "projects/")
	if !ok || !bus.ValidProject(p) {
		return "", status.Errorf(codes.InvalidArgument, "Invalid resource name given (%s=%s): want projects/{project}", field, name)
	}
	return p, nil
}
