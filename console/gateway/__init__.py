"""The GPS gateway: OsmAnd reports over HTTP, a write-ahead queue, a batch writer.

``server`` wires the parts; ``http`` is the small HTTP/1.1 server, ``osmand``
parses the protocol, ``queue`` is the on-disk write-ahead log that makes a
200 answer a promise, ``writer`` moves batches into PostgreSQL.
"""

from console.gateway.server import Gateway, GatewayConfig, serve

__all__ = ["Gateway", "GatewayConfig", "serve"]
