// Package manager is Passerelle's management plane: it serves Google's
// google.cloud.iot.v1.DeviceManager API over gRPC and REST/JSON v1 (on one
// port), the REST API's discovery document, gRPC health and server
// reflection, on top of a store.Store.
package manager
