-- The tables of shopfloor's previous release (commit 09745b1, before tags), as its
-- db init created them on mysql: CREATE TABLE/INDEX compiled from that commit's
-- shopfloor/db/schema.py (git show 09745b1:shopfloor/db/schema.py).

CREATE TABLE anomaly (
	id BIGINT NOT NULL AUTO_INCREMENT, 
	kind VARCHAR(16) NOT NULL, 
	loc_id VARCHAR(32) NOT NULL, 
	measure VARCHAR(32) NOT NULL, 
	hour_start DATETIME(6) NOT NULL, 
	hours INTEGER NOT NULL, 
	score FLOAT(53), 
	detail TEXT, 
	run_id VARCHAR(64), 
	detected_at DATETIME(6) NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_anomaly_finding UNIQUE (kind, loc_id, measure, hour_start)
);

CREATE INDEX ix_anomaly_hour_start ON anomaly (hour_start);

CREATE TABLE collector_backlog (
	collector VARCHAR(128) NOT NULL, 
	sink VARCHAR(255) NOT NULL, 
	backlog_samples BIGINT NOT NULL, 
	oldest_sample_at DATETIME(6), 
	dropped_samples BIGINT NOT NULL, 
	buffer_fill_pct FLOAT(53) NOT NULL, 
	reported_at DATETIME(6) NOT NULL, 
	PRIMARY KEY (collector, sink)
);

CREATE TABLE location (
	loc_id VARCHAR(32) NOT NULL, 
	name VARCHAR(255), 
	site VARCHAR(255), 
	temperature_min FLOAT(53), 
	temperature_max FLOAT(53), 
	humidity_min FLOAT(53), 
	humidity_max FLOAT(53), 
	pcv_temperature_min FLOAT(53), 
	pcv_temperature_max FLOAT(53), 
	active BOOL NOT NULL, 
	updated_at DATETIME(6), 
	PRIMARY KEY (loc_id)
);

CREATE TABLE pipeline_watermark (
	name VARCHAR(128) NOT NULL, 
	value VARCHAR(64) NOT NULL, 
	updated_at DATETIME(6) NOT NULL, 
	PRIMARY KEY (name)
);

CREATE TABLE quality_score (
	id BIGINT NOT NULL AUTO_INCREMENT, 
	flow VARCHAR(64) NOT NULL, 
	subject VARCHAR(255) NOT NULL, 
	window_start DATETIME(6), 
	window_end DATETIME(6), 
	completeness FLOAT(53), 
	validity FLOAT(53), 
	uniqueness FLOAT(53), 
	timeliness FLOAT(53), 
	overall FLOAT(53), 
	rows_in INTEGER, 
	rows_valid INTEGER, 
	rows_quarantined INTEGER, 
	rows_duplicate INTEGER, 
	expected INTEGER, 
	rule_version VARCHAR(32), 
	run_id VARCHAR(64), 
	recorded_at DATETIME(6) NOT NULL, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_quality_score_flow_recorded ON quality_score (flow, recorded_at);

CREATE TABLE quarantine (
	id BIGINT NOT NULL AUTO_INCREMENT, 
	source VARCHAR(255) NOT NULL, 
	record TEXT NOT NULL, 
	reasons TEXT NOT NULL, 
	run_id VARCHAR(64), 
	quarantined_at DATETIME(6) NOT NULL, 
	source_key VARCHAR(1024), 
	source_line INTEGER, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_quarantine_source ON quarantine (source);

CREATE INDEX ix_quarantine_source_at ON quarantine (source, quarantined_at);

CREATE TABLE s3_listing (
	id_hash VARCHAR(64) NOT NULL, 
	storage VARCHAR(1024) NOT NULL, 
	stream VARCHAR(1024) NOT NULL, 
	last_key VARCHAR(1024) NOT NULL, 
	updated_at DATETIME(6) NOT NULL, 
	PRIMARY KEY (id_hash)
);

CREATE TABLE s3_object (
	id BIGINT NOT NULL AUTO_INCREMENT, 
	`key` VARCHAR(1024) NOT NULL, 
	key_hash VARCHAR(64) NOT NULL, 
	distrik VARCHAR(32) NOT NULL, 
	size BIGINT, 
	discovered_at DATETIME(6) NOT NULL, 
	compression_run_id VARCHAR(64), 
	claimed_at DATETIME(6), 
	compression_status VARCHAR(16) NOT NULL, 
	attempts INTEGER NOT NULL, 
	error TEXT, 
	completed_at DATETIME(6), 
	PRIMARY KEY (id), 
	CONSTRAINT uq_s3_object_key_hash UNIQUE (key_hash)
);

CREATE INDEX ix_s3_object_claim ON s3_object (distrik, compression_status);

CREATE TABLE sqlth_te (
	id INTEGER NOT NULL, 
	tagpath VARCHAR(255) NOT NULL, 
	datatype INTEGER, 
	created BIGINT, 
	retired BIGINT, 
	PRIMARY KEY (id)
);

CREATE TABLE temperature_daily (
	loc_id VARCHAR(32) NOT NULL, 
	ymd VARCHAR(8) NOT NULL, 
	temperature_count INTEGER, 
	temperature_sum FLOAT(53), 
	temperature_min FLOAT(53), 
	temperature_max FLOAT(53), 
	temperature_avg FLOAT(53), 
	humidity_count INTEGER, 
	humidity_sum FLOAT(53), 
	humidity_min FLOAT(53), 
	humidity_max FLOAT(53), 
	humidity_avg FLOAT(53), 
	pcv_temperature_count INTEGER, 
	pcv_temperature_sum FLOAT(53), 
	pcv_temperature_min FLOAT(53), 
	pcv_temperature_max FLOAT(53), 
	pcv_temperature_avg FLOAT(53), 
	hours INTEGER NOT NULL, 
	sample_count INTEGER NOT NULL, 
	updated_at DATETIME(6) NOT NULL, 
	PRIMARY KEY (loc_id, ymd)
);

CREATE TABLE temperature_hourly (
	loc_id VARCHAR(32) NOT NULL, 
	ymd VARCHAR(8) NOT NULL, 
	hh VARCHAR(2) NOT NULL, 
	temperature_max FLOAT(53), 
	temperature_avg FLOAT(53), 
	humidity_max FLOAT(53), 
	humidity_avg FLOAT(53), 
	pcv_temperature_max FLOAT(53), 
	pcv_temperature_avg FLOAT(53), 
	sample_count INTEGER NOT NULL, 
	updated_at DATETIME(6) NOT NULL, 
	temperature_count INTEGER, 
	temperature_sum FLOAT(53), 
	temperature_min FLOAT(53), 
	humidity_count INTEGER, 
	humidity_sum FLOAT(53), 
	humidity_min FLOAT(53), 
	pcv_temperature_count INTEGER, 
	pcv_temperature_sum FLOAT(53), 
	pcv_temperature_min FLOAT(53), 
	PRIMARY KEY (loc_id, ymd, hh)
);

CREATE INDEX ix_temperature_hourly_ymd_hh ON temperature_hourly (ymd, hh);

CREATE TABLE temperature_raw (
	loc_id VARCHAR(32) NOT NULL, 
	capture_dt DATETIME(6) NOT NULL, 
	temperature FLOAT(53), 
	humidity FLOAT(53), 
	pcv_temperature FLOAT(53), 
	device VARCHAR(128), 
	ingested_at DATETIME(6) NOT NULL, 
	PRIMARY KEY (loc_id, capture_dt)
);

CREATE INDEX ix_temperature_raw_capture_dt ON temperature_raw (capture_dt);

CREATE INDEX ix_temperature_raw_ingested_at ON temperature_raw (ingested_at);
