package iotcli

import (
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"

	"cloud.google.com/go/iot/apiv1/iotpb"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/passerelle-iot/passerelle/pkg/progress"
)

// csvDevice reads one row of a --from-csv file. Columns: id (required),
// public_key (a PEM file's path, or the PEM itself), key_type, blocked,
// log_level, device_type, auth_method, and metadata.KEY for each metadata
// key.
func csvDevice(header []string, row []string) (*iotpb.Device, error) {
	d := &iotpb.Device{}
	var key, keyType string
	for i, col := range header {
		if i >= len(row) {
			break
		}
		v := strings.TrimSpace(row[i])
		if v == "" {
			continue
		}
		switch col = strings.TrimSpace(strings.ToLower(col)); {
		case col == "id":
			d.Id = v
		case col == "public_key":
			key = row[i]
		case col == "key_type":
			keyType = v
		case col == "blocked":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return d, fmt.Errorf("column blocked: %q is not true or false", v)
			}
			d.Blocked = b
		case col == "log_level":
			l, err := logLevel(v)
			if err != nil {
				return d, fmt.Errorf("column log_level: %v", err)
			}
			d.LogLevel = l
		case col == "device_type":
			t, err := deviceType(v)
			if err != nil {
				return d, fmt.Errorf("column device_type: %v", err)
			}
			if d.GatewayConfig == nil {
				d.GatewayConfig = &iotpb.GatewayConfig{}
			}
			d.GatewayConfig.GatewayType = t
		case col == "auth_method":
			m, err := authMethod(v)
			if err != nil {
				return d, fmt.Errorf("column auth_method: %v", err)
			}
			if d.GatewayConfig == nil {
				d.GatewayConfig = &iotpb.GatewayConfig{}
			}
			d.GatewayConfig.GatewayAuthMethod = m
		case strings.HasPrefix(col, "metadata."):
			if d.Metadata == nil {
				d.Metadata = map[string]string{}
			}
			d.Metadata[strings.TrimSpace(header[i])[len("metadata."):]] = row[i]
		default:
			return d, fmt.Errorf("unknown column %q (known: id, public_key, key_type, blocked, log_level, device_type, auth_method, metadata.KEY)", header[i])
		}
	}
	if d.Id == "" {
		return d, fmt.Errorf("column id is empty")
	}
	if key != "" {
		if keyType == "" {
			return d, fmt.Errorf("column key_type is empty (one of %s)", keyTypeChoices)
		}
		f, err := keyTypeValue(keyType)
		if err != nil {
			return d, fmt.Errorf("column key_type: %v", err)
		}
		pem := key
		if !strings.Contains(key, "-----BEGIN") {
			raw, err := os.ReadFile(key)
			if err != nil {
				return d, fmt.Errorf("column public_key: %v", err)
			}
			pem = string(raw)
		}
		d.Credentials = []*iotpb.DeviceCredential{{Credential: &iotpb.DeviceCredential_PublicKey{PublicKey: &iotpb.PublicKeyCredential{Format: f, Key: pem}}}}
	}
	return d, nil
}

func keyTypeValue(s string) (iotpb.PublicKeyFormat, error) {
	f, ok := keyTypes[strings.ReplaceAll(strings.ToLower(s), "_", "-")]
	if !ok {
		return 0, fmt.Errorf("%q is not one of %s", s, keyTypeChoices)
	}
	return f, nil
}

// createFromCSV is devices create --from-csv: every row a device, created
// f.concurrency at a time; a row that fails is reported and the others go
// on. Devices that exist already are skipped.
func (a *app) createFromCSV(c *cobra.Command, r resourceFlags, f deviceFlags) error {
	if f.concurrency < 1 {
		return usagef("concurrency", "Value must be greater than or equal to 1; received: %d", f.concurrency)
	}
	parent, err := a.registryName("registry", r.registry, r.region)
	if err != nil {
		return err
	}
	file, err := os.Open(f.fromCSV)
	if err != nil {
		return fmt.Errorf("Could not read CSV file [%s]: %v", f.fromCSV, err)
	}
	defer file.Close()
	rd := csv.NewReader(file)
	rd.FieldsPerRecord = -1
	header, err := rd.Read()
	if err != nil {
		return fmt.Errorf("CSV file [%s]: no header row: %v", f.fromCSV, err)
	}
	type row struct {
		line int
		d    *iotpb.Device
		err  error
	}
	var rows []row
	for line := 2; ; line++ {
		rec, err := rd.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("CSV file [%s]: %v", f.fromCSV, err)
		}
		d, err := csvDevice(header, rec)
		rows = append(rows, row{line: line, d: d, err: err})
	}
	cl, err := a.client(c.Context())
	if err != nil {
		return err
	}
	bar := progress.New(a.io.Stderr, "devices", len(rows), stderrIsTerminal(a.io.Stderr))
	var mu sync.Mutex
	type failure struct {
		line int
		text string
	}
	var failures []failure
	created, skipped := 0, 0
	g, ctx := errgroup.WithContext(c.Context())
	g.SetLimit(f.concurrency)
	for _, rw := range rows {
		g.Go(func() error {
			err := rw.err
			if err == nil {
				_, err = cl.CreateDevice(ctx, &iotpb.CreateDeviceRequest{Parent: parent, Device: rw.d})
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				created++
			case status.Code(err) == codes.AlreadyExists:
				skipped++
			default:
				id := ""
				if rw.d != nil {
					id = " [" + rw.d.Id + "]"
				}
				failures = append(failures, failure{rw.line, fmt.Sprintf("line %d%s: %s", rw.line, id, apiMessage(err))})
			}
			bar.Add(1, boolInt(err != nil && status.Code(err) != codes.AlreadyExists))
			return ctx.Err()
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	bar.Finish()
	sort.Slice(failures, func(i, j int) bool { return failures[i].line < failures[j].line })
	for _, f := range failures {
		fmt.Fprintln(a.io.Stderr, "  failed "+f.text)
	}
	a.status("Created %d devices, skipped %d that exist, %d failed.", created, skipped, len(failures))
	if len(failures) > 0 {
		return fmt.Errorf("%d of %d rows of [%s] failed", len(failures), len(rows), f.fromCSV)
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// stderrIsTerminal says whether progress may be redrawn in place.
func stderrIsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isTerminal(f)
}
