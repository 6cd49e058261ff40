"""Reference clients built on the core (nothing in the core imports from here).

* :mod:`vsm_phoenix.ext.amqp` -- the RabbitMQ runner: any sans-IO node as a process on
  a broker, the control plane, and :class:`~vsm_phoenix.ext.amqp.Cluster`, the library
  API for replicated CRDTs and the linearizable KV across processes (needs the
  ``amqp`` extra: ``pip install 'vsm-phoenix[amqp]'``).
* :mod:`vsm_phoenix.ext.evidence` -- a tamper-evident causal evidence graph: signed
  events in a grow-only Merkle-DAG, sync by difference, SQLite durability, pictures.
* :mod:`vsm_phoenix.ext.agents` -- capability-aware agents: signed grants and placement,
  roles as compare-and-set leases on the Raft KV with fencing, quorum spawning.
* :mod:`vsm_phoenix.ext.saga` -- durable sagas with compensation: a sans-IO coordinator,
  logs on SQLite or the Raft KV, leases and takeover, an asyncio orchestrator.
* :mod:`vsm_phoenix.ext.router` -- signed commands checked against roles, capability
  grants, freshness and replay windows, then dispatched; every decision recorded.
* :mod:`vsm_phoenix.ext.breaker` -- circuit breakers after resilience4j.
"""
