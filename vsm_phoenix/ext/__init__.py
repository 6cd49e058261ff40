"""Reference clients built on the core (nothing in the core imports from here).

* :mod:`vsm_phoenix.ext.amqp` -- the RabbitMQ runner: any sans-IO node as a process on
  a broker, the control plane, and :class:`~vsm_phoenix.ext.amqp.Cluster`, the library
  API for replicated CRDTs and the linearizable KV across processes (needs the
  ``amqp`` extra: ``pip install 'vsm-phoenix[amqp]'``).
* :mod:`vsm_phoenix.ext.evidence` -- a tamper-evident causal evidence graph: signed
  events in a grow-only Merkle-DAG, sync by difference, SQLite durability, pictures.
* :mod:`vsm_phoenix.ext.agents` -- capability-aware agents: signed grants and placement,
  roles as compare-and-set leases on the Raft KV with fencing, quorum spawning.
"""
