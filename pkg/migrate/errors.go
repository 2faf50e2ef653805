package migrate

import (
	"encoding/json"
	"errors"
	"fmt"

	"google.golang.org/api/googleapi"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/status"
)

// ErrorText is an API error as gcloud printed it: "CODE: message" for an
// API error, the text otherwise.
func ErrorText(err error) string {
	// Over REST, the JSON error body's status names the code; the HTTP
	// status alone cannot (400 is both INVALID_ARGUMENT and
	// FAILED_PRECONDITION).
	var he *googleapi.Error
	if errors.As(err, &he) {
		var body struct {
			Error struct {
				Status  string `json:"status"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal([]byte(he.Body), &body) == nil && body.Error.Status != "" {
			return body.Error.Status + ": " + body.Error.Message
		}
		return fmt.Sprintf("HTTP %d: %s", he.Code, he.Message)
	}
	if st, ok := status.FromError(err); ok && st.Code() != 0 {
		return fmt.Sprintf("%s: %s", code.Code_name[int32(st.Code())], st.Message())
	}
	return err.Error()
}
