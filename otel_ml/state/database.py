"""The state database's name and tables (beside the archive's, archive.py): one SQLite file per state directory."""

DB_FILE = "otel-ml.db"
"""The state database's name in the state directory (``otel-ml archive export`` reads it too)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoint (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL,
                                       created REAL NOT NULL, state BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS window_state (model TEXT NOT NULL, version TEXT NOT NULL, start_ns INTEGER NOT NULL,
                                         profile BLOB NOT NULL, PRIMARY KEY (model, version, start_ns));
CREATE TABLE IF NOT EXISTS performance_window (model TEXT NOT NULL, version TEXT NOT NULL, start_ns INTEGER NOT NULL,
                                               profile BLOB NOT NULL, PRIMARY KEY (model, version, start_ns));
"""
