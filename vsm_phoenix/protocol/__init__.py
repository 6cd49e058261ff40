"""Sans-IO protocol state machines.

Will hold the message envelope, the node interface (events in, effects out), the
deterministic fault-injecting simulator, delta anti-entropy sync, SWIM membership with
capability matching, Raft consensus and the linearizable KV built on it. Nodes never read
clocks, sockets, files or global randomness: the caller (simulator, model checker, AMQP
runner) supplies time and randomness and carries out the effects.
"""
