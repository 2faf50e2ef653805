package pubsub

import (
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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
	if !ok || !validProject(project) {
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
	if !ok || !validProject(p) {
		return "", status.Errorf(codes.InvalidArgument, "Invalid resource name given (%s=%s): want projects/{project}", field, name)
	}
	return p, nil
}

// validProject accepts Cloud project ids, domain-scoped ones too
// ("example.com:p"), and nothing that crosses a "/".
func validProject(p string) bool {
	if p == "" || len(p) > 100 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c >= 0x7f || c == '/' {
			return false
		}
	}
	return true
}

func topicName(project, id string) string { return fmt.Sprintf("projects/%s/topics/%s", project, id) }
