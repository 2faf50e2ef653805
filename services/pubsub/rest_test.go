package pubsub_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/passerelle-iot/passerelle/pkg/adminauth"
)

// restCall makes a REST/JSON v1 call as Google's REST users (python's
// googleapiclient, curl) make it, and decodes the JSON answer into out.
func (e *env) restCall(method, path, token string, body any, out any) int {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+e.addr+"/v1/"+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatalf("%s %s: %d %q is not JSON: %v", method, path, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode
}

type googleError struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
	} `json:"error"`
}

func TestREST(t *testing.T) {
	e := start(t)
	editor, pub, viewer := e.tokens[adminauth.RoleEditor], e.tokens[adminauth.RoleDeviceController], e.tokens[adminauth.RoleViewer]
	var ge googleError
	if c := e.restCall("GET", "projects/my-project/topics/nope", viewer, nil, &ge); c != 404 || ge.Error.Status != "NOT_FOUND" || ge.Error.Code != 404 {
		t.Errorf("GET a missing topic: %d %+v", c, ge)
	}
	if c := e.restCall("GET", "projects/my-project/topics/nope", "", nil, &ge); c != 401 || ge.Error.Status != "UNAUTHENTICATED" {
		t.Errorf("GET without a token: %d %+v", c, ge)
	}
	var topic map[string]any
	if c := e.restCall("PUT", "projects/my-project/topics/rest-topic", editor, map[string]any{"labels": map[string]string{"a": "b"}}, &topic); c != 200 || topic["name"] != "projects/my-project/topics/rest-topic" {
		t.Fatalf("PUT topic: %d %v", c, topic)
	}
	var sub map[string]any
	if c := e.restCall("PUT", "projects/my-project/subscriptions/rest-sub", editor, map[string]any{
		"topic": "projects/my-project/topics/rest-topic", "ackDeadlineSeconds": 20, "messageRetentionDuration": "600s",
	}, &sub); c != 200 || sub["ackDeadlineSeconds"] != float64(20) || sub["messageRetentionDuration"] != "600s" {
		t.Fatalf("PUT subscription: %d %v", c, sub)
	}
	var pubResp struct{ MessageIds []string }
	if c := e.restCall("POST", "projects/my-project/topics/rest-topic:publish", pub, map[string]any{"messages": []map[string]any{
		{"data": base64.StdEncoding.EncodeToString([]byte("hello")), "attributes": map[string]string{"k": "v"}},
		{"data": base64.StdEncoding.EncodeToString([]byte("world"))},
	}}, &pubResp); c != 200 || len(pubResp.MessageIds) != 2 {
		t.Fatalf("publish: %d %+v", c, pubResp)
	}
	var pulled struct {
		ReceivedMessages []struct {
			AckID   string `json:"ackId"`
			Message struct {
				Data        string            `json:"data"`
				Attributes  map[string]string `json:"attributes"`
				MessageID   string            `json:"messageId"`
				PublishTime string            `json:"publishTime"`
			} `json:"message"`
		} `json:"receivedMessages"`
	}
	if c := e.restCall("POST", "projects/my-project/subscriptions/rest-sub:pull", viewer, map[string]any{"maxMessages": 10}, &pulled); c != 200 || len(pulled.ReceivedMessages) == 0 {
		t.Fatalf("pull: %d %+v", c, pulled)
	}
	var ids []string
	for _, m := range pulled.ReceivedMessages {
		ids = append(ids, m.AckID)
		if m.Message.PublishTime == "" || m.Message.MessageID == "" {
			t.Errorf("pulled %+v", m)
		}
	}
	if d, _ := base64.StdEncoding.DecodeString(pulled.ReceivedMessages[0].Message.Data); string(d) != "hello" || pulled.ReceivedMessages[0].Message.Attributes["k"] != "v" {
		t.Errorf("first message: %+v", pulled.ReceivedMessages[0].Message)
	}
	if c := e.restCall("POST", "projects/my-project/subscriptions/rest-sub:acknowledge", viewer, map[string]any{"ackIds": ids}, &map[string]any{}); c != 200 {
		t.Errorf("acknowledge: %d", c)
	}
	if c := e.restCall("POST", "projects/my-project/subscriptions/rest-sub:modifyAckDeadline", viewer, map[string]any{"ackIds": ids, "ackDeadlineSeconds": 601}, &ge); c != 400 || ge.Error.Status != "INVALID_ARGUMENT" {
		t.Errorf("modifyAckDeadline 601: %d %+v", c, ge)
	}
	// The IAM sequence of the IoT samples.
	var pol struct {
		Etag     string `json:"etag"`
		Bindings []struct {
			Role    string   `json:"role"`
			Members []string `json:"members"`
		} `json:"bindings"`
	}
	if c := e.restCall("GET", "projects/my-project/topics/rest-topic:getIamPolicy", viewer, nil, &pol); c != 200 || pol.Etag == "" {
		t.Fatalf("getIamPolicy: %d %+v", c, pol)
	}
	set := map[string]any{"policy": map[string]any{"etag": pol.Etag, "bindings": []map[string]any{
		{"role": "roles/pubsub.publisher", "members": []string{"serviceAccount:cloud-iot@system.gserviceaccount.com"}}}}}
	if c := e.restCall("POST", "projects/my-project/topics/rest-topic:setIamPolicy", editor, set, &pol); c != 200 || len(pol.Bindings) != 1 {
		t.Fatalf("setIamPolicy: %d %+v", c, pol)
	}
	if c := e.restCall("POST", "projects/my-project/topics/rest-topic:setIamPolicy", editor, set, &ge); c != 409 || ge.Error.Status != "ABORTED" {
		t.Errorf("setIamPolicy with a stale etag: %d %+v", c, ge)
	}
	var list struct {
		Topics []struct{ Name string } `json:"topics"`
	}
	if c := e.restCall("GET", "projects/my-project/topics", viewer, nil, &list); c != 200 || len(list.Topics) != 1 {
		t.Errorf("list topics: %d %+v", c, list)
	}
	// A POST must say it is JSON.
	req, _ := http.NewRequest("POST", "http://"+e.addr+"/v1/projects/my-project/topics/rest-topic:publish", strings.NewReader(`{"messages":[{"data":"eA=="}]}`))
	req.Header.Set("Authorization", "Bearer "+pub)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("POST without Content-Type: %d, want 400", resp.StatusCode)
	}
	if c := e.restCall("POST", "projects/my-project/topics/rest-topic:publish", pub, map[string]any{"messages": "nope"}, &ge); c != 400 || ge.Error.Status != "INVALID_ARGUMENT" {
		t.Errorf("publish with bad JSON: %d %+v", c, ge)
	}
	if c := e.restCall("DELETE", "projects/my-project/subscriptions/rest-sub", editor, nil, &map[string]any{}); c != 200 {
		t.Errorf("DELETE subscription: %d", c)
	}
	if c := e.restCall("DELETE", "projects/my-project/topics/rest-topic", editor, nil, &map[string]any{}); c != 200 {
		t.Errorf("DELETE topic: %d", c)
	}
}
