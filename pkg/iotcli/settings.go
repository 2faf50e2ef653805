package iotcli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/passerelle-iot/passerelle/pkg/config"
)

// settingKeys are the keys `passerelle iot config set` accepts, with what
// each is for. Each is also read from PASSERELLE_<KEY> and from a global
// flag --<key>; the flag wins over the variable, the variable over the
// file.
var settingKeys = map[string]string{
	"endpoint":   "the admin API: host:port (plaintext on loopback, else TLS), http://host:port or https://host[:port]",
	"transport":  "grpc (default) or rest",
	"token":      "the bearer token sent with every call",
	"token-file": "a file holding the bearer token (passerelle-data/admin.token)",
	"ca-file":    "PEM file of the CA the endpoint's TLS certificate is checked against",
	"project":    "the default --project",
	"region":     "the default --region",
}

// Settings is the config file: key -> value.
type Settings map[string]string

// settingsFile is where the config file lives: $PASSERELLE_CONFIG_DIR or
// os.UserConfigDir()/passerelle, file config.yaml.
func settingsFile(env config.Env) (string, error) {
	if dir, ok := env.LookupEnv("PASSERELLE_CONFIG_DIR"); ok && dir != "" {
		return filepath.Join(dir, "config.yaml"), nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find the config folder: %w (set PASSERELLE_CONFIG_DIR)", err)
	}
	return filepath.Join(dir, "passerelle", "config.yaml"), nil
}

func loadSettings(path string) (Settings, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Settings{}, nil
	}
	if err != nil {
		return nil, err
	}
	s := Settings{}
	if err := yaml.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return s, nil
}

// save writes the file with mode 0600 (it may hold a token), its folder
// 0700.
func (s Settings) save(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	raw, err := yaml.Marshal(map[string]string(s))
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func checkSettingKey(key string) error {
	if _, ok := settingKeys[key]; ok {
		return nil
	}
	keys := make([]string, 0, len(settingKeys))
	for k := range settingKeys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return usagef("", "unknown setting [%s]; known settings: %s", key, strings.Join(keys, ", "))
}
