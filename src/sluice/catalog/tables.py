"""The catalog's tables (SQLAlchemy Core). The same schema on SQLite and PostgreSQL.

JSON columns hold camelCase documents as the API shows them; sensitive values inside them are
stored encrypted (``enc:v1:…``, see :mod:`sluice.catalog.crypto`). Times are timezone-aware UTC.
Identifiers are short random strings with a type prefix (``fn_…``, ``ver_…``).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _times() -> list[Column[object]]:
    return [
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    ]


sources = Table(
    "sources",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    *_times(),
)

write_keys = Table(
    "write_keys",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("source_id", String(40), ForeignKey("sources.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

destinations = Table(
    "destinations",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("type", String(100), nullable=False),
    Column("config", JSON, nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    *_times(),
)

destination_sources = Table(
    "destination_sources",
    metadata,
    Column("destination_id", String(40), ForeignKey("destinations.id", ondelete="CASCADE"), primary_key=True),
    Column("source_id", String(40), ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True),
)

functions = Table(
    "functions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("display_name", String(120), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("logo_url", Text, nullable=True),
    Column("language", String(20), nullable=False),
    Column("resource_type", String(40), nullable=False),
    Column("settings", JSON, nullable=False),  # the schema: [{name, label, description, type, required, sensitive}]
    Column("batch_max_count", Integer, nullable=False),
    Column("code", Text, nullable=False),  # the draft: always equal to the LATEST version's code
    Column("latest_version", Integer, nullable=False),
    Column("created_by", String(200), nullable=False),
    *_times(),
)

function_versions = Table(
    "function_versions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("function_id", String(40), ForeignKey("functions.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("code", Text, nullable=False),
    Column("settings", JSON, nullable=False),
    Column("language", String(20), nullable=False),
    Column("batch_max_count", Integer, nullable=False),
    Column("author", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("restored_from", String(40), nullable=True),
    UniqueConstraint("function_id", "number"),
)

instances = Table(
    "insert_function_instances",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("function_id", String(40), ForeignKey("functions.id", ondelete="CASCADE"), nullable=False, index=True),
    # at most one insert function per destination
    Column(
        "destination_id", String(40), ForeignKey("destinations.id", ondelete="CASCADE"), nullable=False, unique=True
    ),
    Column("name", String(200), nullable=False),
    Column("enabled", Boolean, nullable=False, default=False),
    Column("settings", JSON, nullable=False),  # values; sensitive ones encrypted
    Column("version_id", String(40), ForeignKey("function_versions.id"), nullable=False),
    Column("deployed_at", DateTime(timezone=True), nullable=False),
    *_times(),
)

tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("role", String(40), nullable=False),
    Column("function_ids", JSON, nullable=True),  # None = all functions
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(60), nullable=False),
    Column("resource_type", String(40), nullable=False),
    Column("resource_id", String(40), nullable=False),
    Column("before", JSON, nullable=True),
    Column("after", JSON, nullable=True),
    Index("ix_audit_events_at", "at"),
)

# --- delivery outcomes (DESIGN §3.3), written by sluice.catalog.delivery_store ---------------------
# ``minute`` is the epoch second of the minute's start (UTC). No foreign keys to destinations: the
# pipeline may record for a destination deleted a moment ago; prune() ages everything out.

delivery_counts = Table(
    "delivery_counts",
    metadata,
    Column("destination_id", String(40), primary_key=True),
    Column("minute", BigInteger, primary_key=True),
    Column("outcome", String(40), primary_key=True),
    Column("reason_code", String(200), primary_key=True),
    Column("count", BigInteger, nullable=False),
)

delivery_latency = Table(
    "delivery_latency",
    metadata,
    Column("destination_id", String(40), primary_key=True),
    Column("minute", BigInteger, primary_key=True),
    Column("histogram", JSON, nullable=False),  # bucket counts, see sluice.delivery.histogram
)

delivery_samples = Table(
    "delivery_samples",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("destination_id", String(40), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("outcome", String(40), nullable=False),
    Column("reason_code", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("source_id", String(40), nullable=False),
    Column("message_id", String(200), nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("event", JSON, nullable=True),
    Column("error", JSON, nullable=True),
    Column("logs", JSON, nullable=False),
    Column("requests", JSON, nullable=False),
    Column("request", JSON, nullable=True),
    Column("response", JSON, nullable=True),
    Index("ix_delivery_samples_destination_id_at", "destination_id", "at"),
)

# --- destination filters (DESIGN §1), managed by sluice.catalog.filters -----------------------------

destination_filters = Table(
    "destination_filters",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("destination_id", String(40), ForeignKey("destinations.id", ondelete="CASCADE"), nullable=False, index=True),
    # None = events of every source; a filter scoped to a source goes with it
    Column("source_id", String(40), ForeignKey("sources.id", ondelete="CASCADE"), nullable=True),
    Column("if_", Text, nullable=False),  # the FQL condition as written
    Column("actions", JSON, nullable=False),  # [{type, percent?, path?, fields?}] as the API shows them
    Column("title", String(64), nullable=False),
    Column("description", Text, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("position", Integer, nullable=False),  # order within the destination (creation order)
    *_times(),
)

# --- web-console sessions (shared by every API process), managed by sluice.catalog.sessions ---------

console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),  # SHA-256 (hex) of the session id: the cookie value
    Column("token", Text, nullable=False),  # the API token signed in with, sealed (enc:v1:…)
    Column("csrf", String(100), nullable=False),
    Column("me", JSON, nullable=False),  # GET /api/me at sign-in
    Column("flashes", JSON, nullable=False),  # [[kind, text], …] shown once on the next page
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),  # refreshed at most once a minute
    Index("ix_console_sessions_last_seen_at", "last_seen_at"),
)

# --- function store (DESIGN §3.5), managed by sluice.catalog.store ----------------------------------
# No foreign key: rows go with their instance explicitly (InstancesService / DestinationsService.delete).

function_store = Table(
    "function_store",
    metadata,
    Column("instance_id", String(40), primary_key=True),
    Column("key", String(256), primary_key=True),
    Column("value", Text, nullable=False),  # JSON text, at most 64 KB
    Column("expires_at", DateTime(timezone=True), nullable=True),  # None = never
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
