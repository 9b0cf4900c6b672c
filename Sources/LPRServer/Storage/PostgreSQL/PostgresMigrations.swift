/// The PostgreSQL schema, as append-only named migrations: add a new one, never edit an old one.
enum PostgresMigrations {
    struct Migration {
        let name: String
        let statements: [String]
    }

    static let all: [Migration] = [
        Migration(
            name: "2026-12-06 lpr v1",
            statements: [
                """
                CREATE TABLE detection (
                    sequence bigserial PRIMARY KEY,
                    message_id text NOT NULL UNIQUE,
                    camera_id text NOT NULL,
                    checkpoint_id text NOT NULL,
                    captured_at timestamptz NOT NULL,
                    received_at timestamptz NOT NULL,
                    confidence double precision,
                    plates text NOT NULL,
                    payload text NOT NULL
                )
                """,
                "CREATE INDEX detection_received_at ON detection (received_at)",
                "CREATE INDEX detection_camera ON detection (camera_id, sequence)",
                "CREATE INDEX detection_checkpoint ON detection (checkpoint_id, sequence)",
                """
                CREATE TABLE detection_plate (
                    sequence bigint NOT NULL REFERENCES detection (sequence) ON DELETE CASCADE,
                    position integer NOT NULL,
                    number text NOT NULL,
                    normalized text NOT NULL,
                    folded text NOT NULL,
                    confidence double precision,
                    country text,
                    PRIMARY KEY (sequence, position)
                )
                """,
                // text_pattern_ops: the prefix search's range comparison uses the index whatever the collation.
                "CREATE INDEX detection_plate_normalized ON detection_plate (normalized text_pattern_ops, sequence)",
                "CREATE INDEX detection_plate_normalized_order ON detection_plate (normalized, sequence)",
                "CREATE INDEX detection_plate_folded ON detection_plate (folded, sequence)",
                """
                CREATE TABLE camera (
                    camera_id text PRIMARY KEY,
                    checkpoint_id text,
                    online boolean,
                    first_seen timestamptz,
                    last_seen timestamptz,
                    last_health_at timestamptz,
                    health text,
                    health_status text,
                    active_problems text NOT NULL DEFAULT '',
                    desired_config text,
                    desired_at timestamptz,
                    reported_config text,
                    reported_at timestamptz,
                    last_detection_at timestamptz,
                    last_detection_id text
                )
                """,
                """
                CREATE TABLE health_history (
                    id bigserial PRIMARY KEY,
                    camera_id text NOT NULL,
                    received_at timestamptz NOT NULL,
                    status text NOT NULL,
                    payload text NOT NULL
                )
                """,
                "CREATE INDEX health_history_camera ON health_history (camera_id, id)",
                "CREATE TABLE watchlist_entry (id text PRIMARY KEY, payload text NOT NULL, position bigserial)",
                "CREATE TABLE setting (key text PRIMARY KEY, value bigint NOT NULL)",
                """
                CREATE TABLE alert (
                    sequence bigserial PRIMARY KEY,
                    alert_id text NOT NULL UNIQUE,
                    level text NOT NULL,
                    kind text NOT NULL,
                    camera_id text,
                    checkpoint_id text,
                    message text NOT NULL,
                    timestamp timestamptz NOT NULL,
                    payload text NOT NULL
                )
                """,
                "CREATE INDEX alert_timestamp ON alert (timestamp)",
                """
                CREATE TABLE command (
                    message_id text PRIMARY KEY,
                    camera_id text NOT NULL,
                    command text NOT NULL,
                    payload text NOT NULL,
                    sent_at timestamptz NOT NULL,
                    status text NOT NULL,
                    response text,
                    answered_at timestamptz
                )
                """,
                "CREATE TABLE lease (name text PRIMARY KEY, holder text NOT NULL, expires_at timestamptz NOT NULL)",
            ]
        )
    ]
}
