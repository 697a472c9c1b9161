"""Replication: every ticketing site serves its own replica, fed from one NATS JetStream log.

    sanction publish  --nats URL FEED        validate (as `sanction load`) and append to the stream
    sanction follow   --nats URL --data-dir  apply the stream, in order, through the Ledger
    sanction snapshot --nats URL --data-dir  a replica's store, verified, into the object store

Modules, one job each:
  position   the replica's bookkeeping in the store's meta (no NATS)
  status     the follower's status file and the health rule `serve` applies (no NATS)
  connect    NATS connection options from settings (credentials, TLS)
  stream     stream and subject layout, creating and checking the stream
  publisher  `sanction publish`
  follower   `sanction follow`
  snapshot   `sanction snapshot` and `sanction follow --bootstrap`
  metrics    the follower's Prometheus metrics

The domain (ledger, store, checker) never imports nats; only these modules (and the CLI,
lazily) do. docs/REPLICATION.md is the operator's guide.
"""
