"""DDL of the embedded event log (design notes in :mod:`sluice.queue.sqlite`)."""

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id TEXT NOT NULL,
    off INTEGER NOT NULL,
    appended_at REAL NOT NULL,
    payload BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS log_source_off ON log (source_id, off);
CREATE TABLE IF NOT EXISTS sources (source_id TEXT PRIMARY KEY, head INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cursors (
    destination_id TEXT NOT NULL,
    source_id TEXT NOT NULL,
    off INTEGER NOT NULL,
    PRIMARY KEY (destination_id, source_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deliveries (
    destination_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    due_at REAL NOT NULL,
    leased INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    first_attempt_at REAL,
    PRIMARY KEY (destination_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (destination_id, due_at);
CREATE TABLE IF NOT EXISTS dead_letters (
    destination_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    failed_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    first_attempt_at REAL,
    PRIMARY KEY (destination_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dead_letters_failed ON dead_letters (destination_id, failed_at);
"""
