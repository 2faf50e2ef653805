// Package deploy checks the deployment files at the root of the repository
// (docker-compose.yml, Dockerfile) against the binaries they run. Docker does
// not run on the machines that build Passerelle, so its tests check what can
// be checked without it: that the compose file parses and names services,
// ports, commands and environment that the binaries really accept.
package deploy
