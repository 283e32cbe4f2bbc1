"""A demonstration contract: signed records per identity, on any channel.

``run_cluster.py`` deploys it on the three channels (through the lifecycle, as an org admin
would) and drives it until the market contracts take over the main job. Each call stores
what its caller said under the caller's name and keeps a count, so every node must end with
the same records and the same state root.
"""


def record(ctx, topic, value):
    """Store ``value`` under ``topic`` for the caller; return how many records it has made."""
    who = ctx.caller.name
    count = (ctx.get("count/" + who) or 0) + 1
    ctx.put("count/" + who, count)
    ctx.put("record/" + who + "/" + topic, value)
    ctx.emit({"by": who, "topic": topic, "count": count})
    return count


def count(ctx, who):
    """How many records ``who`` has made."""
    return ctx.get("count/" + who) or 0
