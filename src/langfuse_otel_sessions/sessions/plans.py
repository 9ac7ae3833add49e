"""A box in the OpenTelemetry context for what processors work out once per scope.

``session()`` and the middleware put an empty box in each context they make; a
:class:`SessionSpanProcessor` keeps there what spans starting in that context get (checked
against the context's baggage before use). So the work is done once per scope, however many
requests are open and however their spans interleave, and the box lives exactly as long as the
contexts that carry it. A private context key of ours; nothing of it leaves the process.
"""

from __future__ import annotations

from opentelemetry.context import Context, create_key, set_value

#: Context slot: a dict, processor -> what it resolved for this context.
PLANS = create_key("langfuse-otel-sessions.plans")


def with_new_plans(context: Context) -> Context:
    """``context`` with an empty box of its own."""
    return set_value(PLANS, {}, context)
