CREATE TABLE registries (
	reg_id INTEGER PRIMARY KEY,
	project TEXT NOT NULL,
	location TEXT NOT NULL,
	id TEXT NOT NULL,
	event_configs TEXT NOT NULL,
	state_topic TEXT NOT NULL,
	mqtt_state INTEGER NOT NULL,
	http_state INTEGER NOT NULL,
	log_level INTEGER NOT NULL,
	ca_certs TEXT NOT NULL,
	UNIQUE (project, location, id)
);

-- AUTOINCREMENT so that a deleted device's numId is never given again.
CREATE TABLE devices (
	num_id INTEGER PRIMARY KEY AUTOINCREMENT,
	reg_id INTEGER NOT NULL REFERENCES registries (reg_id),
	id TEXT NOT NULL,
	credentials TEXT NOT NULL,
	blocked INTEGER NOT NULL,
	metadata TEXT NOT NULL,
	log_level INTEGER NOT NULL,
	gateway_type INTEGER NOT NULL,
	gateway_auth_method INTEGER NOT NULL,
	last_accessed_gateway_id TEXT NOT NULL,
	last_accessed_gateway_time INTEGER NOT NULL,
	last_heartbeat_time INTEGER NOT NULL,
	last_event_time INTEGER NOT NULL,
	last_state_time INTEGER NOT NULL,
	last_config_ack_time INTEGER NOT NULL,
	last_config_send_time INTEGER NOT NULL,
	last_error_time INTEGER NOT NULL,
	last_error_status TEXT NOT NULL,
	config_version INTEGER NOT NULL,
	config_update_time INTEGER NOT NULL,
	config_ack_time INTEGER NOT NULL,
	config_data BLOB,
	last_modify_time INTEGER NOT NULL,
	has_state INTEGER NOT NULL,
	state_time INTEGER NOT NULL,
	state_data BLOB,
	-- Devices bound to this gateway: counting 10,000 bindings at each
	-- bind would make filling a gateway quadratic.
	bound_devices INTEGER NOT NULL DEFAULT 0,
	UNIQUE (reg_id, id)
);

-- numIds look like Cloud IoT Core's 16-digit ones.
INSERT INTO sqlite_sequence (name, seq) VALUES ('devices', 2000000000000000);

-- Keyset pagination of one registry's devices.
CREATE INDEX devices_reg_num ON devices (reg_id, num_id);

CREATE TABLE configs (
	device_num INTEGER NOT NULL REFERENCES devices (num_id) ON DELETE CASCADE,
	version INTEGER NOT NULL,
	cloud_update_time INTEGER NOT NULL,
	device_ack_time INTEGER NOT NULL,
	data BLOB,
	PRIMARY KEY (device_num, version)
);

CREATE TABLE states (
	seq INTEGER PRIMARY KEY AUTOINCREMENT,
	device_num INTEGER NOT NULL REFERENCES devices (num_id) ON DELETE CASCADE,
	update_time INTEGER NOT NULL,
	data BLOB
);
CREATE INDEX states_device ON states (device_num, seq);

CREATE TABLE bindings (
	gateway_num INTEGER NOT NULL REFERENCES devices (num_id) ON DELETE CASCADE,
	device_num INTEGER NOT NULL REFERENCES devices (num_id) ON DELETE CASCADE,
	PRIMARY KEY (gateway_num, device_num)
);
CREATE INDEX bindings_device ON bindings (device_num, gateway_num);
