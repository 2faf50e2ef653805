package sqlstore

import (
	"context"

	"github.com/passerelle-iot/passerelle/pkg/store"
)

// recordActivity moves each time forward only (SET expressions read the
// row as it was, so the error status and gateway follow their own time).
const recordActivity = `UPDATE devices SET
	last_heartbeat_time = CASE WHEN ? > last_heartbeat_time THEN ? ELSE last_heartbeat_time END,
	last_event_time = CASE WHEN ? > last_event_time THEN ? ELSE last_event_time END,
	last_state_time = CASE WHEN ? > last_state_time THEN ? ELSE last_state_time END,
	last_config_send_time = CASE WHEN ? > last_config_send_time THEN ? ELSE last_config_send_time END,
	last_error_status = CASE WHEN ? > last_error_time THEN ? ELSE last_error_status END,
	last_error_time = CASE WHEN ? > last_error_time THEN ? ELSE last_error_time END,
	last_accessed_gateway_id = CASE WHEN ? > last_accessed_gateway_time THEN ? ELSE last_accessed_gateway_id END,
	last_accessed_gateway_time = CASE WHEN ? > last_accessed_gateway_time THEN ? ELSE last_accessed_gateway_time END
	WHERE num_id = ?`

// RecordActivity writes many devices' server-set fields in one transaction.
func (s *Store) RecordActivity(ctx context.Context, acts []store.Activity) error {
	if len(acts) == 0 {
		return nil
	}
	err := s.write(ctx, func(x q) error {
		for _, a := range acts {
			hb, ev, st, cs := ns(a.Heartbeat), ns(a.Event), ns(a.State), ns(a.ConfigSend)
			et, gt := ns(a.ErrorTime), ns(a.GatewayTime)
			status := marshal(a.ErrorStatus)
			if _, err := x.exec(recordActivity, hb, hb, ev, ev, st, st, cs, cs,
				et, status, et, et, gt, a.GatewayID, gt, gt, int64(a.NumID)); err != nil {
				return err
			}
			if a.AckVersion > 0 {
				if err := ackConfig(x, int64(a.NumID), a.AckVersion, ns(a.AckTime)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return s.fail(ctx, err)
}
