"""Reference clients built on the core: the AMQP (RabbitMQ) runner, sagas with
compensation, circuit breakers, distributed GEPA prompt evolution, a tamper-evident causal
evidence graph and capability-aware agents. Nothing in the core imports from here.
"""
