"""The shipped task: evolve a keyword rule text that triages support tickets.

Everything here is local and deterministic, so tests and benchmarks never reach a
network, yet every result is computed from its input:

* **Data** (:func:`ticket_task`): tickets built from a fixed vocabulary with a seeded
  generator -- two or three words indicative of the ticket's label plus shared filler
  words ("please", "order", ...), so a careless keyword hurts other labels.
* **Task model** (:func:`rule_model`): an async ``prompt -> label`` that *follows the
  rules in its prompt*: every ``label: word, word`` line votes for its label once per
  keyword found in the ticket; most votes wins (the earlier line on a tie), no vote
  gives the ``otherwise:`` label.
* **Metric and feedback** (:class:`TicketTriageAdapter`, a plain ``GEPAAdapter`` with
  no vsm-phoenix dependency): exact match; feedback names the expected label, the
  given one and the ticket.
* **Reflection model** (:func:`scripted_reflection`): an async ``prompt -> text``
  that reads GEPA's reflection prompt as an LLM would -- the current rules inside the
  first fenced block and the feedback lines -- and answers new rules in a fenced block:
  it drops the keywords of a wrongly given label that occur in the misclassified
  ticket (they voted wrong), and for the labels with the most misclassified tickets it
  adds the word those tickets share most that no rule lists yet (ties alphabetical).
  Often that is the right keyword; sometimes a filler word, which GEPA's minibatch
  acceptance may reject or a later reflection may drop again.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

__all__ = [
    "LABELS",
    "SEED_RULES",
    "Ticket",
    "TicketTask",
    "TicketTriageAdapter",
    "apply_rules",
    "parse_rules",
    "rule_model",
    "scripted_reflection",
    "ticket_task",
]

VOCABULARY: dict[str, tuple[str, ...]] = {
    "billing": ("invoice", "refund", "charge", "payment", "billed", "receipt", "overcharged",
                "subscription", "price", "card"),
    "technical": ("error", "crash", "bug", "freeze", "timeout", "install", "update", "slow",
                  "broken", "screen"),
    "account": ("password", "username", "email", "profile", "delete", "locked", "signup",
                "verify", "reset", "twofactor"),
    "shipping": ("delivery", "package", "tracking", "courier", "arrived", "damaged",
                 "address", "shipped", "parcel", "late"),
}
FILLERS = ("please", "help", "today", "urgent", "hello", "thanks", "order", "app", "again",
           "still", "my", "the")
LABELS: tuple[str, ...] = tuple(VOCABULARY)

SEED_RULES = (
    "Classify the support ticket by keyword votes; the label with the most hits wins.\n"
    "billing: invoice\n"
    "technical: error\n"
    "account: password\n"
    "shipping: delivery\n"
    "otherwise: billing"
)

_LINE = re.compile(r"^\s*([a-z]+)\s*:\s*(.*?)\s*$")
_WORD = re.compile(r"[a-z0-9_]+")


@attrs.frozen
class Ticket:
    """One instance: the ticket text and its gold label."""

    text: str
    label: str


@attrs.frozen
class TicketTask:
    """The shipped task: seed candidate, train and validation tickets."""

    seed_candidate: dict[str, str]
    trainset: list[dict[str, str]]
    valset: list[dict[str, str]]


def ticket_task(seed: int = 7, train: int = 24, val: int = 16) -> TicketTask:
    """Generate the task deterministically from ``seed`` (distinct tickets)."""
    rng = random.Random(f"vsm-phoenix-gepa-tickets/{seed}")
    seen: set[str] = set()
    tickets: list[dict[str, str]] = []
    i = 0
    while len(tickets) < train + val:
        label = LABELS[i % len(LABELS)]
        i += 1
        words = rng.sample(VOCABULARY[label], rng.randint(2, 3)) + rng.sample(FILLERS, 2)
        rng.shuffle(words)
        text = " ".join(words)
        if text in seen:
            continue
        seen.add(text)
        tickets.append({"ticket": text, "label": label})
    return TicketTask({"rules": SEED_RULES}, tickets[:train], tickets[train:])


def parse_rules(rules: str) -> tuple[list[tuple[str, list[str]]], str | None]:
    """``(label, keywords)`` lines in order, and the ``otherwise`` label."""
    lines: list[tuple[str, list[str]]] = []
    otherwise = None
    for raw in rules.splitlines():
        m = _LINE.match(raw.lower())
        if m is None:
            continue
        name, rest = m.group(1), m.group(2)
        if name == "otherwise":
            otherwise = rest.split()[0] if rest.split() else None
        else:
            lines.append((name, _WORD.findall(rest)))
    return lines, otherwise


def apply_rules(rules: str, ticket: str) -> str:
    """The label the rules give ``ticket`` (see the module docstring)."""
    lines, otherwise = parse_rules(rules)
    words = set(_WORD.findall(ticket.lower()))
    best, votes = otherwise or "unknown", 0
    for label, keywords in lines:
        n = sum(1 for k in keywords if k in words)
        if n > votes:
            best, votes = label, n
    return best


async def rule_model(prompt: str) -> str:
    """The task model: ``<rules>\\n\\nTicket: <text>\\nLabel:`` -> a label."""
    rules, sep, rest = prompt.rpartition("\n\nTicket: ")
    if not sep:
        return "unknown"
    ticket = rest.split("\nLabel:", 1)[0]
    return apply_rules(rules, ticket)


def _feedback(expected: str, got: str, ticket: str) -> str:
    if expected == got:
        return f"correct: '{got}'."
    return f"expected '{expected}' but the rules gave '{got}'; ticket: {ticket}"


_FEEDBACK = re.compile(r"expected '([a-z]+)' but the rules gave '([a-z]+)'; ticket: ([a-z0-9_ ]+)")


async def scripted_reflection(prompt: str) -> str:
    """The reflection model (see the module docstring): current rules + feedback in,
    improved rules out, inside a fenced block."""
    start = prompt.find("```")
    end = prompt.find("```", start + 3)
    if start < 0 or end < 0:
        return "```\n```"
    current = prompt[start + 3:end].strip("\n")
    lines, _ = parse_rules(current)
    keywords_of = {label: set(kws) for label, kws in lines}
    listed = {k for _, kws in lines for k in kws}
    failures: Counter[str] = Counter()
    words: dict[str, Counter[str]] = {}
    culprits: dict[str, set[str]] = {}
    for expected, got, ticket in _FEEDBACK.findall(prompt):
        failures[expected] += 1
        present = set(ticket.split())
        # A keyword of the wrong label found in a ticket of another label voted wrong.
        culprits.setdefault(got, set()).update(present & keywords_of.get(got, set()))
        for w in sorted(present):
            if w not in listed:
                words.setdefault(expected, Counter())[w] += 1
    additions: dict[str, str] = {}
    for label, _n in sorted(failures.items(), key=lambda kv: (-kv[1], kv[0]))[:2]:
        pool = words.get(label)
        if pool:
            word = sorted(pool.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
            additions[label] = word
            listed.add(word)
    out: list[str] = []
    placed: set[str] = set()
    for raw in current.splitlines():
        m = _LINE.match(raw.lower())
        if m is not None and m.group(1) != "otherwise" and (
                m.group(1) in additions or culprits.get(m.group(1))):
            label = m.group(1)
            kws = [k for k in _WORD.findall(m.group(2)) if k not in culprits.get(label, set())]
            if label in additions:
                kws.append(additions[label])
            raw = f"{label}: {', '.join(kws)}"
            placed.add(label)
        out.append(raw)
    for label in sorted(set(additions) - placed):
        out.insert(max(len(out) - 1, 1), f"{label}: {additions[label]}")
    return "```\n" + "\n".join(out) + "\n```"


class TicketTriageAdapter:
    """A plain ``gepa.GEPAAdapter`` for the ticket task (no vsm-phoenix imports needed):
    the rules are the prompt, ``model`` is any sync ``prompt -> label`` callable (a
    :class:`~vsm_phoenix.ext.gepa.models.GuardedModel` of :func:`rule_model`)."""

    def __init__(self, model: Any, component: str = "rules") -> None:
        self.model = model
        self.component = component

    def evaluate(self, batch: list[dict[str, str]], candidate: dict[str, str],
                 capture_traces: bool = False) -> Any:
        from gepa.core.adapter import EvaluationBatch

        outputs: list[str] = []
        scores: list[float] = []
        traces: list[dict[str, str]] = []
        for inst in batch:
            got = self.model(f"{candidate[self.component]}\n\nTicket: {inst['ticket']}\nLabel:")
            got = got.strip()
            outputs.append(got)
            scores.append(1.0 if got == inst["label"] else 0.0)
            traces.append({"ticket": inst["ticket"], "output": got,
                           "feedback": _feedback(inst["label"], got, inst["ticket"])})
        return EvaluationBatch(outputs=outputs, scores=scores,
                               trajectories=traces if capture_traces else None)

    def make_reflective_dataset(self, candidate: dict[str, str], eval_batch: Any,
                                components_to_update: list[str]
                                ) -> Mapping[str, Sequence[Mapping[str, Any]]]:
        records = [
            {"Inputs": {"ticket": t["ticket"]}, "Generated Outputs": t["output"],
             "Feedback": t["feedback"]}
            for t in eval_batch.trajectories or []
        ]
        return {name: records for name in components_to_update}

    propose_new_texts = None
