"""Model calls: a pluggable async callable behind a circuit breaker, usable from GEPA.

GEPA calls its models synchronously (``reflection_lm(prompt) -> str``; adapters call
their task model inside ``evaluate``). A :class:`GuardedModel` takes any async
``prompt -> text`` callable -- the deterministic local models of the shipped task, or
:func:`openai_chat` for an OpenAI-compatible endpoint -- and runs every call through a
:class:`~vsm_phoenix.ext.breaker.CircuitBreaker`: when the endpoint keeps failing the
breaker opens and calls fail fast with ``CallNotPermittedError`` instead of burning
time (and GEPA's engine logs the failed iteration and goes on when
``raise_on_exception=False``). It counts calls and charges each one a *virtual* cost
(``cost_ms``) that the simulated cluster uses as the time a call would take.

The synchronous ``__call__`` runs the coroutine on an event loop owned by the calling
thread (one per thread, closed by :meth:`GuardedModel.close`); it must not be called
from inside a running event loop -- use :meth:`GuardedModel.acall` there.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

from vsm_phoenix.errors import InvalidArgument, TypeMismatch
from vsm_phoenix.ext.breaker import BreakerConfig, CircuitBreaker

__all__ = ["AsyncModel", "GuardedModel", "openai_chat"]

AsyncModel = Callable[[str], Awaitable[str]]


class GuardedModel:
    """A model call behind a circuit breaker, with a call count and a virtual cost."""

    def __init__(
        self,
        model: AsyncModel,
        *,
        name: str = "model",
        breaker: CircuitBreaker | None = None,
        cost_ms: int = 0,
    ) -> None:
        if not callable(model):
            raise TypeMismatch("model must be an async callable prompt -> text")
        if type(cost_ms) is not int or cost_ms < 0:
            raise InvalidArgument("cost_ms must be a non-negative int")
        self.model = model
        self.name = name
        self.breaker = breaker if breaker is not None else CircuitBreaker(
            name, BreakerConfig(minimum_calls=5, wait_in_open_ms=1_000.0))
        self.cost_ms = cost_ms
        self.calls = 0
        self._lock = threading.Lock()
        self._local = threading.local()
        self._loops: list[asyncio.AbstractEventLoop] = []

    async def acall(self, prompt: str) -> str:
        """One model call under the breaker (counted even if it fails)."""
        if not isinstance(prompt, str):
            raise TypeMismatch("a prompt is a str")
        with self._lock:
            self.calls += 1
        out = await self.breaker.call_async(self.model, prompt)
        if not isinstance(out, str):
            raise TypeMismatch(f"model {self.name!r} returned {type(out).__name__}, not str")
        return out

    def __call__(self, prompt: str | list[dict[str, Any]]) -> str:
        """Synchronous call (GEPA's ``LanguageModel``). A chat message list (GEPA sends
        one for multimodal reflection) is reduced to its text parts."""
        if isinstance(prompt, list):
            prompt = _text_of(prompt)
        loop = getattr(self._local, "loop", None)
        if loop is None:
            loop = asyncio.new_event_loop()
            self._local.loop = loop
            with self._lock:
                self._loops.append(loop)
        return loop.run_until_complete(self.acall(prompt))

    def close(self) -> None:
        """Close the per-thread event loops (call once the threads are done)."""
        with self._lock:
            loops, self._loops = self._loops, []
        for loop in loops:
            loop.close()


def _text_of(messages: list[dict[str, Any]]) -> str:
    parts: list[str] = []
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(c["text"] for c in content
                         if isinstance(c, dict) and isinstance(c.get("text"), str))
    return "\n".join(parts)


def openai_chat(
    base_url: str,
    model: str,
    *,
    api_key: str | None = None,
    timeout: float = 60.0,
    temperature: float = 0.0,
) -> AsyncModel:
    """An async ``prompt -> text`` callable for an OpenAI-compatible
    ``/chat/completions`` endpoint (stdlib HTTP, run in a worker thread). The library
    takes the key as an argument; the command line reads it from the environment."""
    if not base_url.startswith(("http://", "https://")):
        raise InvalidArgument("base_url must be an http(s) URL")
    url = base_url.rstrip("/") + "/chat/completions"

    def post(prompt: str) -> str:
        body = json.dumps({
            "model": model,
            "temperature": temperature,
            "messages": [{"role": "user", "content": prompt}],
        }).encode()
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        req = urllib.request.Request(url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            reply = json.loads(resp.read(4 * 1024 * 1024))
        try:
            text = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise ValueError(f"unexpected chat completion reply: {exc!r}") from None
        if not isinstance(text, str):
            raise ValueError("chat completion content is not text")
        return text

    async def call(prompt: str) -> str:
        return await asyncio.to_thread(post, prompt)

    return call
