import GRDB

/// The SQLite schema, as append-only named migrations: add a new one, never edit an old one.
enum SQLiteMigrations {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("2026-12-06 lpr v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE detection (
                        sequence INTEGER PRIMARY KEY AUTOINCREMENT,
                        message_id TEXT NOT NULL UNIQUE,
                        camera_id TEXT NOT NULL,
                        checkpoint_id TEXT NOT NULL,
                        captured_at REAL NOT NULL,
                        received_at REAL NOT NULL,
                        confidence REAL,
                        plates TEXT NOT NULL,
                        payload TEXT NOT NULL
                    );
                    CREATE INDEX detection_received_at ON detection (received_at);
                    CREATE INDEX detection_camera ON detection (camera_id, sequence);
                    CREATE INDEX detection_checkpoint ON detection (checkpoint_id, sequence);
                    CREATE TABLE detection_plate (
                        sequence INTEGER NOT NULL,
                        position INTEGER NOT NULL,
                        number TEXT NOT NULL,
                        normalized TEXT NOT NULL,
                        folded TEXT NOT NULL,
                        confidence REAL,
                        country TEXT,
                        PRIMARY KEY (sequence, position)
                    ) WITHOUT ROWID;
                    CREATE INDEX detection_plate_normalized ON detection_plate (normalized, sequence);
                    CREATE INDEX detection_plate_folded ON detection_plate (folded, sequence);
                    CREATE TABLE camera (
                        camera_id TEXT PRIMARY KEY NOT NULL,
                        checkpoint_id TEXT,
                        online INTEGER,
                        first_seen REAL,
                        last_seen REAL,
                        last_health_at REAL,
                        health TEXT,
                        health_status TEXT,
                        active_problems TEXT NOT NULL DEFAULT '',
                        desired_config TEXT,
                        desired_at REAL,
                        reported_config TEXT,
                        reported_at REAL,
                        last_detection_at REAL,
                        last_detection_id TEXT
                    );
                    CREATE TABLE health_history (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        camera_id TEXT NOT NULL,
                        received_at REAL NOT NULL,
                        status TEXT NOT NULL,
                        payload TEXT NOT NULL
                    );
                    CREATE INDEX health_history_camera ON health_history (camera_id, id);
                    CREATE TABLE watchlist_entry (
                        id TEXT PRIMARY KEY NOT NULL,
                        payload TEXT NOT NULL,
                        position INTEGER NOT NULL
                    );
                    CREATE TABLE setting (
                        key TEXT PRIMARY KEY NOT NULL,
                        value
                    );
                    CREATE TABLE alert (
                        sequence INTEGER PRIMARY KEY AUTOINCREMENT,
                        alert_id TEXT NOT NULL UNIQUE,
                        level TEXT NOT NULL,
                        kind TEXT NOT NULL,
                        camera_id TEXT,
                        checkpoint_id TEXT,
                        message TEXT NOT NULL,
                        timestamp REAL NOT NULL,
                        payload TEXT NOT NULL
                    );
                    CREATE INDEX alert_timestamp ON alert (timestamp);
                    CREATE TABLE command (
                        message_id TEXT PRIMARY KEY NOT NULL,
                        camera_id TEXT NOT NULL,
                        command TEXT NOT NULL,
                        payload TEXT NOT NULL,
                        sent_at REAL NOT NULL,
                        status TEXT NOT NULL,
                        response TEXT,
                        answered_at REAL
                    );
                    CREATE TABLE lease (
                        name TEXT PRIMARY KEY NOT NULL,
                        holder TEXT NOT NULL,
                        expires_at REAL NOT NULL
                    );
                    """
            )
        }
        return migrator
    }
}
