"""How many database connections Tiled may hold, sized by the number of instruments.

Tiled's SQL catalog and its SQL table storage each keep a SQLAlchemy pool, 5 connections
plus 10 overflow by default, and a request waiting longer than 30 s for a connection
fails with 500. Every instrument has a writer and, typically, a reader or live view
asking at once; in a facility of 25 on one Tiled the default 15 were taken and writers'
appends failed (QueuePool timeouts) and were retried, adding load. So each pool may
open a connection per instrument beyond tiled's 10 of overflow: the table storage's and
the server's read engine (``_tiled_reads``, the node lookups) keep one per instrument
open, tiled's catalog pool one per two. The embedded PostgreSQL's ``max_connections``
is raised to what the three can open at most, plus a reserve for the writer's bootstrap
and for an administrator (``psql``).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Tiled's own default base size, kept as the floor for a pod of one instrument.
MIN_POOL = 5
OVERFLOW = 10
#: Connections beyond the pools' maximum: superuser reserve (3) and a few clients.
RESERVE = 20
#: PostgreSQL's default ``max_connections``; never configured lower than this.
POSTGRES_DEFAULT_MAX = 100


@dataclass(frozen=True)
class ConnectionPools:
    pool_size: int
    max_overflow: int

    @classmethod
    def for_instruments(cls, instruments: int) -> ConnectionPools:
        return cls(pool_size=max(MIN_POOL, instruments), max_overflow=OVERFLOW)

    @property
    def most_per_pool(self) -> int:
        return self.pool_size + self.max_overflow

    @property
    def catalog_pool_size(self) -> int:
        """tiled's catalog pool keeps one connection per two instruments: the node
        lookups, two of its three reads per table append, have the read engine's pool.
        With one per instrument a facility of 25 kept 41-45 connections in tiled's two
        pools, with this 31-32, opening as few new ones (0.5-1.3 a second against
        0.6-1.1; docs/benchmarks.md)."""
        return max(MIN_POOL, -(-self.pool_size // 2))

    @property
    def catalog_max_overflow(self) -> int:
        """As many at most as the table storage's pool."""
        return self.most_per_pool - self.catalog_pool_size

    @property
    def reads_pool_size(self) -> int:
        """The server's read engine keeps as many as the table storage's pool, one per
        instrument. Its reads are one statement each, yet under load each is checked out
        for as long as the busy event loop takes to get back to it: with 5 kept, a
        facility of 25 had up to 24 out at once and opened 18.7 connections a second (a
        backend and its authentication each), PostgreSQL at 34 % of a core instead of
        11 % (docs/benchmarks.md)."""
        return self.pool_size

    @property
    def reads_max_overflow(self) -> int:
        return self.max_overflow

    @property
    def postgres_max_connections(self) -> int:
        """Room for the catalog's, the table storage's and the reads' pools at their
        largest."""
        return max(POSTGRES_DEFAULT_MAX, 3 * self.most_per_pool + RESERVE)
