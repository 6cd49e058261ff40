"""Reference clients built on the core (nothing in the core imports from here).

* :mod:`vsm_phoenix.ext.amqp` -- the RabbitMQ runner: any sans-IO node as a process on
  a broker, the control plane, and :class:`~vsm_phoenix.ext.amqp.Cluster`, the library
  API for replicated CRDTs and the linearizable KV across processes (needs the
  ``amqp`` extra: ``pip install 'vsm-phoenix[amqp]'``).
"""
